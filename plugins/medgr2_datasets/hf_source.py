"""The ``hf`` dataset source: a Hugging Face dataset of (image, question, options, answer) rows.

``path`` is a local folder (written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``, or
Parquet/JSON files such as ``medgr2 data export --format parquet`` writes) or a Hub dataset id
(``owner/name``), resolved **only** from the local Hugging Face cache: nothing is downloaded at run
time (fetch it once with ``huggingface-cli download --repo-type dataset owner/name``).

Every row becomes a ready-made :class:`~medgr2.data.VQASample`; every distinct image of the train split
also becomes a :class:`~medgr2.data.SeedItem` for the generators (labels: modality, question types, the
correct answers as findings, plus the ``label_columns``); an image also used by a val/test row never does. Images are
written once, content-addressed (``<sha256>.<ext>``), under ``image_dir`` and referenced with the
``file`` loader, so every stage reads them like any other image. A row exported by medgr2 (a
``sample_json`` column) comes back as the very sample, provenance and reward included.

Config::

    data:
      sources:
        - name: hf
          options: {path: exports/kept, image_dir: runs/hf-images}   # or path: owner/name
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from medgr2.data import LETTERS, ImageRef, Modality, Provenance, QuestionType, VQASample, stable_hash
from medgr2.interfaces import SeedSet
from medgr2_datasets.source_support import (
    DEFAULT_FRACTIONS,
    benchmark_seed_items,
    bytes_sha256,
    clean_labels,
    grouped_splits,
    parse_modality,
    parse_question_type,
    reject,
)

_SPLIT_NAMES = {"train": "train", "training": "train", "validation": "val", "valid": "val", "val": "val",
                "dev": "val", "test": "test", "testing": "test"}
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class HFOptions(BaseModel):
    """``hf``: a Hugging Face dataset (local folder or a Hub id in the offline cache)."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="A local dataset folder (save_to_disk, Parquet, JSON) or a Hub dataset id "
                                  "owner/name found in the local Hugging Face cache.")
    config: str | None = Field(default=None, description="The dataset's configuration (subset) name.")
    revision: str | None = Field(default=None, description="Hub id only: the cached revision (default main).")
    cache_dir: Path | None = Field(default=None, description="Hub id only: the Hugging Face hub cache to read "
                                                             "(default HF_HUB_CACHE).")
    name: str | None = Field(default=None, description="Dataset name on items and samples (default: the "
                                                       "folder name or the Hub id).")
    splits: list[str] | None = Field(default=None, description="Only these splits of the dataset "
                                                               "(its own names: train, validation, test).")
    image_column: str = Field(default="image", description="The image column (datasets.Image, bytes or a path).")
    question_column: str = Field(default="question", description="The question text column.")
    options_column: str | None = Field(default="options", description="A column holding the list of options.")
    option_columns: list[str] | None = Field(
        default=None, description="Instead of options_column: one column per option (option_A, option_B ...).")
    answer_column: str = Field(default="answer",
                               description="The answer: option text, its letter, or its 0-based index.")
    rationale_column: str | None = Field(default="rationale", description="A rationale column, if any.")
    modality_column: str | None = Field(default="modality",
                                       description="A modality column (ct, mri, xray ... or OmniMedVQA's names).")
    question_type_column: str | None = Field(default="question_type", description="A question-type column.")
    subject_column: str | None = Field(default="subject_id", description="Groups rows of one patient in a split.")
    id_column: str | None = Field(default="id", description="A question id column (default: a content hash).")
    label_columns: dict[str, str] = Field(
        default_factory=dict, description="Seed-item labels from columns, e.g. {diagnosis: label}.")
    modality: Modality = Field(default=Modality.OTHER, description="Modality when no column gives one.")
    split_from: Literal["auto", "column", "dataset", "assign"] = Field(
        default="auto", description="auto: a 'split' column if present, else the dataset's own split names when "
                                    "it has several, else a grouped train/val/test assignment.")
    split_column: str = Field(default="split", description="The split column when split_from is column/auto.")
    use_sample_json: bool = Field(default=True, description="Rows exported by medgr2 (a sample_json column) "
                                                            "come back as the exact samples.")
    image_dir: Path | None = Field(default=None, description="Where the images are written (default: "
                                                             "~/.cache/medgr2/hf-images/<dataset hash>).")
    seed: int = Field(default=0, description="Seed of the grouped split assignment.")
    fractions: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_FRACTIONS),
                                        description="Split shares when the source assigns splits itself.")
    extra_labels: dict[str, str] = Field(default_factory=dict,
                                         description="Labels added to every seed item (e.g. {restricted: true}).")
    seed_items: bool = Field(
        default=True, description="Also yield one seed item per distinct train-split image (labels: modality, "
                                  "question types, the correct answers as findings, label_columns) for the "
                                  "generators; images of val/test rows never become items.")
    limit: int | None = Field(default=None, ge=1, description="Read at most this many rows.")


