"""A bounded per-image memo: what R_φ derives from an image (CNN pixels, grounding vectors), kept between calls."""

from __future__ import annotations

from collections.abc import Callable, ValuesView
from typing import Generic, TypeVar

from medgr2.data import ImageRef

T = TypeVar("T")


class ImageMemo(Generic[T]):
    """``memo(image)`` is ``compute(image)``, computed once per image key and kept for later calls.

    At most ``size`` values are kept: when full, the memo starts again. The candidates' questions about
    one image come together, so the recent images are the ones asked for again; scoring 200,000
    candidates then holds ``size`` images, not all of them.
    """

    def __init__(self, compute: Callable[[ImageRef], T], size: int = 8192):
        self.compute, self.size = compute, size
        self._values: dict[str, T] = {}

    def __call__(self, image: ImageRef) -> T:
        key = image.key
        if key not in self._values:
            if len(self._values) >= self.size:
                self._values.clear()
            self._values[key] = self.compute(image)
        return self._values[key]

    def __len__(self) -> int:
        return len(self._values)

    def values(self) -> ValuesView[T]:
        """The values kept now (e.g. to measure what the memo holds)."""
        return self._values.values()

    def clear(self) -> None:
        """Forget every value (e.g. when the image size they were computed at changes)."""
        self._values.clear()
