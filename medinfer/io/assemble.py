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
* **One acquisition/reconstruction** (:func:`split_acquisitions`): frames are split into stacks by
  SliceThickness, ImageType and ConvolutionKernel, and by AcquisitionNumber where acquisitions overlap along
  the slice normal (consecutive AcquisitionNumbers that cover disjoint ranges, as step-and-shoot axial
  scanners write them, stay one stack). The largest stack is used, or the one ``acquisition=`` selects
  (:func:`parse_acquisition`); the others' frames are skipped with a reason that says how to pick them.
* Order: ImagePositionPatient projected on the slice normal (row × column direction cosines of
  ImageOrientationPatient), ascending — for axial slices that is inferior to superior, as ITK orders them.
  File names never matter. Frames whose orientation differs from the majority are skipped. Without any
  position the order falls back to InstanceNumber (or frame order within a single multi-frame file), and
  ``meta["ordering"]`` says so.
* Two frames at the same position (within :data:`DUPLICATE_TOLERANCE_MM`) are duplicates; the one with
  the lower InstanceNumber is kept. Frames whose PixelSpacing differs from the majority are skipped.
* Slice spacing is the median gap between positions; irregular gaps are reported in ``meta``.

What a user should know before trusting the result (irregular gaps, gantry tilt or shear, an ordering
fallback, missing rescale tags, slices set aside for another patient, acquisition or implausible HU) is
also written, one sentence each, to ``Series.warnings``.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from medinfer.errors import InputError, SeriesError
from medinfer.hu import implausible_hu
from medinfer.io.dicom import PADDING_HU, Frame
from medinfer.io.series import Series

