"""Fixtures of the generation tests: seed items with real PNG files, a loaded registry."""

from __future__ import annotations

import warnings

import pytest
from gen_helpers import make_items


@pytest.fixture(scope="session")
def gen_registry():
    """The registry of every installed plugin (built once per session)."""
    from medgr2.plugins import load_registry

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_registry()


@pytest.fixture
def items_factory(tmp_path):
    """``items_factory(n, **kw)``: seed items with images in ``tmp_path/images``."""
    return lambda n, **kw: make_items(tmp_path / "images", n, **kw)
