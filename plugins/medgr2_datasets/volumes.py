"""Volumetric and DICOM sources: NIfTI volume + segmentation slices, DICOM folders, the demo corpus.

DICOM privacy: only non-identifying tags are read into items (:data:`SAFE_DICOM_TAGS`); the
patient id is turned into a salted one-way hash for grouping. Names, dates, ids, addresses,
institution and device identifiers (DICOM PS3.15 basic profile, HIPAA Safe Harbor) never leave.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from medgr2.data import ImageRef, Modality, Reject, SeedItem
from medgr2.interfaces import SeedSet
from medgr2_datasets.source_support import (
    file_sha256,
    frame_sha256,
    item_id,
    reject,
    reject_from_exception,
    safe_path,
)
from medgr2_datasets.loaders import dicom_modality, nifti_slice, nifti_volume, package_dirs, resolve_pkg
from medgr2_datasets.options import DemoOptions, DicomOptions, NiftiOptions, NiftiVolume
from medgr2_datasets.probe import check_image, loader_for
from medgr2_datasets.sources import finish, index_file


def organ_name(raw: str) -> str:
    """``kidney_right`` → ``right kidney``; ``vertebrae_L1`` → ``vertebra L1``."""
    words = raw.replace("-", "_").split("_")
    side = [w for w in words if w in ("left", "right")]
    rest = [w for w in words if w not in ("left", "right")]
    if rest and rest[0] == "vertebrae":
        rest[0] = "vertebra"
    return " ".join(side + rest).strip()


class NiftiSource:
    """Slices of NIfTI volumes, labelled with the organs their segmentation shows in each slice."""

    def __init__(self, options: NiftiOptions):
        self.options = options

    def _label_map(self, volume: NiftiVolume) -> dict[int, str]:
        lm: Any = self.options.label_map
        if isinstance(lm, str):
            lm = json.loads(safe_path(self.options.root, lm, "label_map").read_text(encoding="utf-8"))
        if volume.segmentation and volume.segmentation in (lm or {}):
            lm = lm[volume.segmentation]
        return {int(k): organ_name(str(v)) for k, v in (lm or {}).items() if str(k).isdigit()}

    def load(self) -> SeedSet:
        """One item per slice (along ``axis``) with ``organs`` (comma-separated) present in it."""
        o = self.options
        root = Path(o.root)
        name = o.name or root.name
        items: list[SeedItem] = []
        rejects: list[Reject] = []
        for vol in o.volumes:
            try:
                items.extend(self._slices(root, name, vol))
            except Exception as exc:  # noqa: BLE001 - a broken volume is a reject, the rest goes on
                rejects.append(reject_from_exception(vol.image, exc))
        return finish(items, rejects, o)

    def _slices(self, root: Path, name: str, vol: NiftiVolume) -> list[SeedItem]:
        o = self.options
        path = safe_path(root, vol.image, vol.image)
        image = nifti_volume(path)
        digest = file_sha256(path)
        seg = organs_per_slice = None
        if vol.segmentation:
            seg = nifti_volume(safe_path(root, vol.segmentation, vol.segmentation))
            if seg.shape[:3] != image.shape[:3]:
                raise ValueError(
                    f"segmentation {vol.segmentation} has shape {seg.shape}, image {image.shape}"
                )
            names = self._label_map(vol)
            organs_per_slice = []
            for k in range(image.shape[o.axis]):
                counts = np.bincount(np.take(seg, k, axis=o.axis).astype(np.int64).ravel())
                present = [
                    names.get(v, f"label {v}") for v in np.nonzero(counts >= o.min_voxels)[0] if v != 0
                ]
                organs_per_slice.append(sorted(present))
        subject = vol.subject or Path(vol.image).name.split(".")[0]
        out = []
        for k in range(image.shape[o.axis]):
            organs = organs_per_slice[k] if organs_per_slice is not None else []
            if o.skip_empty and seg is not None and not organs:
                continue
            h, w = nifti_slice(image, k, o.axis).shape[:2]
            ref = ImageRef(
                path=vol.image,
                root=str(root),
                loader="nifti",
                frame=k,
                sha256=frame_sha256(digest, k),
                modality=vol.modality,
                width=int(w),
                height=int(h),
            )
            labels = {"body_part": o.body_part, "slice": str(k)}
            if organs:
                labels["organs"] = ", ".join(organs)
            out.append(
                SeedItem(
                    id=item_id(name, f"{subject}/slice{k:03d}"),
                    dataset=name,
                    image=ref,
                    modality=vol.modality,
                    labels=labels,
                    subject_id=f"{name}/{subject}",
                )
            )
        return out


# ------------------------------------------------------------------------------------- DICOM

SAFE_DICOM_TAGS = (
    "Modality",
    "BodyPartExamined",
    "PhotometricInterpretation",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "BitsStored",
)
"""The only DICOM attributes a source reads into items (none identifies a person)."""

IDENTIFYING_DICOM_TAGS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientBirthTime",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientMotherBirthName",
    "MedicalRecordLocator",
    "PatientAge",
    "PatientSex",
    "PatientSize",
    "PatientWeight",
    "EthnicGroup",
    "Occupation",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "SeriesDate",
    "AcquisitionDate",
    "ContentDate",
    "StudyTime",
    "SeriesTime",
    "AcquisitionTime",
    "ContentTime",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "ReferringPhysicianName",
    "ReferringPhysicianAddress",
    "PerformingPhysicianName",
    "OperatorsName",
    "PhysiciansOfRecord",
    "NameOfPhysiciansReadingStudy",
    "StationName",
    "DeviceSerialNumber",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "FrameOfReferenceUID",
    "StudyDescription",
    "SeriesDescription",
    "ImageComments",
    "AdditionalPatientHistory",
    "PatientComments",
    "RequestingPhysician",
    "ScheduledPerformingPhysicianName",
)
"""DICOM PS3.15 basic-profile attributes (a subset covering HIPAA Safe Harbor) that never leave."""

_BODY_PARTS = {
    "CSPINE": "cervical spine",
    "TSPINE": "thoracic spine",
    "LSPINE": "lumbar spine",
    "WHOLE BODY": "whole body",
    "WHOLEBODY": "whole body",
    "EXTREMITY": "extremity",
}


def _salted(salt: str, value: str) -> str:
    return hashlib.sha256(f"{salt}\x00{value}".encode()).hexdigest()[:16]


def dicom_header(path: Path) -> dict[str, Any]:
    """Read a DICOM header and return only :data:`SAFE_DICOM_TAGS` plus a pseudonymous ``_subject``
    key material (the raw PatientID is used for hashing here and discarded)."""
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, defer_size="1 KB")
    if "PixelData" not in ds:
        raise ValueError("no pixel data (not an image)")
    safe = {tag: ds.get(tag) for tag in SAFE_DICOM_TAGS}
    safe["_subject_key"] = str(ds.get("PatientID") or ds.get("StudyInstanceUID") or "")
    return safe


def dicom_items(
    header: dict[str, Any],
    ref: ImageRef,
    dataset: str,
    local: str,
    salt: str,
    max_frames: int,
    labels: dict[str, str] | None = None,
) -> list[SeedItem]:
    """Seed items (one per frame, at most ``max_frames``) for one DICOM file's safe header."""
    modality = dicom_modality(header.get("Modality"))
    body = str(header.get("BodyPartExamined") or "").strip().upper()
    lab = {"body_part": _BODY_PARTS.get(body, body.lower())} if body else {}
    lab.update(labels or {})
    rows, cols = int(header.get("Rows") or 0), int(header.get("Columns") or 0)
    frames = int(header.get("NumberOfFrames") or 1)
    subject = _salted(salt, header["_subject_key"]) if header.get("_subject_key") else local
    base = ref.model_copy(update={"modality": modality, "width": cols or None, "height": rows or None})
    frame_ids: list[int | None] = [None] if frames <= 1 else list(range(min(frames, max_frames)))
    out = []
    for f in frame_ids:
        fref = (
            base if f is None else base.model_copy(update={"frame": f, "sha256": frame_sha256(ref.sha256, f)})
        )
        suffix = "" if f is None else f"#{f}"
        out.append(
            SeedItem(
                id=item_id(dataset, local + suffix),
                dataset=dataset,
                image=fref,
                modality=modality,
                labels=dict(lab),
                subject_id=f"{dataset}/{subject}",
            )
        )
    return out


