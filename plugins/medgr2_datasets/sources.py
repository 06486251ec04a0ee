"""Labelled-image sources: class folders, CSV metadata + image folder, MedMNIST ``.npz``.

Each source hashes every file, picks its loader by content (magic bytes, not the extension)
and decodes its pixels once (``verify: decode``, the default; cached by content hash), so an
undecodable file is a reject naming it (reason ``undecodable``), never a crash in a later stage.
Unreadable or missing files become rejects with a reason.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from medgr2.data import ImageRef, Modality, Reject, SeedItem
from medgr2.interfaces import SeedSet
from medgr2_datasets.source_support import (
    assign_splits,
    bytes_sha256,
    clean_labels,
    file_sha256,
    item_id,
    reject,
    reject_from_exception,
    safe_path,
)
from medgr2_datasets.options import (
    CsvOptions,
    FoldersOptions,
    ImageFolderOptions,
    MedMNISTOptions,
    SourceOptions,
)


def index_file(root: Path, rel: str, modality: Modality, verify: str, record: str) -> ImageRef:
    """Hash and check one image file; raises when it is unusable.

    The loader is chosen by content (``DICM`` at byte 128: ``dicom``; else ``file``), never by
    the extension. ``verify``: ``decode`` (default) decodes the pixels once with the loader's
    own decoder (cached by content hash), so a truncated or corrupt file raises
    :class:`~medgr2_datasets.probe.UndecodableImageError` naming it; ``header`` reads only the
    size (a truncated file passes); ``none`` trusts the file.
    """
    from medgr2_datasets.probe import checked_ref

    path = safe_path(root, rel, record)
    if not path.is_file():
        raise FileNotFoundError(f"image {rel!r} of record {record} not found under {root}")
    digest = file_sha256(path, resolved=True)
    ref = checked_ref(root, rel, path, digest, modality, decode=verify == "decode")
    if verify != "header":
        return ref
    width = height = None
    if ref.loader == "file":
        from PIL import Image

        with Image.open(path) as img:
            width, height = img.size
    else:
        import pydicom

        ds = pydicom.dcmread(path, stop_before_pixels=True)
        width, height = int(ds.get("Columns", 0)) or None, int(ds.get("Rows", 0)) or None
    return ref.model_copy(update={"width": width, "height": height})


def finish(
    items: list[SeedItem], rejects: list[Reject], options: SourceOptions | Any, keep_splits: bool = False
) -> SeedSet:
    """Sort, cap (``limit``), add ``extra_labels`` and assign grouped splits."""
    items = sorted(items, key=lambda it: it.id)
    if getattr(options, "limit", None):
        items = items[: options.limit]
    if not keep_splits:
        items = [it if it.split is None else it.model_copy(update={"split": None}) for it in items]
    extra = getattr(options, "extra_labels", None)
    return SeedSet(items=assign_splits(items, options.seed, options.fractions, extra), rejects=rejects)


def _class_name(options: ImageFolderOptions, raw: str) -> str:
    return options.class_names.get(raw, raw)


def _subject(pattern: str | None, text: str) -> str:
    if pattern:
        m = re.search(pattern, text)
        if m and m.groupdict().get("subject"):
            return m.group("subject")
    return text


class FoldersSource:
    """Class folders (``benign/ malignant/ normal/``) or classes in file names (``ADI-xxxx.tif``)."""

    def __init__(self, options: FoldersOptions):
        self.options = options

    def files(self) -> list[str]:
        """Image files under root (relative POSIX paths, sorted), masks excluded."""
        o = self.options
        root = Path(o.root)
        if not root.is_dir():
            raise FileNotFoundError(f"dataset root {root} is not a folder")
        exts = {e.lower() for e in o.extensions}
        out = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in filenames:
                stem, ext = os.path.splitext(name)
                if ext.lower() not in exts or name.startswith("."):
                    continue
                if o.exclude_pattern and re.search(o.exclude_pattern, stem):
                    continue
                out.append(Path(dirpath, name).relative_to(root).as_posix())
        return sorted(out)

    def load(self) -> SeedSet:
        """Index every image with its class (folder name or file-name prefix)."""
        o = self.options
        root = Path(o.root)
        name = o.name or root.name
        items, rejects = [], []
        for rel in self.files():
            stem = Path(rel).stem
            if o.class_from == "folder":
                parts = rel.split("/")
                raw = parts[-2] if len(parts) > 1 else ""
            else:
                m = re.search(o.filename_pattern, Path(rel).name)
                raw = m.group("label") if m else ""
            if not raw:
                rejects.append(reject(rel, "no_class", f"cannot tell the class of {rel!r} ({o.class_from})"))
                continue
            try:
                ref = index_file(root, rel, o.modality, o.verify, rel)
            except Exception as exc:  # noqa: BLE001 - any unreadable file is a reject
                rejects.append(reject_from_exception(rel, exc))
                continue
            items.append(
                SeedItem(
                    id=item_id(name, rel),
                    dataset=name,
                    image=ref,
                    modality=o.modality,
                    labels={o.label_key: _class_name(o, raw)},
                    subject_id=f"{name}/{_subject(o.subject_pattern, stem)}",
                )
            )
        return finish(items, rejects, o)


def read_csv_rows(path: Path, encoding: str | None) -> list[dict[str, str]]:
    """Rows of a CSV file (utf-8, falling back to latin-1 unless ``encoding`` is given)."""
    data = path.read_bytes()
    for enc in [encoding] if encoding else ["utf-8-sig", "latin-1"]:
        try:
            return list(csv.DictReader(io.StringIO(data.decode(enc), newline="")))
        except UnicodeDecodeError:
            continue
    raise ValueError(f"cannot decode {path} as {encoding or 'utf-8 or latin-1'}; set the 'encoding' option")


class CsvSource:
    """A metadata CSV plus an image folder; columns map onto label keys (presets for HAM10000...)."""

    def __init__(self, options: CsvOptions):
        self.options = options

    def load(self) -> SeedSet:
        """One item per CSV row whose image exists; missing or unreadable images are rejects."""
        o = self.options
        root = Path(o.root)
        name = o.name or root.name
        csv_path = safe_path(root, o.csv, "csv")
        if not csv_path.is_file():
            raise FileNotFoundError(
                f"metadata CSV {csv_path} not found: set the 'csv' option (relative to root)"
            )
        rows = read_csv_rows(csv_path, o.encoding)
        header = set(rows[0]) if rows else set()
        needed = [
            o.id_column,
            *o.columns.values(),
            *([o.subject_column] if o.subject_column else []),
            *([o.text_column] if o.text_column else []),
        ]
        missing = [c for c in needed if c not in header]
        if rows and missing:
            raise ValueError(
                f"{csv_path.name} has no column(s) {missing}; its columns are {sorted(header)}. "
                "Fix id_column/columns/subject_column."
            )
        images_dir = safe_path(root, o.images_dir, "images_dir")
        by_stem: dict[str, str] = {}
        if o.image_template is None and images_dir.is_dir():
            exts = {e.lower() for e in o.extensions}
            for entry in sorted(os.scandir(images_dir), key=lambda e: e.name):
                stem, ext = os.path.splitext(entry.name)
                if ext.lower() in exts:
                    by_stem.setdefault(stem, entry.name)
        items, rejects, seen = [], [], set()
        for i, row in enumerate(rows):
            ident = (row.get(o.id_column) or "").strip()
            record = ident or f"row {i + 2}"
            if not ident:
                rejects.append(reject(record, "missing_id", f"empty {o.id_column!r}"))
                continue
            if ident in seen:
                rejects.append(reject(record, "duplicate_id", f"{ident!r} appears twice in {csv_path.name}"))
                continue
            seen.add(ident)
            filename = o.image_template.format(id=ident) if o.image_template else by_stem.get(ident)
            if filename is None:
                rejects.append(reject(record, "missing_file", f"no image named {ident}.* in {o.images_dir}"))
                continue
            rel = f"{o.images_dir.rstrip('/')}/{filename}"
            try:
                ref = index_file(root, rel, o.modality, o.verify, record)
            except Exception as exc:  # noqa: BLE001
                rejects.append(reject_from_exception(record, exc))
                continue
            labels = clean_labels({k: row.get(col) for k, col in o.columns.items()})
            if o.label_key in labels:
                labels[o.label_key] = _class_name(o, labels[o.label_key])
            subject = (row.get(o.subject_column) or "").strip() if o.subject_column else ""
            subject = subject or _subject(o.subject_pattern, ident)
            text = (row.get(o.text_column) or "").strip() if o.text_column else ""
            items.append(
                SeedItem(
                    id=item_id(name, ident),
                    dataset=name,
                    image=ref,
                    modality=o.modality,
                    labels=labels,
                    subject_id=f"{name}/{subject}",
                    text=text or None,
                )
            )
        return finish(items, rejects, o)


MEDMNIST_CLASSES: dict[str, dict[str, str]] = {
    "pneumoniamnist": {"0": "normal", "1": "pneumonia"},
    "breastmnist": {"0": "malignant", "1": "normal or benign"},
}
"""Built-in class names of MedMNIST files, by file stem."""

_MEDMNIST_MODALITY = [
    ("pneumonia", Modality.XRAY),
    ("chest", Modality.XRAY),
    ("derma", Modality.DERMOSCOPY),
    ("breast", Modality.ULTRASOUND),
    ("oct", Modality.OCT),
    ("retina", Modality.FUNDUS),
    ("path", Modality.MICROSCOPY),
    ("blood", Modality.MICROSCOPY),
    ("organ", Modality.CT),
    ("nodule", Modality.CT),
    ("adrenal", Modality.CT),
    ("vessel", Modality.MRI),
]


class MedMNISTSource:
    """A MedMNIST ``.npz``: one item per image of every ``{split}_images`` array."""

    def __init__(self, options: MedMNISTOptions):
        self.options = options

    def load(self) -> SeedSet:
        """Index every image (content-hashed); the file's own splits are kept unless told otherwise."""
        o = self.options
        root = Path(o.root)
        path = safe_path(root, o.file, "file")
        stem = Path(o.file).name.split(".")[0].lower()
        name = o.name or Path(o.file).stem
        modality = o.modality or next((m for key, m in _MEDMNIST_MODALITY if key in stem), Modality.OTHER)
        names = {**MEDMNIST_CLASSES.get(stem, {}), **o.class_names}
        items, rejects = [], []
        if not path.is_file():
            raise FileNotFoundError(f"MedMNIST file {path} not found: set 'file' (relative to root)")
        try:
            archive = np.load(path, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - any unreadable archive gets one clear message
            raise ValueError(f"cannot read {path} as a MedMNIST .npz: {type(exc).__name__}: {exc}") from exc
        with archive as z:
            splits = sorted(k[: -len("_images")] for k in z.files if k.endswith("_images"))
            if not splits:
                raise ValueError(
                    f"{path.name} holds no '<split>_images' arrays (it has {', '.join(z.files)})"
                )
            for split in splits:
                images, labels = z[f"{split}_images"], z.get(f"{split}_labels")
                target = o.split_map.get(split, split)
                if o.use_source_splits and target not in ("train", "val", "test"):
                    raise ValueError(
                        f"split {split!r} of {path.name} is not train/val/test: map it with split_map"
                    )
                for i in range(len(images)):
                    record = f"{split}/{i}"
                    label = "" if labels is None else ",".join(str(int(v)) for v in np.ravel(labels[i]))
                    lab = {o.label_key: names.get(label, label)} if label else {}
                    ref = ImageRef(
                        path=f"{o.file}#{split}_images",
                        root=str(root),
                        loader="npz",
                        frame=i,
                        sha256=bytes_sha256(np.ascontiguousarray(images[i]).tobytes()),
                        modality=modality,
                        width=int(images.shape[2]),
                        height=int(images.shape[1]),
                    )
                    items.append(
                        SeedItem(
                            id=item_id(name, record),
                            dataset=name,
                            image=ref,
                            modality=modality,
                            labels=lab,
                            subject_id=f"{name}/{record}",
                            split=target if o.use_source_splits else None,
                        )
                    )
        return finish(items, rejects, o, keep_splits=o.use_source_splits)
