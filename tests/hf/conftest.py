"""Fixtures of the Hugging Face artifact tests: small VQA sets with PNG images, a registry."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def make_samples(root: Path, n: int = 8) -> list:
    """``n`` two-class chest X-ray samples (train split, PneumoniaMNIST provenance) with PNG images."""
    from medgr2.data import Provenance
    from medgr2.testing import make_png_samples

    return make_png_samples(root, n, split="train",
                            provenance=Provenance(source_dataset="PneumoniaMNIST", generator="labels"))


@pytest.fixture
def samples(tmp_path) -> list:
    return make_samples(tmp_path / "images")


@pytest.fixture(scope="session")
def registry():
    from medgr2.plugins import load_registry

    return load_registry()