class DicomSource:
    """A folder of DICOM files: modality and body part from the tags, grouped by a pseudonymous patient."""

    def __init__(self, options: DicomOptions):
        self.options = options

    def load(self) -> SeedSet:
        """Index every DICOM image under root; non-DICOM, pixel-less and (``verify: decode``, the
        default) undecodable files are rejects naming the file."""
        o = self.options
        root = Path(o.root)
        name = o.name or root.name
        items: list[SeedItem] = []
        rejects: list[Reject] = []
        for path in sorted(p for p in root.glob(o.pattern) if p.is_file()):
            rel = path.relative_to(root).as_posix()
            try:
                safe_path(root, rel, rel)
                header = dicom_header(path)
                ref = ImageRef(path=rel, root=str(root), loader="dicom", sha256=file_sha256(path))
                new = dicom_items(header, ref, name, rel, o.subject_salt, o.max_frames)
                if o.verify == "decode":
                    check_image(path, new[0].image)
                items.extend(new)
            except Exception as exc:  # noqa: BLE001 - unreadable files are rejects
                kind = type(exc).__name__
                reason = "not_dicom" if kind == "InvalidDicomError" else None
                rejects.append(reject(rel, reason, exc) if reason else reject_from_exception(rel, exc))
        return finish(items, rejects, o)


