"""Turning the frames of one DICOM series into a :class:`Series`: consistency, anatomical order, spacing.

* Frames whose size, orientation or pixel spacing differ from the series' most common one are skipped.
* Order: ImagePositionPatient projected on the slice normal (row × column direction cosines of
  ImageOrientationPatient), ascending — for axial slices that is inferior to superior, as ITK orders them.
  File names never matter. Without any position the order falls back to InstanceNumber (or frame order
  within a single multi-frame file), and ``meta["ordering"]`` says so.
* Two frames at the same position (within :data:`DUPLICATE_TOLERANCE_MM`) are duplicates; the one with
  the lower InstanceNumber is kept.
* Slice spacing is the median gap between positions; irregular gaps are reported in ``meta``.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter

import numpy as np

from medinfer.errors import SeriesError
from medinfer.io.dicom import PADDING_HU, Frame
from medinfer.io.series import Series

DUPLICATE_TOLERANCE_MM = 1e-3
# Gaps that differ from the median by more than this fraction (or 1 µm) make the spacing irregular.
GAP_TOLERANCE = 0.01


def keep_majority(frames: list, key, describe, what: str, skipped: list[tuple[str, str]]) -> list:
    """Keeps the items (with a ``path``) sharing the most common key (the first seen on a tie); skips the others."""
    counts = Counter(key(f) for f in frames)
    best = max(counts, key=counts.__getitem__)
    reference = describe(next(f for f in frames if key(f) == best))
    for f in frames:
        if key(f) != best:
            skipped.append((f.path, f"{what} {describe(f)} differs from the series' {reference}"))
    return [f for f in frames if key(f) == best]


def keep_first(items: list, key, reason, skipped: list[tuple[str, str]]) -> list:
    """Of items sorted by ``key``, keeps the first of each key; the others are skipped with
    ``reason(item, first)``."""
    kept: list = []
    for item in items:
        if kept and key(item) == key(kept[-1]):
            skipped.append((item.path, reason(item, kept[-1])))
        else:
            kept.append(item)
    return kept


def _rounded(values, digits: int = 4):
    return None if values is None else tuple(round(float(v), digits) + 0.0 for v in values)


def _order(frames: list[Frame], skipped: list[tuple[str, str]]) -> tuple[list[Frame], dict]:
    """Sorts frames anatomically and drops duplicates; returns them with the ordering's meta entries."""
    placed = [f for f in frames if f.position is not None and f.orientation is not None]
    if placed:
        for f in frames:
            if f.position is None or f.orientation is None:
                missing = "ImagePositionPatient" if f.position is None else "ImageOrientationPatient"
                skipped.append((f.path, f"no valid {missing}, while the series' other slices have one: "
                                        "it cannot be placed"))
        placed = keep_majority(placed, lambda f: _rounded(f.orientation), lambda f: list(_rounded(f.orientation)),
                           "ImageOrientationPatient", skipped)
        normal = np.cross(placed[0].orientation[:3], placed[0].orientation[3:])
        depth = {id(f): float(f.position @ normal) for f in placed}
        placed.sort(key=lambda f: (depth[id(f)], f.instance if f.instance is not None else math.inf, f.path))
        kept: list[Frame] = []
        for f in placed:
            if kept and abs(depth[id(f)] - depth[id(kept[-1])]) < DUPLICATE_TOLERANCE_MM:
                first = kept[-1]
                if f.instance is not None and (first.instance is None or f.instance < first.instance):
                    kept[-1], f = f, first
                skipped.append((f.path, f"duplicate position ({depth[id(f)]:.3f} mm along the slice normal), "
                                        f"same as {kept[-1].path}"))
                continue
            kept.append(f)
        meta = {"ordering": "ImagePositionPatient", "orientation": [float(v) for v in kept[0].orientation]}
        depths = np.array([depth[id(f)] for f in kept])
        gaps = np.diff(depths)
        if gaps.size:
            median = float(np.median(gaps))
            meta["slice_gap_mm"] = {"min": float(gaps.min()), "median": median, "max": float(gaps.max())}
            meta["irregular_gaps"] = bool(np.abs(gaps - median).max() > GAP_TOLERANCE * median + 1e-3)
        return kept, meta
    return _order_without_positions(frames, skipped)


