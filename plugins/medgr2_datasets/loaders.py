"""Image loaders: decode an :class:`~medgr2.data.ImageRef` to an 8-bit RGB ``PIL.Image``.

Registered under ``ImageRef.loader``: ``file`` (anything PIL reads), ``dicom`` (pydicom),
``nifti`` (nibabel; ``frame`` is the axial slice), ``npz`` (MedMNIST arrays; path
``file.npz#array``, ``frame`` the index) and ``pkg`` (images bundled with installed packages,
``pkg://skimage/retina.jpg``). Every path goes through :func:`medgr2.images.resolve_inside`
(via :func:`medgr2_datasets.source_support.safe_path`, which also checks decoded forms); images with
more than ``max_pixels`` pixels are refused before their pixels are decoded.

Windowing to 8 bits: CT uses a window (the file's own WindowCenter/Width for DICOM, else
``ct_window``, soft tissue 40/400 HU); everything else is stretched between the 0.5th and 99.5th
percentiles. DICOM loaders return pixels only: no header field leaves this module.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np

from medgr2.data import ImageRef, Modality
from medgr2_datasets.source_support import safe_path

DEFAULT_MAX_PIXELS = 40_000_000
"""Largest image (width × height × frames decoded) any loader accepts."""

DEFAULT_CT_WINDOW = (40.0, 400.0)
"""CT soft-tissue window (centre, width) in Hounsfield units."""


class ImageTooLargeError(ValueError):
    """An image has more pixels than the loader's ``max_pixels``."""


def _check_pixels(n: int, ref: ImageRef, max_pixels: int) -> None:
    if n > max_pixels:
        raise ImageTooLargeError(
            f"image {ref.path!r} has {n:,} pixels, over the limit of {max_pixels:,} "
            "(raise max_pixels in the image loader options if this is intended)"
        )


def _root_path(ref: ImageRef) -> Path:
    if ref.root is None:
        raise ValueError(f"image {ref.path!r} has no dataset root; loader {ref.loader!r} needs one")
    return safe_path(ref.root, ref.path.split("#", 1)[0], record=ref.path)


# ------------------------------------------------------------------------------ conversion


def to_uint8(
    arr: np.ndarray, window: tuple[float, float] | None = None, percentiles: tuple[float, float] = (0.5, 99.5)
) -> np.ndarray:
    """Scale any numeric array to uint8: by ``window`` (centre, width) or by percentiles."""
    a = np.asarray(arr)
    if a.dtype == np.uint8 and window is None:
        return a
    a = a.astype(np.float32)
    if window is not None:
        centre, width = window
        lo, hi = centre - width / 2.0, centre + width / 2.0
    else:
        finite = a[np.isfinite(a)]
        if finite.size == 0:
            return np.zeros(a.shape, dtype=np.uint8)
        lo, hi = (float(v) for v in np.percentile(finite, percentiles))
        if hi <= lo:
            lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.uint8)
    out = (np.clip(a, lo, hi) - lo) / (hi - lo) * 255.0
    return np.nan_to_num(out).round().astype(np.uint8)


def array_to_rgb(arr: np.ndarray, window: tuple[float, float] | None = None) -> Any:
    """A 2D (grey) or HxWx3/4 array → 8-bit RGB ``PIL.Image``."""
    from PIL import Image

    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        g = to_uint8(a, window)
        return Image.fromarray(np.stack([g, g, g], axis=-1), "RGB")
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        rgb = a[..., :3]
        if rgb.dtype != np.uint8:
            rgb = to_uint8(rgb, window)
        return Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    raise ValueError(f"cannot make an image from an array of shape {a.shape}")


def pil_to_rgb(img: Any) -> Any:
    """Any PIL mode (16-bit, float, palette, grey, alpha) → 8-bit RGB, with no metadata kept."""
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        out = array_to_rgb(np.asarray(img))
    elif img.mode == "RGB":
        out = img.copy()
    else:
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            img = img.convert("RGBA")
            bg = Image.new("RGBA", img.size, (0, 0, 0, 255))
            img = Image.alpha_composite(bg, img)
        out = img.convert("RGB")
    out.info.clear()
    return out


# ------------------------------------------------------------------------------------ file


def decode_file(path: Path, ref: ImageRef, max_pixels: int) -> Any:
    """Decode an ordinary image file (PNG, JPEG, TIFF ...; ``frame`` selects a TIFF page)."""
    from PIL import Image

    with Image.open(path) as img:
        _check_pixels(img.width * img.height, ref, max_pixels)
        if ref.frame:
            img.seek(ref.frame)
        img.load()
        return pil_to_rgb(img)


