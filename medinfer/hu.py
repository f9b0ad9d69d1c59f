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


# --- Plausibility: do these numbers look like CT Hounsfield units at all? ---------------------------------
#
# Body CT values lie in PLAUSIBLE_HU: air is -1000 (noise rarely reaches -1100), dense bone and iodine stay
# below +3071 on 12-bit scanners and below +4000 otherwise. A pixel counts as implausible only when it is
# *far* outside that range, in FAR_HU's complement:
# * below -5000 HU: under every padding convention for pixels outside the reconstructed field of view
#   (-1024, -2000, -2048, -3024 HU), including the ringing lossy JPEG 2000 adds around them (pydicom's
#   693_J2KI.dcm, a real CQ500 slice, has padding smeared from -3024 down to -3995 HU);
# * above +5000 HU: 1000 HU beyond the range, so bone, contrast and 12-bit metal are never counted.
# Pixels equal to the slice's minimum are not counted when that minimum lies below -5000 HU (unless it is
# the whole slice): untagged padding such as -32768 stored is one constant value, never noise. Padding
# pixels the DICOM reader already replaced by air are plausible.
# A slice is implausible when more than IMPLAUSIBLE_SHARE of its counted pixels are far out: metal in
# extended-scale CT (up to ~+30000 HU) covers well under 5 % of a slice even for two hip prostheses in a
# small field of view, while a decoding or rescale error (signed data read as unsigned, a slope ten times too
# large) affects the air, fat and lung around and in the body, tens of percent. The one signature that
# proves a header wrong -- integers that wrap around: unsigned values >= 2^(bits-1) that read as far-out HU
# but as signed two's complement would be ordinary HU, or the reverse -- makes a slice implausible from
# SIGNEDNESS_SHARE (0.1 %) of its pixels on (a handful of pixels at +64000 HU would otherwise be used).
PLAUSIBLE_HU = (-1100.0, 4000.0)
FAR_HU = (-5000.0, 5000.0)
IMPLAUSIBLE_SHARE = 0.05
SIGNEDNESS_SHARE = 0.001


def _g(value: float) -> str:
    return f"{value:.6g}" if abs(value) < 1e7 else f"{value:.3g}"


def implausible_hu(pixels: npt.ArrayLike, slope: float = 1.0, intercept: float = 0.0, *,
                   source: str = "dicom") -> str | None:
    """Why one slice of stored ``pixels`` (any shape) does not hold plausible HU after ``pixels × slope +
    intercept``, or None when it does. The reason (a sentence fragment) gives the share of pixels far outside
    :data:`PLAUSIBLE_HU`, an example value, and, where the integers look wrapped around, the probable cause:
    a PixelRepresentation (signed/unsigned) that does not match the data. ``source`` (``"dicom"``,
    ``"array"`` or ``"image"``) words the probable cause for where the values came from."""
    p = np.asarray(pixels)
    if p.size == 0:
        return None
    lo, hi = FAR_HU
    with np.errstate(all="ignore"):
        extremes = np.array([p.min(), p.max()], np.float64) * slope + intercept
    if np.all(np.isfinite(extremes)) and lo <= extremes.min() and extremes.max() <= hi:
        return None  # the common case, decided from two numbers
    with np.errstate(all="ignore"):
        hu = p.astype(np.float64) * slope + intercept
    finite = np.isfinite(hu)
    counted = np.ones(hu.shape, bool)
    if finite.any():
        low = float(hu[finite].min())
        if low < lo:
            counted &= hu != low  # untagged padding: one constant value below the range
    n = int(counted.sum())
    if n == 0:  # one constant below -5000 HU and nothing else: no padding around an image, a wrong rescale
        counted[...] = True
        n = counted.size
    far = counted & ~((hu >= lo) & (hu <= hi))
    n_far = int(far.sum())
    if n_far == 0:
        return None
    share = n_far / n
    wrapped = _wrapped(p, far, slope, intercept, source)
    if wrapped is None and share <= IMPLAUSIBLE_SHARE:
        return None
    values = hu[far]
    example = float(values[np.argmax(np.abs(np.where(np.isfinite(values), values, np.inf)))]) \
        if np.isfinite(values).any() else float(values[0])
    where = (f"{share:.1%} of the pixels lie far outside {PLAUSIBLE_HU[0]:g}…{PLAUSIBLE_HU[1]:g} HU "
             f"(below {lo:g} or above {hi:g} HU; e.g. {_g(example)} HU)")
    if wrapped is not None:
        return f"implausible HU: {where}; {wrapped}"
    cause = {"dicom": "a wrong RescaleSlope/RescaleIntercept or corrupt pixel data",
             "array": "not Hounsfield units (raw stored values, or values scaled for display?)",
             "image": "the image does not hold what its bit depth says"}.get(source, "not Hounsfield units")
    return f"implausible HU: {where}: {cause}"


def _wrapped(p: np.ndarray, far: np.ndarray, slope: float, intercept: float, source: str) -> str | None:
    """The probable cause when the far-out pixels are integers that read as ordinary HU with the other sign
    convention (and there are at least SIGNEDNESS_SHARE of them), else None."""
    if p.dtype.kind not in "iu" or p.dtype.itemsize < 2:
        return None  # 8-bit values cannot wrap out of the range
    bits = p.dtype.itemsize * 8
    lo, hi = FAR_HU
    stored = p[far].astype(np.float64)
    if p.dtype.kind == "u":
        candidates = stored >= 2.0 ** (bits - 1)
        other = stored - 2.0**bits
    else:
        candidates = stored < 0
        other = stored + 2.0**bits
    with np.errstate(all="ignore"):
        other_hu = other * slope + intercept
    hits = candidates & (other_hu >= lo) & (other_hu <= hi)
    if hits.sum() < max(1, SIGNEDNESS_SHARE * p.size) or hits.sum() < 0.5 * stored.size:
        return None
    k = int(np.argmax(hits))
    value, alt, alt_hu = stored[k], other[k], other_hu[k]
    says = "PixelRepresentation says" if source == "dicom" else f"the {p.dtype} {source} is"
    if p.dtype.kind == "u":
        return (f"probable cause: {says} unsigned but the values look like signed two's "
                f"complement: {value:.0f} ≈ {alt:.0f} as int{bits} ({_g(alt_hu)} HU)")
    return (f"probable cause: {says} signed but the values look unsigned: "
            f"{value:.0f} ≈ {alt:.0f} as uint{bits} ({_g(alt_hu)} HU)")