def _order_without_positions(frames: list[Frame], skipped: list[tuple[str, str]]) -> tuple[list[Frame], dict]:
    files = {f.file for f in frames}
    numbered = [f for f in frames if f.instance is not None]
    if len(files) == 1 and len(numbered) < len(frames):
        frames = sorted(frames, key=lambda f: f.frame_index)
        return frames, {"ordering": "frame order (no ImagePositionPatient, no per-frame InStackPositionNumber)"}
    if not numbered:
        if len(frames) == 1:
            return frames, {"ordering": "single slice"}
        reason = "cannot be ordered: no slice of its series has ImagePositionPatient or InstanceNumber"
        raise SeriesError(f"cannot order the {len(frames)} slices of series {frames[0].series_uid!r}: none has "
                          "ImagePositionPatient/ImageOrientationPatient or InstanceNumber (files "
                          f"{', '.join(sorted(files)[:3])}{', …' if len(files) > 3 else ''})",
                          skipped=[*skipped, *((f.path, reason) for f in frames)])
    for f in frames:
        if f.instance is None:
            skipped.append((f.path, "no InstanceNumber, while the series is ordered by it (no slice has a "
                                    "position): it cannot be placed"))
    numbered.sort(key=lambda f: (f.instance, f.frame_index, f.path))
    kept = keep_first(numbered, lambda f: f.instance,
                      lambda f, first: f"duplicate InstanceNumber {f.instance}, same as {first.path}", skipped)
    return kept, {"ordering": "InstanceNumber (no slice has ImagePositionPatient and ImageOrientationPatient)"}


def _slice_spacing(frames: list[Frame], meta: dict) -> tuple[float, str]:
    if "slice_gap_mm" in meta:
        return meta["slice_gap_mm"]["median"], "ImagePositionPatient"
    between = [f.spacing_between for f in frames if f.spacing_between is not None]
    if between:
        return float(np.median(between)), "SpacingBetweenSlices"
    thickness = [f.thickness for f in frames if f.thickness is not None]
    if thickness:
        return float(np.median(thickness)), "SliceThickness"
    return math.nan, "unknown"


def _stack(frames: list[Frame]) -> np.ndarray:
    dtype = np.result_type(*{f.pixels.dtype for f in frames})
    if dtype.kind == "f":
        dtype = np.dtype(np.float32)  # float only where padding could not be set exactly; float32 holds 16-bit values
    out = np.empty((len(frames), *frames[0].pixels.shape), dtype)
    for i, f in enumerate(frames):
        out[i] = f.pixels
    return out


def assemble(frames: list[Frame], uid: str, skipped: list[tuple[str, str]]) -> Series:
    """The series made of ``frames`` (all of one SeriesInstanceUID). ``skipped`` — what was already set aside
    for this series — is extended with the frames left out here and becomes ``Series.skipped``."""
    frames = keep_majority(frames, lambda f: f.pixels.shape, lambda f: "×".join(map(str, f.pixels.shape)),
                       "image size", skipped)
    frames, meta = _order(frames, skipped)
    frames = keep_majority(frames, lambda f: _rounded(f.pixel_spacing),
                           lambda f: list(_rounded(f.pixel_spacing)) if f.pixel_spacing else "(missing)",
                           "PixelSpacing", skipped)
    spaced = frames[0].pixel_spacing is not None
    slice_spacing, slice_source = _slice_spacing(frames, meta)
    row, col = frames[0].pixel_spacing or (math.nan, math.nan)
    slopes = np.array([f.slope for f in frames])
    intercepts = np.array([f.intercept for f in frames])
    positions = np.array([f.position if f.position is not None else np.full(3, np.nan) for f in frames])
    assumed = sum(f.rescale_assumed for f in frames)
    if assumed:
        warnings.warn(f"series {uid!r}: {assumed} slice(s) have no RescaleSlope/RescaleIntercept; their stored "
                      "values are taken as HU (slope 1, intercept 0) — see meta['rescale']", stacklevel=3)
    padded = sum(f.padded for f in frames)
    meta.update(frames[0].info)
    meta.update({
        "source": "dicom",
        "units": "HU",
        "spacing_source": {"slice": slice_source, "in_plane": "PixelSpacing" if spaced else "unknown"},
        "rescale": {
            "slope": float(slopes[0]) if np.all(slopes == slopes[0]) else "per slice",
            "intercept": float(intercepts[0]) if np.all(intercepts == intercepts[0]) else "per slice",
            "type": sorted({f.rescale_type for f in frames}),
            "assumed_identity_slices": int(assumed),
        },
        "padding": {"pixels_replaced": int(padded), "hu": PADDING_HU} if padded else None,
        "multiframe": any(f.path != f.file for f in frames),
    })
    return Series(pixels=_stack(frames), slopes=slopes, intercepts=intercepts, spacing=(slice_spacing, row, col),
                  positions=positions, files=[f.path for f in frames], uid=uid, meta=meta, skipped=skipped)
