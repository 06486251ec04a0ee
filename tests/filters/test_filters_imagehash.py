"""Perceptual hashes: 16-bit medical images keep their contrast (why the hashes are not the
``imagehash`` package's, which clips every value above 255 to white: see benchmarks/bench_libraries.py)."""

from __future__ import annotations

import numpy as np
import pytest
from filters_helpers import texture
from medgr2_filters.imagehash import ahash, dhash
from PIL import Image


def ct_like(seed: int, noise: float = 0.0) -> Image.Image:
    """A 16-bit (I;16) image with stored values 500-2540, like a CT body window: all above 255."""
    pixels = np.clip(texture(seed, 128), 0, 255) * 8 + 500
    if noise:
        pixels = pixels + np.random.default_rng(seed + 1000).normal(0, noise, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 65535).astype(np.uint16))


@pytest.mark.parametrize("fn", [dhash, ahash], ids=["dhash", "ahash"])
def test_sixteen_bit_images_above_255_are_told_apart(fn):
    images = [ct_like(seed) for seed in range(12)]
    assert images[0].mode == "I;16" and min(int(np.asarray(im).min()) for im in images) > 255
    hashes = [fn(im) for im in images]
    distances = [(hashes[i] ^ hashes[j]).bit_count() for i in range(len(hashes)) for j in range(i)]
    assert min(distances) > 5  # 8-bit clipping would make every one of them one white image
    noised = [fn(ct_like(seed, noise=16.0)) for seed in range(12)]
    assert max((a ^ b).bit_count() for a, b in zip(hashes, noised)) <= 5


def test_sixteen_bit_hash_equals_the_hash_of_the_same_image_scaled_to_8_bit():
    deep = ct_like(3)
    pixels = np.asarray(deep, dtype=np.float64)
    scaled = Image.fromarray(((pixels - 500) / 8).round().astype(np.uint8))
    assert (dhash(deep) ^ dhash(scaled)).bit_count() <= 2
