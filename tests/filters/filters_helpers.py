"""Helpers of the filter tests (fixtures imported by the test modules): samples, PNG images, a registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medgr2.data import ImageRef, RewardBreakdown, VQASample
from medgr2.interfaces import StageContext


def _png_loader(ref: ImageRef):
    """A minimal ``file`` loader for tests (used only when no plugin registers one)."""
    from PIL import Image

    from medgr2.images import resolve_inside

    with Image.open(resolve_inside(ref.root, ref.path)) as im:
        im.load()
        return im.copy()


@pytest.fixture(name="freg")
def freg_fixture():
    """Every installed plugin, plus a ``file`` image loader when none is registered."""
    from medgr2.plugins import load_registry

    reg = load_registry()
    if ("image_loader", "file") not in reg:
        reg.registrar("image_loader", "tests").add("file", _png_loader)
    return reg


@pytest.fixture(name="ctx")
def ctx_fixture(tmp_path, freg):
    """A silent stage context writing into tmp_path/stage."""
    return StageContext(work_dir=tmp_path / "stage", seed=7, registry=freg)


def texture(seed: int, size: int = 96) -> np.ndarray:
    """A smooth random grayscale texture (uint8): distinct seeds give unrelated perceptual hashes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    coarse = (rng.random((12, 12)) * 255).astype(np.float32)
    return np.asarray(Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC))


def save_png(root: Path, name: str, pixels: np.ndarray) -> ImageRef:
    """Write ``pixels`` as an 8-bit PNG under ``root`` and return its reference."""
    from PIL import Image

    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / name)
    return ImageRef(path=name, root=str(root), loader="file")


def make_sample(
    question: str,
    answer: str = "pneumonia",
    *,
    image: ImageRef | None = None,
    reward: float | None = None,
    options: tuple[str, ...] = (),
    sid: str = "",
) -> VQASample:
    """A VQASample with an image reference (a path-only one by default) and an optional reward."""
    opts = options or (answer, "normal", "effusion", "cardiomegaly")
    if answer not in opts:
        opts = (answer, *opts[1:])
    return VQASample(
        id=sid,
        images=(image or ImageRef(path=f"img/{abs(hash(question)) % 10**8}.png", root="/data"),),
        question=question,
        options=opts,
        answer=answer,
        reward=None if reward is None else RewardBreakdown(total=reward),
    )
