"""Fixtures of the Hugging Face artifact tests: small VQA sets with PNG images, a registry."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def make_samples(root: Path, n: int = 8) -> list:
    """``n`` two-class chest X-ray samples whose answer is the image colour (red: pneumonia)."""
    from PIL import Image

    from medgr2.data import ImageRef, Modality, Provenance, VQASample

    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        sick = i % 2 == 0
        name = f"img{i}.png"
        Image.new("RGB", (64, 64), (200, 40, 40) if sick else (40, 40, 200)).save(root / name)
        options = ("pneumonia", "normal") if i % 4 < 2 else ("normal", "pneumonia")
        out.append(VQASample(
            images=(ImageRef(path=name, root=str(root), loader="file", modality=Modality.XRAY),),
            question=f"Case {i}: what does this chest X-ray show?", options=options,
            answer="pneumonia" if sick else "normal", rationale="The lungs look " + ("opaque." if sick else "clear."),
            modality=Modality.XRAY, split="train",
            provenance=Provenance(source_dataset="PneumoniaMNIST", generator="labels")))
    return out


@pytest.fixture
def samples(tmp_path) -> list:
    return make_samples(tmp_path / "images")


@pytest.fixture(scope="session")
def registry():
    from medgr2.plugins import load_registry

    return load_registry()
