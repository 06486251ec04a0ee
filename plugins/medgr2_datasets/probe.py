"""Content checks of image files while indexing: the format by magic bytes, a full decode once.

Every source runs :func:`check_image` on the files it admits, so a truncated or corrupt image is
a reject naming the file at load time, never an ``OSError`` deep inside a later stage. The
format comes from the file's first bytes, not its extension: a PNG named ``.jpg`` is read as
what it is, and a file with ``DICM`` at byte 128 goes to the ``dicom`` loader whatever its name.

The decode is the loader's own (``decode_file`` / ``decode_dicom``), so what passes here decodes
later. Results are cached per process by content hash (sha256, loader, frame, pixel limit): a
file seen twice, or the same image under two names, is decoded once. Measured on the shared
HAM10000 folder (8,494 JPEGs, 200×150): a full decode adds about 0.25 ms per image (~2 s per
load) to the hashing and header read.
"""

from __future__ import annotations

import os
from pathlib import Path

from medgr2.data import ImageRef, Modality

_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (128, b"DICM", "dicom"),  # first: a DICOM preamble may itself look like a TIFF header
    (0, b"\x89PNG\r\n\x1a\n", "png"),
    (0, b"\xff\xd8\xff", "jpeg"),
    (0, b"GIF87a", "gif"),
    (0, b"GIF89a", "gif"),
    (0, b"BM", "bmp"),
    (0, b"II*\x00", "tiff"),
    (0, b"MM\x00*", "tiff"),
    (0, b"II+\x00", "tiff"),
    (0, b"MM\x00+", "tiff"),
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", "jpeg2000"),
    (0, b"\xff\x4f\xff\x51", "jpeg2000"),
    (344, b"n+1\x00", "nifti"),
    (344, b"ni1\x00", "nifti"),
    (0, b"\x1f\x8b", "gzip"),
    (0, b"PK\x03\x04", "zip"),
)
"""(offset, magic bytes, format) of the formats an image source may meet, tried in order."""

_READ = 352


class UndecodableImageError(OSError):
    """An image file that its loader cannot decode (truncated, corrupt, not an image)."""


def sniff_format(path: str | os.PathLike[str]) -> str | None:
    """The format of a file from its first bytes (``png``, ``jpeg``, ``dicom`` ...), else ``None``.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "scan.jpg"
    >>> _ = p.write_bytes(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(16))
    >>> sniff_format(p)
    'png'
    """
    with open(path, "rb") as f:
        head = f.read(_READ)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    for offset, magic, fmt in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return fmt
    return None


def loader_for(path: str | os.PathLike[str], fmt: str | None = None) -> str:
    """The image loader for a file, by content: ``dicom`` for DICOM (``DICM`` at byte 128), else
    ``file`` (PIL reads by content too). A ``.dcm`` file without the DICOM preamble that is no
    known image format either goes to ``dicom``, which names the problem."""
    fmt = sniff_format(path) if fmt is None else fmt
    if fmt == "dicom":
        return "dicom"
    if fmt is None and Path(path).suffix.lower() in (".dcm", ".dicom"):
        return "dicom"
    return "file"


_CACHE: dict[tuple[str, str, int | None, int], tuple[int, int] | str] = {}


def check_image(
    path: Path,
    ref: ImageRef,
    *,
    max_pixels: int | None = None,
    fmt: str | None = None,
) -> tuple[int, int]:
    """Decode ``ref`` (whose file is ``path``) fully with its loader's decoder; ``(width, height)``.

    Raises :class:`UndecodableImageError` naming ``ref.path`` (and the format found by content)
    when it cannot be decoded; :class:`~medgr2_datasets.loaders.ImageTooLargeError` when it has
    more than ``max_pixels`` pixels. Cached by ``ref.sha256`` when it is set.
    """
    from medgr2_datasets.loaders import DEFAULT_CT_WINDOW, DEFAULT_MAX_PIXELS, ImageTooLargeError

    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    key = (ref.sha256, ref.loader, ref.frame, limit) if ref.sha256 else None
    cached = _CACHE.get(key) if key is not None else None
    if isinstance(cached, tuple):
        return cached
    if isinstance(cached, str):
        raise UndecodableImageError(cached)
    try:
        size = _decode(path, ref, limit, DEFAULT_CT_WINDOW)
    except ImageTooLargeError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure names the file
        found = fmt or _safe_sniff(path)
        what = f"{found} by content" if found else "no known image format by content"
        message = (
            f"image {ref.path!r} ({what}) cannot be decoded by loader {ref.loader!r}: "
            f"{type(exc).__name__}: {str(exc).strip()[:300]}"
        )
        if key is not None:
            _CACHE[key] = message
        raise UndecodableImageError(message) from exc
    if key is not None:
        _CACHE[key] = size
    return size


def _safe_sniff(path: Path) -> str | None:
    try:
        return sniff_format(path)
    except OSError:
        return None


def _decode(path: Path, ref: ImageRef, max_pixels: int, ct_window: tuple[float, float]) -> tuple[int, int]:
    from medgr2_datasets.loaders import decode_dicom, decode_file

    if ref.loader == "dicom":
        img = decode_dicom(path, ref, max_pixels, ct_window)
    elif ref.loader == "file":
        img = decode_file(path, ref, max_pixels)
    else:
        raise ValueError(f"no decode check for loader {ref.loader!r}")
    return int(img.width), int(img.height)


def checked_ref(
    root: Path,
    rel: str,
    path: Path,
    digest: str,
    modality: Modality,
    *,
    decode: bool = True,
) -> ImageRef:
    """An :class:`ImageRef` for a file, its loader chosen by content and (``decode``) its pixels
    decoded once; its width and height filled in from the decode."""
    fmt = sniff_format(path)
    ref = ImageRef(path=rel, root=str(root), loader=loader_for(path, fmt), sha256=digest, modality=modality)
    if not decode:
        return ref
    width, height = check_image(path, ref, fmt=fmt)
    return ref.model_copy(update={"width": width, "height": height})


def clear_cache() -> None:
    """Forget every cached decode result (tests)."""
    _CACHE.clear()
