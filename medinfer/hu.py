"""Hounsfield-unit conversion: HU = pixel × RescaleSlope + RescaleIntercept (the DDC-ResNet paper's eq. 11).

``to_hu`` runs on the native thread pool when ``medinfer._C`` is built and falls back to ``to_hu_numpy``,
the reference that defines the exact numbers: float64 arithmetic rounded once to float32.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from medinfer import _ext

# Pixel types DICOM stores (and float for already-converted data); the native routine accepts the same.
SUPPORTED_DTYPES = tuple(
    np.dtype(t) for t in ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "float32", "float64")
)


def _params(value: npt.ArrayLike, n_slices: int, name: str) -> np.ndarray:
    arr = np.ascontiguousarray(np.atleast_1d(np.asarray(value, dtype=np.float64)))
    if arr.ndim != 1 or arr.shape[0] not in (1, n_slices):
        raise ValueError(f"{name}: expected a scalar or one value per slice ({n_slices}), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: values must be finite, got {arr[~np.isfinite(arr)][:3].tolist()}")
    return arr


def _check_pixels(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim < 2:
        raise ValueError(f"pixels must be (slices, ...) with ndim >= 2, got shape {pixels.shape}")
    if pixels.dtype.newbyteorder("=") not in SUPPORTED_DTYPES:
        raise ValueError(f"unsupported pixel dtype {pixels.dtype}; expected one of "
                         f"{', '.join(str(d) for d in SUPPORTED_DTYPES)}")
    if not pixels.dtype.isnative:
        pixels = pixels.astype(pixels.dtype.newbyteorder("="))
    return np.ascontiguousarray(pixels)


def to_hu_numpy(pixels: npt.ArrayLike, slope: npt.ArrayLike = 1.0, intercept: npt.ArrayLike = 0.0) -> np.ndarray:
    """Reference conversion of ``(N, ...)`` pixels with a scalar or per-slice slope/intercept."""
    pixels = _check_pixels(np.asarray(pixels))
    n = pixels.shape[0]
    shape = (-1,) + (1,) * (pixels.ndim - 1)
    s = _params(slope, n, "slope").reshape(shape)
    b = _params(intercept, n, "intercept").reshape(shape)
    return (pixels.astype(np.float64) * s + b).astype(np.float32)


def to_hu(
    pixels: npt.ArrayLike,
    slope: npt.ArrayLike = 1.0,
    intercept: npt.ArrayLike = 0.0,
    *,
    out: np.ndarray | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """Convert ``(N, ...)`` stored pixel values to float32 HU, one slope/intercept per slice or for all.

    Uses the native thread pool (``threads`` of them; default: ``MEDINFER_NUM_THREADS`` or all cores)
    when the extension is built, otherwise :func:`to_hu_numpy`; both give identical results.
    """
    pixels = _check_pixels(np.asarray(pixels))
    n = pixels.shape[0]
    s = _params(slope, n, "slope")
    b = _params(intercept, n, "intercept")
    if s.shape != b.shape:
        s, b = np.broadcast_arrays(s, b)
        s, b = np.ascontiguousarray(s), np.ascontiguousarray(b)
    if out is None:
        out = np.empty(pixels.shape, dtype=np.float32)
    elif out.dtype != np.float32 or out.shape != pixels.shape or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous float32 array of shape {pixels.shape}, "
                         f"got {out.dtype} {out.shape}")
    native = _ext.native()
    if native is None:
        out[...] = to_hu_numpy(pixels, s, b)
    else:
        native.hu_convert(pixels, out, s, b, threads=threads or 0)
    return out
