"""Image access for every stage: safe path resolution and lazy decoding through loaders.

Pixels are decoded only here, by the image loader registered under ``ImageRef.loader`` (plugins
register ``file``, ``dicom``, ``nifti``, ``npz`` ...). Paths never escape their dataset root.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medgr2.data import ImageRef
    from medgr2.registry import Registry


class UnsafePathError(ValueError):
    """An image path escapes its dataset root (traversal, absolute path, symlink)."""


def resolve_inside(root: str | os.PathLike[str], relative: str, *, record: str = "") -> Path:
    """Resolve ``relative`` under ``root``; refuse anything that ends up outside it.

    Refused: absolute paths, drive letters, ``..`` components, NUL bytes, backslash tricks, and
    symlinks (anywhere on the way) whose target lies outside the root.
    """
    where = f" (record {record})" if record else ""
    if not relative or "\x00" in relative:
        raise UnsafePathError(f"empty or NUL-containing image path {relative!r}{where}")
    normalised = relative.replace("\\", "/")
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        raise UnsafePathError(
            f"absolute image path {relative!r}{where}: paths must be relative to the dataset root {root}"
        )
    parts = normalised.split("/")
    if any(p == ".." for p in parts):
        raise UnsafePathError(f"image path {relative!r}{where} climbs out of the dataset root with '..'")
    root_real = Path(os.path.realpath(root))
    candidate = Path(os.path.realpath(root_real.joinpath(*[p for p in parts if p not in ("", ".")])))
    if candidate != root_real and root_real not in candidate.parents:
        raise UnsafePathError(
            f"image path {relative!r}{where} resolves to {candidate}, outside the dataset root {root_real} "
            "(a symlink that escapes the root?)"
        )
    return candidate


class ImageDecodeError(OSError):
    """An image could not be decoded; the message names the file, its root and its loader."""


def open_image(ref: ImageRef, registry: Registry | None = None) -> Any:
    """Decode ``ref`` to a ``PIL.Image.Image`` with the loader it names.

    A decoder failure (``OSError`` such as PIL's "image file is truncated") is raised again as
    :class:`ImageDecodeError` (an ``OSError`` too) naming the file; a missing file stays a
    ``FileNotFoundError``. Dataset sources decode every image once at load, so this is a last line.
    """
    from medgr2.plugins import ensure_registry

    registry = ensure_registry(registry)
    loader = registry.get("image_loader", ref.loader)
    try:
        return loader(ref)
    except (FileNotFoundError, ImageDecodeError):
        raise
    except OSError as exc:
        where = f" under {ref.root}" if ref.root else ""
        frame = f" (frame {ref.frame})" if ref.frame is not None else ""
        raise ImageDecodeError(
            f"cannot decode image {ref.path!r}{frame}{where} with loader {ref.loader!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
