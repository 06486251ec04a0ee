"""Named option sets for the real datasets in the shared data folder (``../shared/data``).

Each preset is a dataset spec ``{name: <source>, options: {...}}`` whose ``root`` is relative
to the shared data folder. In a run config (paths relative to the repository root)::

    data:
      sources:
        - name: csv                       # HAM10000: 8,494 images, grouped by lesion_id
          options: {root: ../shared/data/dermoscopy-ham10000, preset: ham10000}
        - name: folders                   # BUSI: 623 images, class = folder
          options: {root: ../shared/data/ultrasound-busi, name: BUSI, modality: ultrasound,
                    extra_labels: {body_part: breast}}
        - name: medmnist                  # PneumoniaMNIST: 3,882 train + 524 val
          options: {root: ../shared/data/xray-pneumoniamnist, file: pneumoniamnist.npz,
                    name: PneumoniaMNIST, extra_labels: {body_part: chest}}
        - name: folders                   # NCT-CRC: 9 tiles, class = file-name prefix
          options: {root: ../shared/data/pathology-nct-crc, name: NCT-CRC-HE, modality: microscopy,
                    class_from: filename, extra_labels: {body_part: colon}}
        - name: nifti                     # TotalSegmentator: 2 volumes (CT + MR) -> slices with organs
          options: {root: ../shared/data/ct-mr-totalsegmentator, name: TotalSegmentator,
                    volumes: [{image: example_ct_sm.nii.gz, segmentation: example_seg.nii.gz, modality: ct},
                              {image: example_mr_sm.nii.gz, segmentation: example_seg_mr.nii.gz,
                               modality: mri}]}
        - name: csv                       # Figure1 COVID: 55 chest X-rays with findings
          options: {root: ../shared/data/xray-figure1-covid, preset: figure1}

PneumoniaMNIST keeps the file's train/val split (it has no test split); add
``split_map: {val: test}`` to evaluate on its val images.

The ``shared`` source loads a preset by name from ``$MEDGR2_SHARED_DATA`` (default
``../shared/data``): ``{name: shared, options: {preset: ham10000, overrides: {seed: 3}}}``, or
``medgr2 data inspect --source shared --opt preset=busi``.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from medgr2.interfaces import SeedSet

SHARED_PRESETS: dict[str, dict[str, Any]] = {
    "ham10000": {"name": "csv", "options": {"root": "dermoscopy-ham10000", "preset": "ham10000"}},
    "busi": {
        "name": "folders",
        "options": {
            "root": "ultrasound-busi",
            "name": "BUSI",
            "modality": "ultrasound",
            "extra_labels": {"body_part": "breast"},
        },
    },
    "pneumoniamnist": {
        "name": "medmnist",
        "options": {
            "root": "xray-pneumoniamnist",
            "file": "pneumoniamnist.npz",
            "name": "PneumoniaMNIST",
            "extra_labels": {"body_part": "chest"},
        },
    },
    "nct-crc": {
        "name": "folders",
        "options": {
            "root": "pathology-nct-crc",
            "name": "NCT-CRC-HE",
            "modality": "microscopy",
            "class_from": "filename",
            "extra_labels": {"body_part": "colon"},
        },
    },
    "totalsegmentator": {
        "name": "nifti",
        "options": {
            "root": "ct-mr-totalsegmentator",
            "name": "TotalSegmentator",
            "volumes": [
                {"image": "example_ct_sm.nii.gz", "segmentation": "example_seg.nii.gz", "modality": "ct"},
                {"image": "example_mr_sm.nii.gz", "segmentation": "example_seg_mr.nii.gz", "modality": "mri"},
            ],
        },
    },
    "figure1": {"name": "csv", "options": {"root": "xray-figure1-covid", "preset": "figure1"}},
}
"""Preset name -> dataset spec with ``root`` relative to the shared data folder."""


def shared_data_root() -> Path:
    """``$MEDGR2_SHARED_DATA``, else ``../shared/data`` from the current directory."""
    return Path(os.environ.get("MEDGR2_SHARED_DATA", "../shared/data"))


def preset_spec(name: str, shared_root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The dataset spec ``{name, options}`` of preset ``name`` with ``root`` made absolute."""
    if name not in SHARED_PRESETS:
        raise KeyError(f"unknown data preset {name!r}; known: {', '.join(sorted(SHARED_PRESETS))}")
    spec = copy.deepcopy(SHARED_PRESETS[name])
    base = Path(shared_root) if shared_root is not None else shared_data_root()
    spec["options"]["root"] = str((base / spec["options"]["root"]).resolve())
    return spec


SOURCE_CLASSES: dict[str, tuple[str, str]] = {
    "csv": ("medgr2_datasets.sources:CsvSource", "medgr2_datasets.options:CsvOptions"),
    "folders": ("medgr2_datasets.sources:FoldersSource", "medgr2_datasets.options:FoldersOptions"),
    "medmnist": ("medgr2_datasets.sources:MedMNISTSource", "medgr2_datasets.options:MedMNISTOptions"),
    "nifti": ("medgr2_datasets.volumes:NiftiSource", "medgr2_datasets.options:NiftiOptions"),
}


class SharedOptions(BaseModel):
    """``shared``: one of the shared real datasets by preset name."""

    model_config = ConfigDict(extra="forbid")

    preset: Literal["ham10000", "busi", "pneumoniamnist", "nct-crc", "totalsegmentator", "figure1"] = Field(
        description="Which shared dataset (see medgr2_datasets.presets)."
    )
    root: Path | None = Field(
        default=None, description="Shared data folder (default: $MEDGR2_SHARED_DATA or ../shared/data)."
    )
    overrides: dict[str, Any] = Field(default_factory=dict, description="Options replacing the preset's.")


class SharedSource:
    """Loads a shared dataset through the source and options its preset names."""

    def __init__(self, options: SharedOptions):
        self.options = options

    def load(self) -> SeedSet:
        """Build the preset's source (options validated) and load it."""
        from medgr2.registry import import_target

        spec = preset_spec(self.options.preset, self.options.root)
        target, model = (import_target(x) for x in SOURCE_CLASSES[spec["name"]])
        return target(model.model_validate({**spec["options"], **self.options.overrides})).load()
