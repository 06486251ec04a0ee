"""Fixtures of the training tests: tiny offline VLMs and small VQA sample sets with PNG images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medgr2.testing import make_png_samples as make_samples

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


@pytest.fixture
def sample_factory():
    """:func:`make_samples`, for tests that need their own sample sets."""
    return make_samples


@pytest.fixture
def samples(tmp_path) -> list:
    """Eight samples with PNG images written in ``tmp_path``."""
    return make_samples(tmp_path / "images")


class LengthRewardModel:
    """A stand-in R_φ for tests: longer answers score higher, on the [-6, 10] scale."""

    version = "length-rm"

    def __init__(self) -> None:
        self.calls = 0

    def score(self, inputs, context=None) -> list[float]:
        self.calls += 1
        return [min(10.0, -6.0 + len(x.answer) / 2.0) for x in inputs]


@pytest.fixture
def train_context(tmp_path):
    """A StageContext with the installed plugins' registry (the `file` image loader) and a length R_φ."""
    from medgr2.interfaces import StageContext
    from medgr2.plugins import load_registry

    registry = load_registry()
    if ("image_loader", "file") not in registry:
        registry.registrar("image_loader", "tests").add("file", _file_loader)
    return StageContext(work_dir=tmp_path / "work", seed=0, registry=registry, reward_model=LengthRewardModel())


def _file_loader(ref):
    from PIL import Image

    return Image.open(Path(ref.root) / ref.path)