def _is_saved_to_disk(folder: Path) -> bool:
    return (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()


def resolve_hub_id(repo_id: str, *, revision: str | None = None, cache_dir: Path | None = None) -> Path:
    """The local snapshot folder of a Hub dataset in the Hugging Face cache (never downloads)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, repo_type="dataset", revision=revision, local_files_only=True,
                                      cache_dir=str(cache_dir) if cache_dir else None))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError) as exc:
        where = cache_dir or os.environ.get("HF_HUB_CACHE", "the Hugging Face cache")
        raise FileNotFoundError(
            f"Hub dataset {repo_id!r} is not in {where}: medgr2 never downloads at run time. Fetch it once with "
            f"`huggingface-cli download --repo-type dataset {repo_id}` (or give a local folder as path)") from exc


def load_hf_splits(o: HFOptions) -> dict[str, Any]:
    """``{split name: datasets.Dataset}`` of ``o.path`` (local folder or cached Hub id)."""
    try:
        from datasets import Dataset, DatasetDict, load_dataset, load_from_disk
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the hf source needs `datasets`: pip install 'medgr2[train]'") from exc
    folder = Path(o.path).expanduser()
    if not folder.exists():
        if not _HUB_ID.fullmatch(o.path):
            raise FileNotFoundError(f"hf source: {o.path!r} is neither a folder nor a Hub dataset id (owner/name)")
        folder = resolve_hub_id(o.path, revision=o.revision, cache_dir=o.cache_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"hf source: {folder} is not a folder")
    if _is_saved_to_disk(folder):
        loaded = load_from_disk(str(folder))
    else:
        cache = Path(o.image_dir or _default_image_dir(o)) / ".datasets-cache"
        loaded = load_dataset(str(folder), name=o.config, cache_dir=str(cache))
    splits = {"train": loaded} if isinstance(loaded, Dataset) else dict(loaded)
    if not isinstance(loaded, (Dataset, DatasetDict)):  # pragma: no cover - iterable datasets are not made here
        raise TypeError(f"hf source: {folder} did not load as a Dataset or DatasetDict")
    if o.splits:
        missing = [s for s in o.splits if s not in splits]
        if missing:
            raise ValueError(f"hf source: no split(s) {missing} in {o.path} (it has {sorted(splits)})")
        splits = {k: v for k, v in splits.items() if k in o.splits}
    return splits


def _default_image_dir(o: HFOptions) -> Path:
    base = Path(os.environ.get("MEDGR2_CACHE", Path.home() / ".cache" / "medgr2"))
    return base / "hf-images" / stable_hash(str(Path(o.path).expanduser().resolve()) if Path(o.path).exists()
                                            else o.path, o.config, o.revision, length=12)


class HFSource:
    """A Hugging Face dataset → ready-made VQA samples and one seed item per distinct train image."""

    def __init__(self, options: HFOptions):
        self.options = options

    # ------------------------------------------------------------------ images

    def _image_bytes(self, value: Any) -> bytes:
        if value is None:
            raise ValueError("no image")
        if isinstance(value, dict):
            if value.get("bytes"):
                return bytes(value["bytes"])
            if value.get("path") and Path(value["path"]).is_file():
                return Path(value["path"]).read_bytes()
            raise ValueError(f"image has neither bytes nor a readable path ({value.get('path')!r})")
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        if isinstance(value, str):
            p = Path(value)
            if not p.is_absolute() and not p.is_file() and Path(self.options.path).is_dir():
                from medgr2_datasets.source_support import safe_path

                p = safe_path(self.options.path, value, record=value)
            return p.read_bytes()
        if hasattr(value, "save"):  # a PIL image
            buf = io.BytesIO()
            value.save(buf, format="PNG")
            return buf.getvalue()
        raise ValueError(f"unsupported image value of type {type(value).__name__}")

    def _store(self, data: bytes, image_dir: Path, modality: Modality) -> ImageRef:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:  # header only: checks it is an image
            width, height = im.size
            ext = (im.format or "png").lower().replace("jpeg", "jpg")
        sha = bytes_sha256(data)
        rel = f"{sha[:2]}/{sha}.{ext}"
        target = image_dir / rel
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(target.suffix + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
        return ImageRef(path=rel, root=str(image_dir), loader="file", sha256=sha, modality=modality,
                        width=width, height=height)

    # ------------------------------------------------------------------ rows

    def _options(self, row: dict[str, Any]) -> list[str]:
        o = self.options
        if o.option_columns:
            raw = [row.get(c) for c in o.option_columns]
        else:
            raw = row.get(o.options_column) if o.options_column else None
            if isinstance(raw, str):
                try:
                    raw = json.loads(raw)
                except json.JSONDecodeError:
                    raw = [re.sub(r"^[A-H][.):]\s*", "", x).strip() for x in raw.splitlines()]
        if not isinstance(raw, (list, tuple)):
            raise TypeError(f"no options list in column {o.options_column!r} "
                            "(set options_column or option_columns)")
        return [str(x).strip() for x in raw if x is not None and str(x).strip()]

    @staticmethod
    def _answer(raw: Any, options: Sequence[str]) -> str:
        if isinstance(raw, bool) or raw is None:
            raise ValueError(f"answer {raw!r} is not an option")
        if isinstance(raw, int):
            if 0 <= raw < len(options):
                return options[raw]
            raise ValueError(f"answer index {raw} is out of range for {len(options)} options")
        text = str(raw).strip()
        if text in options:
            return text
        lowered = {x.lower(): x for x in options}
        if text.lower() in lowered:
            return lowered[text.lower()]
        m = re.fullmatch(r"\(?([A-H])\)?[.):]?", text)
        if m and LETTERS.index(m.group(1)) < len(options):
            return options[LETTERS.index(m.group(1))]
        if text.isdigit() and int(text) < len(options):  # a 0-based index written as text
            return options[int(text)]
        raise ValueError(f"answer {text!r} is not one of the options {list(options)}")

    def _split(self, row: dict[str, Any], dataset_split: str, n_dataset_splits: int, has_column: bool) -> str | None:
        o = self.options
        mode = o.split_from
        if mode == "auto":
            mode = "column" if has_column else ("dataset" if n_dataset_splits > 1 else "assign")
        if mode == "column":
            value = row.get(o.split_column)
            return _SPLIT_NAMES.get(str(value).lower()) if value is not None else None
        if mode == "dataset":
            return _SPLIT_NAMES.get(dataset_split.lower())
        return None

    def _sample(self, row: dict[str, Any], images: tuple[ImageRef, ...], name: str, index: str,
                split: str | None) -> VQASample:
        o = self.options
        if o.use_sample_json and row.get("sample_json"):
            sample = VQASample.model_validate_json(row["sample_json"])
            return sample.model_copy(update={"images": images, "split": split or sample.split})
        options = self._options(row)
        answer = self._answer(row.get(o.answer_column), options)
        modality = parse_modality(str(row[o.modality_column])) if o.modality_column and row.get(
            o.modality_column) else o.modality
        qtype = parse_question_type(str(row[o.question_type_column])) if o.question_type_column and row.get(
            o.question_type_column) else None
        question = row.get(o.question_column)
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"no question in column {o.question_column!r}")
        local = str(row[o.id_column]) if o.id_column and row.get(o.id_column) is not None else index
        return VQASample(
            images=images, question=question, options=tuple(options), answer=answer,
            rationale=str(row.get(o.rationale_column) or "") if o.rationale_column else "",
            modality=modality, question_type=qtype or QuestionType.DISEASE_DIAGNOSIS, split=split,
            subject_id=str(row[o.subject_column]) if o.subject_column and row.get(o.subject_column) else None,
            provenance=Provenance(source_dataset=name, source_id=f"{name}:{local}", generator="hf",
                                  raw={"hf_split": index.split("/")[0]}))

    def load(self) -> SeedSet:
        """Read every row: samples, one item per distinct train image, rejects for unusable rows."""
        o = self.options
        name = o.name or (Path(o.path).name if Path(o.path).exists() else o.path)
        splits = load_hf_splits(o)
        image_dir = Path(o.image_dir) if o.image_dir else _default_image_dir(o)
        image_dir.mkdir(parents=True, exist_ok=True)
        samples: list[VQASample] = []
        columns_of_image: dict[str, dict[str, str]] = {}  # label_columns of the first row of each image
        rejects = []
        read = 0
        for split_name, ds in splits.items():
            columns = set(ds.column_names)
            if o.image_column not in columns:
                raise ValueError(f"hf source: {o.path} split {split_name!r} has no image column "
                                 f"{o.image_column!r} (columns: {', '.join(sorted(columns))}); set image_column")
            from datasets import Image as ImageFeature

            if isinstance(ds.features.get(o.image_column), ImageFeature):
                ds = ds.cast_column(o.image_column, ImageFeature(decode=False))
            if "images" in columns and isinstance(getattr(ds.features.get("images"), "feature", None), ImageFeature):
                ds = ds.cast_column("images", type(ds.features["images"])(ImageFeature(decode=False)))
            has_split_column = o.split_column in columns
            for i, row in enumerate(ds):
                if o.limit is not None and read >= o.limit:
                    break
                read += 1
                record = f"{split_name}/{i}"
                try:
                    modality = (parse_modality(str(row[o.modality_column])) if o.modality_column
                                and row.get(o.modality_column) else o.modality)
                    values = row["images"] if row.get("images") else [row[o.image_column]]
                    refs = tuple(self._store(self._image_bytes(v), image_dir, modality) for v in values)
                    split = self._split(row, split_name, len(splits), has_split_column)
                    sample = self._sample(row, refs, name, record, split)
                except (ValueError, TypeError, KeyError, OSError) as exc:  # a bad row is a reject, not a crash
                    rejects.append(reject(record, "bad_row", f"{type(exc).__name__}: {exc}"))
                    continue
                samples.append(sample)
                for ref in refs:
                    if o.label_columns and ref.key not in columns_of_image:
                        columns_of_image[ref.key] = clean_labels(
                            {k: row.get(c) for k, c in o.label_columns.items()})
        # rows without a split: grouped by subject (else image), so one image never sits in two splits
        todo = [s.subject_id or s.images[0].sha256 for s in samples if s.split is None]
        table = grouped_splits(todo, o.seed, o.fractions) if todo else {}
        samples = [s if s.split is not None
                   else s.model_copy(update={"split": table[s.subject_id or s.images[0].sha256]}) for s in samples]
        items = (benchmark_seed_items(samples, name, extra_labels=o.extra_labels, image_labels=columns_of_image)
                 if o.seed_items else [])
        return SeedSet(items=items, samples=samples, rejects=rejects)
