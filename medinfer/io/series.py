"""``Series``: one CT series as medinfer uses it, slices in anatomical order.

A series keeps the *stored* pixel values with each slice's RescaleSlope/RescaleIntercept rather than HU:
the native batcher converts them itself (int16 in, half the memory traffic of float32), and ``hu`` is
computed on first access with :func:`medinfer.hu.to_hu` (HU = pixel × slope + intercept, the DDC-ResNet
paper's eq. 11).
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from medinfer.errors import InputError, SeriesError
from medinfer.hu import FAR_HU, SUPPORTED_DTYPES, implausible_hu, to_hu

UNITS = ("HU", "display")


@dataclass(eq=False, repr=False)
class Series:
    """A CT series. ``len(series)`` is its slice count.

    ``pixels`` (N, H, W) stored values; ``slopes``/``intercepts`` (N,) map them to HU. ``spacing`` is
    (slice, row, col) in mm: slice spacing from the positions (median gap), else the header's
    SpacingBetweenSlices or SliceThickness; NaN where nothing says it (arrays, image folders).
    ``positions`` (N, 3) ImagePositionPatient, NaN where unknown. ``files`` the file of each slice
    (``"path[frame k]"`` for frames of a multi-frame file, ``""`` for arrays). ``uid`` the
    SeriesInstanceUID, or ``array-<hash>`` / the folder path for arrays and image folders. ``meta``
    (JSON-serialisable) says where it came from and every choice the loader made: ordering, rescale,
    padding, spacing source. ``skipped`` lists each input that was not used, ``(path, reason)``.
    ``warnings`` are what the loader noticed and a user should know before trusting a result, each a
    self-contained sentence saying what and why: irregular gaps, gantry tilt or shear, an ordering fallback
    (InstanceNumber or frame order instead of positions), missing rescale tags, slices of other patients,
    studies, acquisitions or with implausible HU set aside (those slices are in ``skipped``).

    ``units`` is ``"HU"``, or ``"display"`` for 8-bit image slices (already windowed 0..255 grey values,
    such as MIA-COV19D's JPGs): ``hu`` then holds those values, and the batcher spreads them over the
    model's window (:meth:`medinfer.preprocess.Preprocess.display_rescale`).
    """

    pixels: np.ndarray
    slopes: np.ndarray
    intercepts: np.ndarray
    spacing: tuple[float, float, float]
    positions: np.ndarray
    files: list[str]  # one per slice; printable (a non-UTF-8 byte of a name shows as \xNN)
    uid: str
    meta: dict = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    units: str = "HU"
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        px = np.asarray(self.pixels)
        if px.ndim != 3 or 0 in px.shape:
            raise SeriesError(f"series {self.uid!r}: pixels must be a non-empty (N, H, W) array, got shape {px.shape}")
        n = px.shape[0]
        self.slopes = np.ascontiguousarray(np.broadcast_to(np.asarray(self.slopes, np.float64), (n,)))
        self.intercepts = np.ascontiguousarray(np.broadcast_to(np.asarray(self.intercepts, np.float64), (n,)))
        self.positions = np.asarray(self.positions, np.float64).reshape(n, 3)
        if len(self.files) != n:
            raise SeriesError(f"series {self.uid!r}: {len(self.files)} file names for {n} slices")
        if self.units not in UNITS:
            raise InputError(f"series {self.uid!r}: units must be one of {UNITS}, got {self.units!r}")
        if not px.dtype.isnative:  # the native batcher reads host byte order only
            px = px.astype(px.dtype.newbyteorder("="))
        if px.dtype not in SUPPORTED_DTYPES:
            if px.dtype.kind != "f":
                raise InputError(f"series {self.uid!r}: pixel dtype {px.dtype} is not one of "
                                 f"{', '.join(map(str, SUPPORTED_DTYPES))}")
            px = px.astype(np.float32)  # float16 / longdouble: float32 holds CT values
        if len(self.spacing) != 3:
            raise InputError(f"series {self.uid!r}: spacing must be (slice, row, col), got {self.spacing!r}")
        # A read-only view: `hu` is cached from it and the batcher reads it from other threads. (The
        # constructor does not copy; loaders and from_array hand over arrays nobody else holds.)
        px = np.ascontiguousarray(px).view()
        px.flags.writeable = False
        self.pixels = px
        self.spacing = tuple(float(s) for s in self.spacing)
        self.warnings = [str(w) for w in self.warnings]

    def __len__(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.pixels.shape)

    @functools.cached_property
    def hu(self) -> np.ndarray:
        """float32 (N, H, W): stored pixels × slope + intercept, per slice (read-only)."""
        out = to_hu(self.pixels, self.slopes, self.intercepts)
        out.flags.writeable = False
        return out

    def __repr__(self) -> str:
        n, h, w = self.shape
        spacing = ", ".join("?" if math.isnan(s) else f"{s:g}" for s in self.spacing)
        return (f"Series(uid={self.uid!r}, {n} slices of {h}×{w}, spacing=({spacing}) mm, "
                f"units={self.units}, ordering={self.meta.get('ordering')!r}, skipped={len(self.skipped)})")

    @classmethod
    def from_array(cls, hu: np.ndarray, *, spacing: tuple[float, float, float] | None = None,
                   uid: str | None = None, check_hu: bool = True) -> Series:
        """A series from an ``(N, H, W)`` (or single ``(H, W)``) array of HU values, copied to float32.

        ``uid`` defaults to ``array-`` + the first 16 hex digits of a BLAKE2b hash of shape and values,
        so the same array always gets the same id. Non-finite values, values too large for float32 and
        (unless ``check_hu=False``, for arrays that are deliberately not HU) slices that do not look like
        HU (:func:`medinfer.hu.implausible_hu`: more than 5 % of a slice's pixels far outside
        -1100…4000 HU, or integers that wrapped around) are refused with an
        :class:`~medinfer.errors.InputError`: they would turn every probability into NaN or nonsense.
        """
        arr = np.asarray(hu)
        if arr.dtype.kind not in "iuf":
            raise InputError(f"HU array: expected real numbers, got dtype {arr.dtype}")
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3 or 0 in arr.shape:
            raise InputError(f"HU array: expected a non-empty (N, H, W) or (H, W) array, got shape {arr.shape}")
        with np.errstate(over="ignore"):
            out = np.array(arr, dtype=np.float32, order="C")  # a copy: the caller may reuse theirs
        bad = int(out.size - np.count_nonzero(np.isfinite(out)))
        if bad:  # NaN or inf in the input, or finite values too large for float32
            big = arr[~np.isfinite(out)]
            nonfinite = int(big.size - np.count_nonzero(np.isfinite(big)))
            if nonfinite:
                raise InputError(f"HU array: {nonfinite} non-finite value(s) (NaN or inf); every pixel must be a "
                                 "number")
            raise InputError(f"HU array: {bad} value(s) too large for float32 (e.g. {float(big.flat[0]):.4g}; "
                             f"float32 holds up to ±{float(np.finfo(np.float32).max):.3g}): not HU")
        if check_hu:
            _check_array_hu(arr)
        if uid is None:
            digest = hashlib.blake2b(repr(out.shape).encode(), digest_size=8)
            digest.update(memoryview(out).cast("B"))
            uid = f"array-{digest.hexdigest()}"
        spacing = (math.nan,) * 3 if spacing is None else spacing
        n = out.shape[0]
        return cls(pixels=out, slopes=np.ones(n), intercepts=np.zeros(n), spacing=spacing,
                   positions=np.full((n, 3), np.nan), files=[""] * n, uid=uid,
                   meta={"source": "array", "ordering": "array order", "units": "HU"})


def _check_array_hu(arr: np.ndarray) -> None:
    """Raises InputError naming the slices of an (N, H, W) array that do not hold plausible HU."""
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    # implausible_hu's fast path, for every slice at once: only slices whose extremes are not finite or lie
    # outside FAR_HU need a closer look.
    lo, hi = FAR_HU
    with np.errstate(all="ignore"):
        low = arr.min(axis=(1, 2)).astype(np.float64)
        high = arr.max(axis=(1, 2)).astype(np.float64)
        suspect = np.flatnonzero(~(np.isfinite(low) & np.isfinite(high) & (low >= lo) & (high <= hi)))
    bad = [(int(i), reason) for i in suspect
           if (reason := implausible_hu(arr[i], source="array")) is not None]
    if bad:
        n = arr.shape[0]
        others = ", ".join(str(i) for i, _ in bad[1:11]) + (", …" if len(bad) > 11 else "")
        also = f" (so do slice(s) {others})" if others else ""
        raise InputError(f"HU array ({arr.dtype}): {len(bad)} of {n} slice(s) do not hold plausible Hounsfield "
                         f"units — slice {bad[0][0]}: {bad[0][1]}{also}. Pass HU (stored value × RescaleSlope + "
                         "RescaleIntercept), or Series.from_array(..., check_hu=False) for values that are "
                         "deliberately not HU")
