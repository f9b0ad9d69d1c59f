"""Acquisitions/reconstructions of one series: splitting its frames into stacks, and picking the one that
``acquisition=`` asks for (:func:`parse_acquisition`), or the largest.

Frames are split by SliceThickness, ImageType and ConvolutionKernel, and by AcquisitionNumber where
acquisitions overlap along the slice normal (consecutive AcquisitionNumbers that cover disjoint ranges, as
step-and-shoot axial scanners write them, stay one stack). The other stacks' frames are skipped with a reason
that says how to pick them.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from medinfer.errors import InputError, SeriesError
from medinfer.io.dicom import Frame
from medinfer.io.geometry import DUPLICATE_TOLERANCE_MM, rounded
from medinfer.io.text import plural

# The attributes that tell acquisitions/reconstructions of one series apart, and that acquisition= names.
ACQUISITION_ATTRIBUTES = ("AcquisitionNumber", "SliceThickness", "ImageType", "ConvolutionKernel")
THICKNESS_TOLERANCE_MM = 1e-3


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
        return f"#{self.index} ({what}{plural(len(self.frames), 'slice')})"


def _depth_extents(groups: list[list[Frame]]) -> list[tuple[float, float]] | None:
    placed = [f for g in groups for f in g if f.position is not None and f.orientation is not None]
    if not placed:
        return None
    reference = Counter(rounded(f.orientation) for f in placed).most_common(1)[0][0]
    normal = np.cross(reference[:3], reference[3:])
    extents = []
    for g in groups:
        depths = [float(f.position @ normal) for f in g
                  if f.position is not None and f.orientation is not None and rounded(f.orientation) == reference]
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


def one_acquisition(frames: list[Frame], uid: str, selector: AcquisitionSelector | None,
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
                              f"{plural(len(stacks), 'acquisition/reconstruction')}: {listing}",
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
                 f"{plural(others, 'slice')} of the others are listed in skipped. To use another: "
                 f"load_series(..., acquisition=N or \"Attribute=value,...\") or medinfer predict --acquisition N.")
    return used, [_stack_meta(s, s is chosen) for s in stacks]


def _stack_meta(s: Stack, used: bool) -> dict:
    return {"index": s.index, "key": s.key, "slices": len(s.frames), "used": used,
            **{a: list(s.values[a]) for a in ACQUISITION_ATTRIBUTES}}
