"""Shared test fixtures: the shared real-data folder and a fresh registry per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Nothing may download from a model hub: tests build tiny models offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def shared_data_root() -> Path:
    """``$MEDGR2_SHARED_DATA`` or ``../shared/data`` beside the repository."""
    return Path(os.environ.get("MEDGR2_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data folder; skips when absent, except in CI (``CI=true``), where it fails."""
    root = shared_data_root()
    if not (root / "README.md").is_file():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"shared data not found at {root} (set MEDGR2_SHARED_DATA); CI must not skip data tests")
        pytest.skip(f"shared data not found at {root} (set MEDGR2_SHARED_DATA)")
    return root


@pytest.fixture
def registry():
    """A fresh registry with every installed plugin (built-ins included)."""
    from medgr2.plugins import load_registry

    return load_registry()
