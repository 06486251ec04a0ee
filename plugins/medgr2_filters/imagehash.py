"""Perceptual image hashes (dHash, aHash) on a small grayscale thumbnail, cached by ``ImageRef.key``.

Pixels are decoded through :func:`medgr2.images.open_image`, so any registered image loader
(PNG/JPEG files, DICOM, NIfTI slices ...) works. A hash is a 64-bit integer; near-identical
images (re-encoded, resized, lightly noised) differ in a few bits.

Hand-written on purpose rather than the ``imagehash`` package (``benchmarks/bench_libraries.py``
compares them): ``imagehash`` converts every image to 8-bit ``L`` first, which clips 16-bit medical
images (DICOM, NIfTI slices, 16-bit PNG) at 255, so 30 unrelated CT-like images with stored values
500-2540 all hash alike there (435 of 435 pairs within 5 bits, none here). It is also slower on
large images, which it resizes whole with Lanczos (1024x1024: 4.1 ms against 0.6 ms here, about
7x; equal at 64x64). Both keep a lightly noised copy within 5 bits (540 of 540 images). The two
give different bits for the same image (box against Lanczos resampling), so hashes are not
interchangeable between them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from medgr2.data import ImageRef
    from medgr2.registry import Registry

HASH_BITS = 64


_HIGH_DEPTH = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_WORK_SIZE = 128


def _gray(image: Any) -> Any:
    """A float32 ('F' mode) grayscale copy of a PIL image of any mode or bit depth, at most ~128 px
    a side (big images are box-reduced first, so hashing a large radiograph stays cheap)."""
    from PIL import Image

    if image.mode not in _HIGH_DEPTH:
        image = image.convert("L")
        factor = min(image.width, image.height) // _WORK_SIZE
        if factor > 1:
            image = image.reduce(factor)
    return Image.fromarray(np.ascontiguousarray(np.asarray(image, dtype=np.float32)), mode="F")


def _bits_to_int(bits: np.ndarray) -> int:
    value = 0
    for b in bits.ravel():
        value = (value << 1) | int(b)
    return value


def dhash(image: Any) -> int:
    """Difference hash: is each pixel of a 9x8 thumbnail brighter than its left neighbour (64 bits)."""
    from PIL import Image

    small = np.asarray(_gray(image).resize((9, 8), Image.Resampling.BOX), dtype=np.float32)
    return _bits_to_int(small[:, 1:] > small[:, :-1])


def ahash(image: Any) -> int:
    """Average hash: is each pixel of an 8x8 thumbnail above the thumbnail's mean (64 bits)."""
    from PIL import Image

    small = np.asarray(_gray(image).resize((8, 8), Image.Resampling.BOX), dtype=np.float32)
    return _bits_to_int(small > small.mean())


HASHERS: dict[str, Callable[[Any], int]] = {"dhash": dhash, "ahash": ahash}


class ImageHasher:
    """Hashes ``ImageRef``s with one method, caching by ``ImageRef.key`` (each image decoded once).

    An image that cannot be decoded raises with the reference and the loader named.
    """

    def __init__(self, method: str, registry: Registry | None = None):
        if method not in HASHERS:
            raise ValueError(f"unknown image hash {method!r}; use one of {sorted(HASHERS)}")
        self.method = method
        self.registry = registry
        self._fn = HASHERS[method]
        self._cache: dict[str, int] = {}

    def __call__(self, ref: ImageRef) -> int:
        key = ref.key
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        from medgr2.images import open_image

        try:
            image = open_image(ref, self.registry)
        except Exception as exc:
            raise ValueError(
                f"cannot decode image {ref.path!r} (root {ref.root!r}, loader {ref.loader!r}) for perceptual "
                f"hashing: {type(exc).__name__}: {exc}. Fix the image reference, register its loader, or set "
                "the filter's image_hash option to 'key' to compare file hashes only."
            ) from exc
        value = self._fn(image)
        self._cache[key] = value
        return value

    def many(self, refs: Iterable[ImageRef], task: Any = None) -> list[int]:
        """Hash every reference in order; advances ``task`` (a progress task) by one per reference."""
        out = []
        for ref in refs:
            out.append(self(ref))
            if task is not None:
                task.advance(1)
        return out