DUPLICATE_TOLERANCE_MM = 1e-3
# Gaps that differ from the median by more than this fraction (or 1 µm) make the spacing irregular.
GAP_TOLERANCE = 0.01
# Slice positions further than this off the normal through the first slice make the stack tilted or sheared
# (half a typical CT pixel: below that the shear is invisible; scanners round positions to ~1 µm).
SHEAR_TOLERANCE_MM = 0.5
# The attributes that tell acquisitions/reconstructions of one series apart, and that acquisition= names.
ACQUISITION_ATTRIBUTES = ("AcquisitionNumber", "SliceThickness", "ImageType", "ConvolutionKernel")
THICKNESS_TOLERANCE_MM = 1e-3

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


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


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
        listing = ", ".join(f"{_shown(v)} ({_plural(n, 'slice')})" for v, n in ranked)
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
        warns.append(f"{_plural(n_other, 'slice')} of this series with another {name} ({others}) than the "
                     f"majority's {_shown(best)} ({_plural(n_best, 'slice')}) {_were(n_other)} set aside, as {why}; "
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
        warns.append(f"{_plural(len(bad), 'slice')} of {len(frames)} {_were(len(bad))} set aside because {its} "
                     f"values are not plausible as HU (e.g. {bad[0][0]}: {bad[0][1]}); they are listed in skipped.")
    return kept


# --- acquisitions / reconstructions ------------------------------------------------------------------------

def _value(f: Frame, attribute: str):
    """The frame's normalised value of one of ACQUISITION_ATTRIBUTES (None when missing)."""
    if attribute == "AcquisitionNumber":
        return f.acquisition_number
    if attribute == "SliceThickness":
        return None if f.thickness is None else round(f.thickness, 3) + 0.0
    if attribute == "ImageType":
        return "\\".join(v.upper() for v in f.image_type) or None
    return f.kernel or None


def _format(attribute: str, value) -> str:
    """A value as acquisition= spells it ("" for a missing one)."""
    if value is None:
        return ""
    return f"{value:g}" if attribute == "SliceThickness" else str(value)


def _sort_value(value) -> tuple:
    return (0, 0) if value is None else (1, value)


@dataclass(frozen=True)
class AcquisitionSelector:
    """What ``acquisition=`` asks for (see :func:`parse_acquisition`): the ``index``-th stack (1-based, largest
    first), or the frames whose attributes equal every ``(attribute, value)`` of ``match``."""

    text: str
    index: int | None = None
    match: tuple[tuple[str, object], ...] = ()
    everything: bool = False  # "all": every acquisition together, not split

    def matches(self, f: Frame) -> bool:
        for attribute, wanted in self.match:
            value = _value(f, attribute)
            if value is None or wanted is None:
                if value is not wanted:
                    return False
            elif attribute == "SliceThickness":
                if abs(value - wanted) > THICKNESS_TOLERANCE_MM:
                    return False
            elif attribute in ("ImageType", "ConvolutionKernel"):
                if str(value).casefold() != str(wanted).casefold():
                    return False
            elif value != wanted:
                return False
        return True


def parse_acquisition(value) -> AcquisitionSelector | None:
    """Validates ``load_series(..., acquisition=value)``; raises InputError for a malformed value.

    * ``None``: the largest stack (the default).
    * an ``int`` ≥ 1, or a string of digits (as ``medinfer predict --acquisition 2`` passes it): the stack with
      that number in the listing, which is ordered largest first (so 1 is the default), as
      ``meta["acquisitions"]``, ``Series.warnings`` and the reasons in ``skipped`` number them.
    * ``"Attribute=value[,Attribute=value...]"`` with attributes among :data:`ACQUISITION_ATTRIBUTES`
      (case-insensitive names): the frames whose attributes all equal these values — AcquisitionNumber as an
      integer, SliceThickness in mm (to 1 µm), ImageType as its values joined by ``\\``
      (``ORIGINAL\\PRIMARY\\AXIAL``) and ConvolutionKernel case-insensitively; an empty value matches a missing
      attribute. The reasons in ``skipped`` spell each stack's key this way, e.g.
      ``"AcquisitionNumber=2,SliceThickness=1.25"``. When the matching frames span several stacks, the stack
      with the most of them is used.
    * ``"all"``: no split — every acquisition/reconstruction together in one stack, as medinfer did before it
      split series (for a scan the split gets wrong; slices at the same position are then duplicates).
    """
    if value is None or isinstance(value, AcquisitionSelector):
        return value
    if isinstance(value, (bool, np.bool_)):
        raise InputError(f"acquisition={value!r}: expected a stack number (1 = the largest), 'all', or a key such "
                         "as 'AcquisitionNumber=2,SliceThickness=1.25'")
    if isinstance(value, (int, np.integer)):
        if value < 1:
            raise InputError(f"acquisition={int(value)}: stacks are numbered from 1 (the largest)")
        return AcquisitionSelector(text=str(int(value)), index=int(value))
    if not isinstance(value, str):
        raise InputError(f"acquisition: expected an int or a string, got {type(value).__name__}")
    text = value.strip()
    if text.isdecimal():
        return parse_acquisition(int(text))
    if text.casefold() == "all":
        return AcquisitionSelector(text="all", everything=True)
    names = {a.casefold(): a for a in ACQUISITION_ATTRIBUTES}
    match: dict[str, object] = {}
    for part in text.split(","):
        name, eq, raw = part.partition("=")
        attribute = names.get(name.strip().casefold())
        if not eq or attribute is None:
            raise InputError(f"acquisition={value!r}: expected a stack number (1 = the largest), 'all', or "
                             f"'Attribute=value,...' with attributes among {', '.join(ACQUISITION_ATTRIBUTES)}; "
                             f"{part.strip()!r} is none of these")
        if attribute in match:
            raise InputError(f"acquisition={value!r}: {attribute} is given twice")
        raw = raw.strip()
        try:
            if not raw:
                parsed = None
            elif attribute == "AcquisitionNumber":
                parsed = int(raw)
            elif attribute == "SliceThickness":
                parsed = float(raw.removesuffix("mm").strip())
                if not math.isfinite(parsed):
                    raise ValueError
            elif attribute == "ImageType":
                parsed = "\\".join(v.strip().upper() for v in raw.split("\\"))
            else:
                parsed = raw
        except ValueError:
            raise InputError(f"acquisition={value!r}: {attribute} {raw!r} is not "
                             f"{'an integer' if attribute == 'AcquisitionNumber' else 'a number'}") from None
        match[attribute] = parsed
    return AcquisitionSelector(text=text, match=tuple(match.items()))


def no_acquisitions(acquisition, what: str) -> None:
    """Raises InputError when ``acquisition=`` is given for an input that has no acquisitions to choose from."""
    selector = parse_acquisition(acquisition)
    if selector is not None:
        raise InputError(f"acquisition={selector.text!r} selects among the acquisitions of a DICOM series; "
                         f"{what} has none")


@dataclass
class Stack:
    """One acquisition/reconstruction of a series: its frames and the distinct values of each attribute."""

    frames: list[Frame]
    values: dict[str, tuple] = field(default_factory=dict)
    index: int = 0  # 1-based, largest first
    key: str = ""  # the acquisition= string that selects it ("" when the series holds one stack)
    label: str = ""  # the attributes that tell it apart, for messages

    def describe(self) -> str:
        what = f"{self.label}, " if self.label else ""
        return f"#{self.index} ({what}{_plural(len(self.frames), 'slice')})"


def _depth_extents(groups: list[list[Frame]]) -> list[tuple[float, float]] | None:
    placed = [f for g in groups for f in g if f.position is not None and f.orientation is not None]
    if not placed:
        return None
    reference = Counter(_rounded(f.orientation) for f in placed).most_common(1)[0][0]
    normal = np.cross(reference[:3], reference[3:])
    extents = []
    for g in groups:
        depths = [float(f.position @ normal) for f in g
                  if f.position is not None and f.orientation is not None and _rounded(f.orientation) == reference]
        if depths:
            extents.append((min(depths), max(depths)))
    return extents


def _overlap(groups: list[list[Frame]]) -> bool:
    """Whether frames of different AcquisitionNumbers cover a common range: along the slice normal, or (no
    positions) in InstanceNumber. Touching ranges (a shared position) overlap."""
    extents = _depth_extents(groups)
    tolerance = DUPLICATE_TOLERANCE_MM
    if extents is None:
        tolerance = 0.0
        extents = [(min(n), max(n)) for g in groups if (n := [f.instance for f in g if f.instance is not None])]
    extents.sort()
    return any(start <= end + tolerance for (_, end), (start, _) in zip(extents, extents[1:], strict=False))


def split_acquisitions(frames: list[Frame]) -> list[Stack]:
    """The frames' acquisitions/reconstructions, largest first (ties: by their attribute values).

    Frames differing in SliceThickness, ImageType or ConvolutionKernel are different reconstructions. Within
    one reconstruction, AcquisitionNumbers are separate stacks only when their ranges overlap along the slice
    normal (or, without positions, in InstanceNumber): consecutive acquisitions covering disjoint ranges are
    the rotations of one step-and-shoot scan and stay together."""
    recon: dict[tuple, list[Frame]] = defaultdict(list)
    for f in frames:
        recon[tuple(_value(f, a) for a in ACQUISITION_ATTRIBUTES[1:])].append(f)
    groups: list[list[Frame]] = []
    for members in recon.values():
        by_number: dict[object, list[Frame]] = defaultdict(list)
        for f in members:
            by_number[f.acquisition_number].append(f)
        if len(by_number) > 1 and _overlap(list(by_number.values())):
            groups.extend(by_number.values())
        else:
            groups.append(members)
    stacks = [Stack(g, {a: tuple(sorted({_value(f, a) for f in g}, key=_sort_value))
                        for a in ACQUISITION_ATTRIBUTES}) for g in groups]
    stacks.sort(key=lambda s: (-len(s.frames), *(tuple(map(_sort_value, s.values[a])) for a in ACQUISITION_ATTRIBUTES)))
    differing = [a for a in ACQUISITION_ATTRIBUTES if len({s.values[a] for s in stacks}) > 1]
    for i, s in enumerate(stacks, 1):
        s.index = i
        s.key = ",".join(f"{a}={_format(a, s.values[a][0])}" for a in differing if len(s.values[a]) == 1)
        s.label = ", ".join(f"{a} " + ", ".join(_format(a, v) or "(missing)" for v in s.values[a])
                            + (" mm" if a == "SliceThickness" and s.values[a] != (None,) else "")
                            for a in differing)
    return stacks


def _pick(stack: Stack) -> str:
    how = f'acquisition={stack.index}'
    if stack.key:
        how += f' or acquisition="{stack.key}"'
    return f"load_series(..., {how}) (medinfer predict --acquisition {stack.index})"


def _one_acquisition(frames: list[Frame], uid: str, selector: AcquisitionSelector | None,
                     skipped: list[tuple[str, str]], warns: list[str]) -> tuple[list[Frame], list[dict] | None]:
    """The frames of the chosen stack, and meta["acquisitions"] (None for a series of one stack chosen by
    default)."""
    stacks = split_acquisitions(frames)
    listing = "; ".join(s.describe() for s in stacks)
    if selector is not None and selector.everything:
        if len(stacks) > 1:
            warns.append(f"acquisition='all': the {len(stacks)} acquisitions/reconstructions of this series "
                         f"({listing}) are used together as one stack, not split.")
        return frames, [_stack_meta(s, True) for s in stacks]
    if selector is None:
        chosen, used = stacks[0], stacks[0].frames
    elif selector.index is not None:
        if selector.index > len(stacks):
            reason = f"not loaded: acquisition={selector.index} asks for stack #{selector.index}, the series has " \
                     f"{len(stacks)}"
            raise SeriesError(f"series {uid!r}: acquisition={selector.index}, but it holds "
                              f"{_plural(len(stacks), 'acquisition/reconstruction')}: {listing}",
                              skipped=[*skipped, *((f.path, reason) for f in frames)])
        chosen, used = stacks[selector.index - 1], stacks[selector.index - 1].frames
    else:
        counts = [sum(selector.matches(f) for f in s.frames) for s in stacks]
        best = max(range(len(stacks)), key=counts.__getitem__)
        if counts[best] == 0:
            reason = f"not loaded: acquisition={selector.text!r} matches no slice of the series"
            keys = "; ".join(f"{s.describe()}: {s.key or 'every slice'}" for s in stacks)
            raise SeriesError(f"series {uid!r}: acquisition={selector.text!r} matches no slice; it holds {keys}",
                              skipped=[*skipped, *((f.path, reason) for f in frames)])
        chosen = stacks[best]
        used = [f for f in chosen.frames if selector.matches(f)]
        for f in chosen.frames:
            if not selector.matches(f):
                shown = ", ".join(f"{a}={_format(a, _value(f, a))}" for a, _ in selector.match)
                skipped.append((f.path, f"not selected by acquisition={selector.text!r} ({shown})"))
        if sum(1 for c in counts if c) > 1:
            warns.append(f"acquisition={selector.text!r} matches slices of several acquisitions/reconstructions "
                         f"({listing}); {chosen.describe()}, with the most matching slices, is used.")
    if len(stacks) == 1:
        meta = None if selector is None else [_stack_meta(chosen, True)]
        return used, meta
    why = "the largest" if selector is None else f"selected by acquisition={selector.text!r}"
    for s in stacks:
        if s is chosen:
            continue
        for f in s.frames:
            skipped.append((f.path, f"another acquisition/reconstruction of this series: {s.describe()} of "
                                    f"{len(stacks)}, while {chosen.describe()} is used ({why}); to use this one: "
                                    f"{_pick(s)}"))
    differing = [a for a in ACQUISITION_ATTRIBUTES if len({s.values[a] for s in stacks}) > 1]
    tie = ""
    if selector is None and len(stacks[1].frames) == len(chosen.frames):
        tie = (f" ({' and '.join(s.describe().split(' (')[0] for s in stacks if len(s.frames) == len(chosen.frames))}"
               f" have as many slices; #1 comes first by {', '.join(differing)})")
    others = sum(len(s.frames) for s in stacks if s is not chosen)
    warns.append(f"This series holds {len(stacks)} acquisitions/reconstructions that differ in "
                 f"{', '.join(differing)}: {listing}. {chosen.describe()} is used ({why}){tie}; the "
                 f"{_plural(others, 'slice')} of the others are listed in skipped. To use another: "
                 f"load_series(..., acquisition=N or \"Attribute=value,...\") or medinfer predict --acquisition N.")
    return used, [_stack_meta(s, s is chosen) for s in stacks]


def _stack_meta(s: Stack, used: bool) -> dict:
    return {"index": s.index, "key": s.key, "slices": len(s.frames), "used": used,
            **{a: list(s.values[a]) for a in ACQUISITION_ATTRIBUTES}}


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
    ``acquisition`` picks one of several acquisitions/reconstructions (see :func:`parse_acquisition`)."""
    selector = parse_acquisition(acquisition)
    warns: list[str] = []
    frames = keep_majority(frames, lambda f: f.pixels.shape, lambda f: "×".join(map(str, f.pixels.shape)),
                       "image size", skipped)
    frames = _one_identity(frames, uid, skipped, warns)
    frames = _plausible(frames, skipped, warns)
    if not frames:
        raise _no_slice_left(uid, skipped)
    frames, acquisitions = _one_acquisition(frames, uid, selector, skipped, warns)
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
        warns.append(f"{_plural(assumed, 'slice')} of {n} {'has' if assumed == 1 else 'have'} no "
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
