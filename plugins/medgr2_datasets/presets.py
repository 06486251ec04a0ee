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
``split_map: {val: test}`` to evaluate on its val images. ``medgr2 data inspect --preset NAME``
loads a preset from ``$MEDGR2_SHARED_DATA`` (default ``../shared/data``).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

SHARED_PRESETS: dict[str, dict[str, Any]] = {
    "ham10000": {"name": "csv", "options": {"root": "dermoscopy-ham10000", "preset": "ham10000"}},
    "busi": {"name": "folders", "options": {"root": "ultrasound-busi", "name": "BUSI", "modality": "ultrasound",
                                            "extra_labels": {"body_part": "breast"}}},
    "pneumoniamnist": {"name": "medmnist", "options": {"root": "xray-pneumoniamnist", "file": "pneumoniamnist.npz",
                                                       "name": "PneumoniaMNIST",
                                                       "extra_labels": {"body_part": "chest"}}},
    "nct-crc": {"name": "folders", "options": {"root": "pathology-nct-crc", "name": "NCT-CRC-HE",
                                               "modality": "microscopy", "class_from": "filename",
                                               "extra_labels": {"body_part": "colon"}}},
    "totalsegmentator": {"name": "nifti", "options": {
        "root": "ct-mr-totalsegmentator", "name": "TotalSegmentator",
        "volumes": [{"image": "example_ct_sm.nii.gz", "segmentation": "example_seg.nii.gz", "modality": "ct"},
                    {"image": "example_mr_sm.nii.gz", "segmentation": "example_seg_mr.nii.gz", "modality": "mri"}]}},
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