def load_file(ref: ImageRef, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Any:
    """Loader ``file``: any image PIL reads, converted to 8-bit RGB (PIL tells the format by
    content); a DICOM file (``DICM`` at byte 128), whatever its name, is decoded as DICOM."""
    from medgr2_datasets.probe import sniff_format

    path = _root_path(ref)
    if sniff_format(path) == "dicom":
        return decode_dicom(path, ref, max_pixels, DEFAULT_CT_WINDOW)
    return decode_file(path, ref, max_pixels)


# ------------------------------------------------------------------------------------ dicom

_DICOM_MODALITY = {
    "CT": Modality.CT,
    "MR": Modality.MRI,
    "CR": Modality.XRAY,
    "DX": Modality.XRAY,
    "DR": Modality.XRAY,
    "MG": Modality.XRAY,
    "XA": Modality.XRAY,
    "RF": Modality.XRAY,
    "IO": Modality.XRAY,
    "PX": Modality.XRAY,
    "US": Modality.ULTRASOUND,
    "IVUS": Modality.ULTRASOUND,
    "OP": Modality.FUNDUS,
    "OPT": Modality.OCT,
    "SM": Modality.MICROSCOPY,
    "GM": Modality.MICROSCOPY,
    "XC": Modality.DERMOSCOPY,
}


def dicom_modality(code: str | None) -> Modality:
    """The :class:`Modality` of a DICOM ``Modality`` code (``CT``, ``MR``, ``CR`` ...)."""
    return _DICOM_MODALITY.get((code or "").strip().upper(), Modality.OTHER)


def _first_float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value[0] if hasattr(value, "__len__") and not isinstance(value, str) else value)
    except (TypeError, ValueError, IndexError):
        return None


def decode_dicom(
    path: Path,
    ref: ImageRef,
    max_pixels: int,
    ct_window: tuple[float, float] | None,
    use_file_window: bool = True,
) -> Any:
    """Decode one frame of a DICOM file to RGB; only pixels leave this function."""
    import pydicom

    ds = pydicom.dcmread(path)
    if "PixelData" not in ds:
        raise ValueError(f"DICOM file {ref.path!r} has no pixel data")
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    _check_pixels(rows * cols * max(frames, 1), ref, max_pixels)
    arr = ds.pixel_array
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    colour = arr.shape[-1] in (3, 4) and arr.ndim >= 3 and photometric not in ("MONOCHROME1", "MONOCHROME2")
    if frames > 1 or (arr.ndim == 4) or (arr.ndim == 3 and not colour):
        index = ref.frame or 0
        if index >= arr.shape[0]:
            raise ValueError(f"frame {index} is out of range: {ref.path!r} has {arr.shape[0]} frames")
        arr = arr[index]
    if photometric.startswith("YBR") and arr.ndim == 3:
        from pydicom.pixels import convert_color_space

        arr = convert_color_space(arr, photometric, "RGB")
    elif photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = apply_color_lut(arr, ds)
    if arr.ndim == 2:
        slope = _first_float(ds.get("RescaleSlope")) or 1.0
        intercept = _first_float(ds.get("RescaleIntercept")) or 0.0
        arr = arr.astype(np.float32) * slope + intercept
        window = None
        if str(ds.get("Modality", "")).upper() == "CT" or ref.modality == Modality.CT:
            centre, width = _first_float(ds.get("WindowCenter")), _first_float(ds.get("WindowWidth"))
            if use_file_window and centre is not None and width:
                window = (centre, width)
            else:
                window = ct_window
        g = to_uint8(arr, window)
        if photometric == "MONOCHROME1":
            g = 255 - g
        return array_to_rgb(g)
    return array_to_rgb(arr)


def load_dicom(
    ref: ImageRef,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    ct_window: tuple[float, float] | None = DEFAULT_CT_WINDOW,
    use_file_window: bool = True,
) -> Any:
    """Loader ``dicom``: one frame (``ref.frame``) of a DICOM file, windowed to 8-bit RGB."""
    return decode_dicom(_root_path(ref), ref, max_pixels, ct_window, use_file_window)


# ------------------------------------------------------------------------------------ nifti


