"""Turning the frames of one DICOM series into a :class:`Series`: consistency, anatomical order, spacing.

In this order:

* Frames whose size differs from the series' most common one are skipped.
* **One patient, one study, one frame of reference.** Frames that share a SeriesInstanceUID but differ in
  PatientID, StudyInstanceUID or FrameOfReferenceUID (a missing value counts as a value of its own) are never
  merged: the majority is kept and the others are skipped, naming the attribute and both values; with no
  majority (a tie) the series is refused with a :class:`~medinfer.errors.SeriesError`.
* **Plausible HU.** A slice whose values are not HU (:func:`medinfer.hu.implausible_hu`: more than 5 % of its
  pixels far outside -1100…4000 HU, or integers that wrapped around because PixelRepresentation is wrong) is
  skipped with the probable cause.
* **One acquisition/reconstruction** (:mod:`medinfer.io.acquisitions`): frames are split into stacks by
  SliceThickness, ImageType and ConvolutionKernel, and by AcquisitionNumber where acquisitions overlap along
  the slice normal (consecutive AcquisitionNumbers that cover disjoint ranges, as step-and-shoot axial
  scanners write them, stay one stack). The largest stack is used, or the one ``acquisition=`` selects
  (:func:`~medinfer.io.acquisitions.parse_acquisition`); the others' frames are skipped with a reason that
  says how to pick them.
* Order: ImagePositionPatient projected on the slice normal (row × column direction cosines of
  ImageOrientationPatient), ascending — for axial slices that is inferior to superior, as ITK orders them.
  File names never matter. Frames whose orientation differs from the majority are skipped. Without any
  position the order falls back to InstanceNumber (or frame order within a single multi-frame file), and
  ``meta["ordering"]`` says so.
* Two frames at the same position (within :data:`~medinfer.io.geometry.DUPLICATE_TOLERANCE_MM`) are
  duplicates; the one with the lower InstanceNumber is kept. Frames whose PixelSpacing differs from the
  majority are skipped.
* Slice spacing is the median gap between positions; irregular gaps are reported in ``meta``.

What a user should know before trusting the result (irregular gaps, gantry tilt or shear, an ordering
fallback, missing rescale tags, slices set aside for another patient, acquisition or implausible HU) is
also written, one sentence each, to ``Series.warnings``.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter

import numpy as np

from medinfer.errors import SeriesError
from medinfer.hu import implausible_hu
from medinfer.io.acquisitions import one_acquisition, parse_acquisition
from medinfer.io.dicom import PADDING_HU, Frame
from medinfer.io.geometry import DUPLICATE_TOLERANCE_MM, rounded
from medinfer.io.series import Series
from medinfer.io.text import plural

# Gaps that differ from the median by more than this fraction (or 1 µm) make the spacing irregular.
GAP_TOLERANCE = 0.01
# Slice positions further than this off the normal through the first slice make the stack tilted or sheared
# (half a typical CT pixel: below that the shear is invisible; scanners round positions to ~1 µm).
SHEAR_TOLERANCE_MM = 0.5


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


def _were(n: int) -> str:
    return "was" if n == 1 else "were"


def _some(paths, limit: int = 3) -> str:
    paths = list(paths)
    more = f", … ({len(paths) - limit} more)" if len(paths) > limit else ""
    return ", ".join(paths[:limit]) + more


def _no_slice_left(uid: str, skipped: list[tuple[str, str]]) -> SeriesError:
    examples = "; ".join(f"{p}: {r}" for p, r in skipped[-3:])
    return SeriesError(f"series {uid!r} has no usable slice: {len(skipped)} input(s) skipped, e.g. {examples}",
                       skipped=skipped)


# --- one patient, one study, one frame of reference --------------------------------------------------------

_IDENTITY = (
    ("PatientID", lambda f: f.patient_id, "another patient's slices are never merged into one volume"),
    ("StudyInstanceUID", lambda f: f.info.get("study_uid", ""),
     "slices of another study are never merged into one volume"),
    ("FrameOfReferenceUID", lambda f: f.info.get("frame_of_reference_uid", ""),
     "positions in another frame of reference cannot be compared with the series' own"),
)


def _shown(value: str) -> str:
    return repr(value) if value else "(missing)"


def _one_identity(frames: list[Frame], uid: str, skipped: list[tuple[str, str]], warns: list[str]) -> list[Frame]:
    """Keeps the frames of the majority PatientID, then StudyInstanceUID, then FrameOfReferenceUID; raises
    SeriesError when an attribute has no majority."""
    for name, get, why in _IDENTITY:
        ranked = Counter(get(f) for f in frames).most_common()
        if len(ranked) < 2:
            continue
        (best, n_best), (_, n_second) = ranked[0], ranked[1]
        listing = ", ".join(f"{_shown(v)} ({plural(n, 'slice')})" for v, n in ranked)
        if n_best == n_second:
            files = "; ".join(f"{_shown(v)}: {_some(f.path for f in frames if get(f) == v)}" for v, _ in ranked[:4])
            reason = f"the series mixes {name} values with no majority ({listing}): not loaded, as {why}"
            raise SeriesError(f"series {uid!r} mixes {len(ranked)} {name} values with no majority — {listing}; "
                              f"{why}, and none can be preferred. Load the files of one {name} (files: {files})",
                              skipped=[*skipped, *((f.path, reason) for f in frames)])
        for f in frames:
            if get(f) != best:
                skipped.append((f.path, f"{name} {_shown(get(f))} differs from the series' majority {_shown(best)} "
                                        f"({n_best} of {len(frames)} slices): {why}"))
        others = ", ".join(_shown(v) for v, _ in ranked[1:])
        n_other = len(frames) - n_best
        warns.append(f"{plural(n_other, 'slice')} of this series with another {name} ({others}) than the "
                     f"majority's {_shown(best)} ({plural(n_best, 'slice')}) {_were(n_other)} set aside, as {why}; "
                     "they are listed in skipped.")
        frames = [f for f in frames if get(f) == best]
    return frames


# --- plausible HU ------------------------------------------------------------------------------------------

def _plausible(frames: list[Frame], skipped: list[tuple[str, str]], warns: list[str]) -> list[Frame]:
    kept, bad = [], []
    for f in frames:
        reason = implausible_hu(f.pixels, f.slope, f.intercept)
        if reason is None:
            kept.append(f)
        else:
            bad.append((f.path, reason))
    if bad:
        skipped.extend(bad)
        its = "its" if len(bad) == 1 else "their"
        warns.append(f"{plural(len(bad), 'slice')} of {len(frames)} {_were(len(bad))} set aside because {its} "
                     f"values are not plausible as HU (e.g. {bad[0][0]}: {bad[0][1]}); they are listed in skipped.")
    return kept


# --- order -------------------------------------------------------------------------------------------------

def _tilt(kept: list[Frame], depths: np.ndarray) -> dict | None:
    """How far the slice positions move off the normal through the first slice (gantry tilt, shear)."""
    if len(kept) < 2:
        return None
    orientation = kept[0].orientation
    normal = np.cross(orientation[:3], orientation[3:])
    normal = normal / np.linalg.norm(normal)
    positions = np.array([f.position for f in kept])
    with np.errstate(all="ignore"):  # absurd positions (±1e308) overflow: no tilt can be told then
        rel = positions - positions[0]
        along = rel @ normal
        lateral = rel - np.outer(along, normal)
        offsets = np.linalg.norm(lateral, axis=1)
        denominator = float(along @ along)
        slope = (along @ lateral) / denominator if denominator > 0 else np.zeros(3)
    if not (np.all(np.isfinite(offsets)) and np.all(np.isfinite(slope))) or offsets.max() <= SHEAR_TOLERANCE_MM:
        return None
    return {"angle_deg": round(math.degrees(math.atan(float(np.linalg.norm(slope)))), 3),
            "max_offset_mm": round(float(offsets.max()), 3), "span_mm": round(float(depths[-1] - depths[0]), 3)}


def _order(frames: list[Frame], skipped: list[tuple[str, str]]) -> tuple[list[Frame], dict]:
    """Sorts frames anatomically and drops duplicates; returns them with the ordering's meta entries."""
    placed = [f for f in frames if f.position is not None and f.orientation is not None]
    if placed:
        for f in frames:
            if f.position is None or f.orientation is None:
                missing = "ImagePositionPatient" if f.position is None else "ImageOrientationPatient"
                skipped.append((f.path, f"no valid {missing}, while the series' other slices have one: "
                                        "it cannot be placed"))
        placed = keep_majority(placed, lambda f: rounded(f.orientation), lambda f: list(rounded(f.orientation)),
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
        tilt = _tilt(kept, depths)
        if tilt is not None:
            meta["tilt"] = tilt
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


def assemble(frames: list[Frame], uid: str, skipped: list[tuple[str, str]], *, acquisition=None) -> Series:
    """The series made of ``frames`` (all of one SeriesInstanceUID). ``skipped`` — what was already set aside
    for this series — is extended with the frames left out here and becomes ``Series.skipped``.
    ``acquisition`` picks one of several acquisitions/reconstructions
    (see :func:`~medinfer.io.acquisitions.parse_acquisition`)."""
    selector = parse_acquisition(acquisition)
    warns: list[str] = []
    frames = keep_majority(frames, lambda f: f.pixels.shape, lambda f: "×".join(map(str, f.pixels.shape)),
                       "image size", skipped)
    frames = _one_identity(frames, uid, skipped, warns)
    frames = _plausible(frames, skipped, warns)
    if not frames:
        raise _no_slice_left(uid, skipped)
    frames, acquisitions = one_acquisition(frames, uid, selector, skipped, warns)
    frames, meta = _order(frames, skipped)
    frames = keep_majority(frames, lambda f: rounded(f.pixel_spacing),
                           lambda f: list(rounded(f.pixel_spacing)) if f.pixel_spacing else "(missing)",
                           "PixelSpacing", skipped)
    spaced = frames[0].pixel_spacing is not None
    slice_spacing, slice_source = _slice_spacing(frames, meta)
    row, col = frames[0].pixel_spacing or (math.nan, math.nan)
    slopes = np.array([f.slope for f in frames])
    intercepts = np.array([f.intercept for f in frames])
    positions = np.array([f.position if f.position is not None else np.full(3, np.nan) for f in frames])
    n = len(frames)
    if meta["ordering"].startswith("InstanceNumber"):
        warns.append(f"No slice has ImagePositionPatient and ImageOrientationPatient: the {n} slices are ordered "
                     "by InstanceNumber, which scanners usually, but not always, assign in anatomical order; the "
                     f"slice spacing comes from {slice_source}.")
    elif meta["ordering"].startswith("frame order"):
        warns.append(f"The {n} frames have neither positions nor InStackPositionNumber: they are taken in the "
                     "order of the file, which may not be anatomical order.")
    if meta.get("irregular_gaps"):
        gap = meta["slice_gap_mm"]
        warns.append(f"The gaps between slice positions are irregular ({gap['min']:.4g} to {gap['max']:.4g} mm, "
                     f"median {gap['median']:.4g} mm along the slice normal): slices may be missing; the slice "
                     f"spacing is the median gap.")
    if "tilt" in meta:
        tilt = meta["tilt"]
        warns.append(f"The slice positions move sideways as well as along the slice normal, up to "
                     f"{tilt['max_offset_mm']:.3g} mm over {tilt['span_mm']:.4g} mm (gantry tilt or shear of about "
                     f"{tilt['angle_deg']:.2g}°): the slices are used as they are, not resampled, so the volume is "
                     "sheared.")
    if n > 1 and slice_source == "unknown":
        warns.append("No slice positions, SpacingBetweenSlices or SliceThickness: the slice spacing is unknown "
                     "(NaN).")
    assumed = sum(f.rescale_assumed for f in frames)
    if assumed:
        warnings.warn(f"series {uid!r}: {assumed} slice(s) have no RescaleSlope/RescaleIntercept; their stored "
                      "values are taken as HU (slope 1, intercept 0) — see meta['rescale']", stacklevel=3)
        warns.append(f"{plural(assumed, 'slice')} of {n} {'has' if assumed == 1 else 'have'} no "
                     "RescaleSlope/RescaleIntercept: their stored "
                     "values are taken as HU (slope 1, intercept 0), which is wrong if the scanner stored "
                     "HU + 1024.")
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
    if acquisitions is not None:
        meta["acquisitions"] = acquisitions
    return Series(pixels=_stack(frames), slopes=slopes, intercepts=intercepts, spacing=(slice_spacing, row, col),
                  positions=positions, files=[f.path for f in frames], uid=uid, meta=meta, skipped=skipped,
                  warnings=warns)