# -------------------------------------------------------------------------------------- demo

DEMO_FILES: tuple[tuple[str, str, str, dict[str, str]], ...] = (
    # (package, file, modality for non-DICOM files, labels)
    ("skimage", "retina.jpg", "fundus", {"diagnosis": "normal retina", "body_part": "eye"}),
    ("skimage", "microaneurysms.png", "fundus", {"diagnosis": "microaneurysms", "body_part": "eye"}),
    ("skimage", "cell.png", "microscopy", {"diagnosis": "cells"}),
    ("skimage", "ihc.png", "microscopy", {"diagnosis": "immunohistochemistry-stained tissue"}),
    ("pydicom", "CT_small.dcm", "", {}),
    ("pydicom", "MR_small.dcm", "", {}),
    ("pydicom", "examples_overlay.dcm", "", {}),
    ("pydicom", "examples_rgb_color.dcm", "", {}),
    ("pydicom-data", "693_UNCR.dcm", "", {}),
    ("pydicom-data", "MR2_UNCR.dcm", "", {}),
    ("pydicom-data", "emri_small.dcm", "", {}),
    ("pydicom-data", "eCT_Supplemental.dcm", "", {}),
    ("pydicom-data", "MR-SIEMENS-DICOM-WithOverlays.dcm", "", {}),
    ("pydicom-data", "RG1_UNCR.dcm", "", {}),
    ("pydicom-data", "RG3_UNCR.dcm", "", {}),
    ("pydicom-data", "US1_UNCR.dcm", "", {}),
    ("pydicom-data", "color-pl.dcm", "", {}),
    ("pydicom-data", "OBXXXX1A.dcm", "", {}),
    ("pydicom-data", "gdcm-US-ALOKA-16.dcm", "", {}),
    ("pydicom-data", "explicit_VR-UN.dcm", "", {}),
)
"""The demo corpus: files read from installed packages (nothing is copied into the project)."""


class DemoSource:
    """A small labelled corpus for the offline quickstart: images bundled with installed packages plus
    the embedded real corpus (``medgr2_datasets.corpus``: PneumoniaMNIST, TotalSegmentator slices)."""

    def __init__(self, options: DemoOptions):
        self.options = options

    def load(self) -> SeedSet:
        """Index the demo files that are installed (each decoded once, its loader chosen by content);
        missing packages are rejects naming the extra."""
        o = self.options
        dirs = package_dirs()
        items: list[SeedItem] = []
        rejects: list[Reject] = []
        for package, filename, modality, labels in DEMO_FILES:
            if package not in o.packages:
                continue
            uri = f"pkg://{package}/{filename}"
            if package not in dirs:
                rejects.append(
                    reject(uri, "missing_package", f"{package} is not installed: pip install 'medgr2[data]'")
                )
                continue
            try:
                path = resolve_pkg(uri)
                local = f"{package}/{filename}"
                if loader_for(path) == "dicom":
                    ref = ImageRef(path=uri, loader="pkg", sha256=file_sha256(path))
                    new = dicom_items(dicom_header(path), ref, "demo", local, "demo", o.max_frames, labels)
                    check_image(path, new[0].image.model_copy(update={"loader": "dicom"}))
                    items.extend(new)
                else:
                    ref = index_file(path.parent, path.name, Modality(modality), "decode", uri)
                    ref = ref.model_copy(update={"path": uri, "root": None, "loader": "pkg"})
                    items.append(
                        SeedItem(
                            id=item_id("demo", local),
                            dataset="demo",
                            image=ref,
                            modality=Modality(modality),
                            labels=labels,
                            subject_id=f"demo/{local}",
                        )
                    )
            except Exception as exc:  # noqa: BLE001
                rejects.append(reject_from_exception(uri, exc))
        if o.corpus:  # the embedded real images keep their recorded (grouped) splits
            from medgr2_datasets.corpus import corpus_items

            more, failed = corpus_items()
            items += more
            rejects += failed
        return finish(items, rejects, o, keep_splits=True)
