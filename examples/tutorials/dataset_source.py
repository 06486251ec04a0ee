"""Tutorial 3: a dataset source, ``manifest`` (see docs/tutorials.md).

A dataset source indexes labelled images: a JSONL manifest, one line per image:
``{"image": "rel/path.png", "diagnosis": "pneumonia", "patient": "p12", "modality": "xray"}``.
It returns a :class:`~medgr2.interfaces.SeedSet`: seed items with splits grouped by patient (so one
patient's images never straddle train and test), and a reject, with its reason, for every line it
cannot use (a missing file, a bad modality, broken JSON) instead of raising.

    medgr2 --plugin examples/tutorials/dataset_source.py data inspect --source manifest --opt path=my/manifest.jsonl
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medgr2 import hookimpl
from medgr2.data import ImageRef, Modality, Reject, SeedItem, stable_hash
from medgr2.interfaces import SeedSet


class ManifestOptions(BaseModel):
    """Options of the ``manifest`` source."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="The JSONL manifest; image paths are relative to its folder.")
    test_share: float = Field(default=0.25, ge=0, lt=1, description="Share of patients held out as test.")
    seed: int = Field(default=0, description="Seed of the patient split.")


class ManifestSource:
    """Seed items from a JSONL manifest (a :class:`medgr2.interfaces.DatasetSource`)."""

    def __init__(self, options: ManifestOptions):
        self.options = options

    def _split(self, patient: str) -> str:
        """Deterministic per patient: a hash in [0, 1) against the test share."""
        unit = int(stable_hash(self.options.seed, patient)[:8], 16) / 16**8
        return "test" if unit < self.options.test_share else "train"

    def load(self) -> SeedSet:
        manifest = Path(self.options.path)
        if not manifest.is_file():
            raise FileNotFoundError(f"manifest source: {manifest} does not exist (options.path)")
        root = manifest.parent.resolve()
        items, rejects = [], []
        for n, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{manifest.name}:{n}"
            try:
                row = json.loads(line)
                modality = Modality(row.get("modality", "other"))
            except ValueError as exc:
                rejects.append(Reject(stage="data", id=where, reason="bad_record", detail=str(exc)[:200]))
                continue
            if not (root / row.get("image", "")).is_file():
                rejects.append(Reject(stage="data", id=where, reason="missing_file", detail=str(row.get("image"))))
                continue
            patient = str(row.get("patient") or row["image"])
            items.append(SeedItem(
                id=f"manifest-{stable_hash(row['image'])[:12]}", dataset="manifest", modality=modality,
                image=ImageRef(path=row["image"], root=str(root), modality=modality),
                labels={k: str(v) for k, v in row.items() if k not in ("image", "patient", "modality")},
                subject_id=patient, split=self._split(patient)))
        return SeedSet(items=tuple(items), samples=(), rejects=tuple(rejects))


@hookimpl
def medgr2_register_datasets(registry: Any) -> None:
    registry.add("manifest", ManifestSource, config=ManifestOptions,
                 description="Labelled images from a JSONL manifest, split by patient")