@functools.lru_cache(maxsize=4)
def _nifti_volume(path: str, mtime_ns: int) -> tuple[np.ndarray, tuple[int, ...]]:
    import nibabel as nib

    img = nib.load(path)
    return np.asarray(img.dataobj), tuple(img.shape)


def nifti_volume(path: Path) -> np.ndarray:
    """The voxel array of a NIfTI file (a few recent volumes are cached)."""
    return _nifti_volume(str(path), os.stat(path).st_mtime_ns)[0]


def nifti_slice(volume: np.ndarray, index: int, axis: int = 2) -> np.ndarray:
    """Slice ``index`` along ``axis``, rotated so the image is upright (radiological view)."""
    if index >= volume.shape[axis]:
        raise ValueError(
            f"slice {index} is out of range (the volume has {volume.shape[axis]} along axis {axis})"
        )
    return np.rot90(np.take(volume, index, axis=axis))


def load_nifti(
    ref: ImageRef,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    ct_window: tuple[float, float] | None = DEFAULT_CT_WINDOW,
    axis: int = 2,
) -> Any:
    """Loader ``nifti``: axial slice ``ref.frame`` of a NIfTI volume (CT windowed, MR stretched)."""
    path = _root_path(ref)
    volume = nifti_volume(path)
    plane = nifti_slice(volume, ref.frame or 0, axis)
    _check_pixels(int(plane.size), ref, max_pixels)
    return array_to_rgb(plane, ct_window if ref.modality == Modality.CT else None)


# -------------------------------------------------------------------------------------- npz


@functools.lru_cache(maxsize=8)
def _npz_array(path: str, mtime_ns: int, key: str) -> np.ndarray:
    with np.load(path, allow_pickle=False) as z:
        if key not in z.files:
            raise KeyError(f"{path} has no array {key!r} (it has {', '.join(z.files)})")
        return z[key]


def npz_array(path: Path, key: str) -> np.ndarray:
    """One array of an ``.npz`` file (cached; pickles are refused)."""
    return _npz_array(str(path), os.stat(path).st_mtime_ns, key)


def load_npz(ref: ImageRef, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Any:
    """Loader ``npz``: image ``ref.frame`` of array ``name`` in ``file.npz#name`` (MedMNIST)."""
    _, sep, key = ref.path.partition("#")
    if not sep or not key:
        raise ValueError(f"npz image path {ref.path!r} must look like 'file.npz#array_name'")
    arr = npz_array(_root_path(ref), key)
    index = ref.frame or 0
    if index >= len(arr):
        raise ValueError(f"index {index} is out of range: {ref.path!r} holds {len(arr)} images")
    _check_pixels(int(np.prod(arr.shape[1:3])), ref, max_pixels)
    return array_to_rgb(arr[index])


# -------------------------------------------------------------------------------------- pkg


def package_dirs() -> dict[str, Path]:
    """Data folders of the installed packages the ``pkg`` loader may read (absent ones omitted)."""
    import importlib.util

    found: dict[str, Path] = {}
    for name, module, sub in (
        ("skimage", "skimage.data", ""),
        ("pydicom", "pydicom.data", "test_files"),
        ("pydicom-data", "data_store", "data"),
    ):
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.origin:
            continue
        folder = Path(spec.origin).parent / sub
        if folder.is_dir():
            found[name] = folder
    return found


def resolve_pkg(uri: str) -> Path:
    """``pkg://<package>/<file>`` → the file inside that package's data folder (checked)."""
    prefix = "pkg://"
    if not uri.startswith(prefix):
        raise ValueError(f"package image path {uri!r} must start with {prefix}")
    package, _, rel = uri[len(prefix) :].partition("/")
    dirs = package_dirs()
    if package not in dirs:
        raise FileNotFoundError(
            f"package image {uri!r}: package {package!r} is not installed "
            f"(known: {', '.join(sorted(dirs))}); install the 'data' extra: pip install 'medgr2[data]'"
        )
    return safe_path(dirs[package], rel, record=uri)


def load_pkg(
    ref: ImageRef,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    ct_window: tuple[float, float] | None = DEFAULT_CT_WINDOW,
) -> Any:
    """Loader ``pkg``: an image bundled with an installed package (DICOM, told by its content, or
    an ordinary file)."""
    from medgr2_datasets.probe import loader_for

    path = resolve_pkg(ref.path)
    if loader_for(path) == "dicom":
        return decode_dicom(path, ref, max_pixels, ct_window)
    return decode_file(path, ref, max_pixels)
