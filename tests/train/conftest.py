"""Fixtures of the training tests: tiny offline VLMs and small VQA sample sets with PNG images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory) -> Path:
    """A tiny Qwen2.5-VL folder, built once per session."""
    from medgr2_hf.tiny import build_tiny_vlm

    return build_tiny_vlm("qwen2_5_vl", tmp_path_factory.mktemp("tiny") / "qwen", seed=0)


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory) -> Path:
    """A tiny LLaVA folder, built once per session."""
    from medgr2_hf.tiny import build_tiny_vlm

    return build_tiny_vlm("llava", tmp_path_factory.mktemp("tiny") / "llava", seed=0)


def make_samples(root: Path, n: int = 8):
    """``n`` two-class VQA samples whose answer is visible in the image colour (red: pneumonia)."""
    from PIL import Image

    from medgr2.data import ImageRef, Modality, VQASample

    root.mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(n):
        sick = i % 2 == 0
        name = f"img{i}.png"
        Image.new("RGB", (64, 64), (200, 40, 40) if sick else (40, 40, 200)).save(root / name)
        options = ("pneumonia", "normal") if i % 4 < 2 else ("normal", "pneumonia")
        samples.append(VQASample(
            images=(ImageRef(path=name, root=str(root), loader="file", modality=Modality.XRAY),),
            question=f"Case {i}: what does this chest X-ray show?", options=options,
            answer="pneumonia" if sick else "normal", rationale="The lungs look " + ("opaque." if sick else "clear."),
            modality=Modality.XRAY))
    return samples


@pytest.fixture
def samples(tmp_path) -> list:
    """Eight samples with PNG images written in ``tmp_path``."""
    return make_samples(tmp_path / "images")
