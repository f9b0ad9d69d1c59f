"""``load_series`` and ``load_study``: from what a user has (a folder, files, an array) to :class:`Series`.

A folder is searched recursively, following symlinks to folders (:mod:`medinfer.io.discover`: each folder
and each file once; symlink loops, dangling links, FIFOs, sockets, devices and unreadable folders are listed
in ``skipped``, and only regular files are ever opened). Image files (PNG/JPG/TIFF/BMP) form one series per
folder; every other file is read as DICOM and grouped by SeriesInstanceUID. Headers are read first; pixels
are decoded only for the series that is loaded, and only once its decoded size (from the headers) is known
to fit the memory limit (:func:`medinfer.io.budget.series_memory_limit`). Every input file ends up either in
a series or in its ``skipped`` list, and every path in them is printable (:func:`medinfer.io.text.printable`).
"""

from __future__ import annotations

import functools
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medinfer.errors import MedinferError, MultipleSeriesError, SeriesError, SeriesTooLargeError
from medinfer.io.acquisitions import no_acquisitions, parse_acquisition
from medinfer.io.assemble import assemble
from medinfer.io.budget import Budget, dicom_bytes, image_bytes, series_memory_limit
from medinfer.io.dicom import Header, byte_size, read_frames, read_header
from medinfer.io.discover import find_files
from medinfer.io.images import is_image_file, load_image_series
from medinfer.io.series import Series
from medinfer.io.text import printable, printable_lines, printable_value

SeriesSource = str | bytes | os.PathLike | Sequence[str | bytes | os.PathLike] | np.ndarray


@dataclass
class _Candidate:
    """A series found in the input, before its pixels are read."""

    uid: str
    description: str
    slices: int
    sort_key: tuple
    files: list[Path]
    dicom: bool
    decoded_bytes: int | None = None  # stored pixels + float32 HU, from the headers (images: on first need)
    shapes: Counter = field(default_factory=Counter)  # (rows, cols) -> slices
    attributes: dict = field(default_factory=dict)  # selection attributes of its first file (DICOM only)

    def estimate(self) -> int:
        """Bytes this series takes once decoded, from its files' headers; no pixel is decoded."""
        if self.decoded_bytes is None:
            self.decoded_bytes = 0
            for path in self.files:
                n, shape = image_bytes(path)
                self.decoded_bytes += n
                if shape is not None:
                    self.shapes[shape] += 1
        return self.decoded_bytes

    def describe(self) -> dict:
        return {"uid": self.uid, "description": self.description, "slices": self.slices}


@dataclass
class _Scan:
    label: str
    candidates: list[_Candidate] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # not attributable to any series


def _scan(src, tags: Sequence[str] = ()) -> _Scan:
    """The series in ``src`` from their files' headers (reading ``tags`` too, for selection rules)."""
    files, skipped, label = find_files(src)
    scan = _Scan(label, skipped=skipped)
    dicom: dict[str, list[Header]] = defaultdict(list)
    images: dict[Path, list[Path]] = defaultdict(list)
    for path in files:
        if is_image_file(path):
            images[path.parent].append(path)
            continue
        header = read_header(path, tags)
        if isinstance(header, str):
            scan.skipped.append((str(path), header))
        else:
            dicom[header.series_uid].append(header)
    for uid, headers in dicom.items():
        first = headers[0]
        number = first.series_number if first.series_number is not None else float("inf")
        shapes: Counter[tuple[int, int]] = Counter()
        for h in headers:
            shapes[(h.rows or 0, h.columns or 0)] += h.frames
        scan.candidates.append(_Candidate(uid, first.description, sum(h.frames for h in headers), (0, number, uid),
                                          [Path(h.path) for h in headers], dicom=True,
                                          decoded_bytes=sum(dicom_bytes(h) for h in headers), shapes=shapes,
                                          attributes=first.attributes))
    for folder, paths in images.items():
        scan.candidates.append(_Candidate(str(folder.resolve()), folder.name, len(paths), (1, str(folder)),
                                          sorted(paths), dicom=False))
    scan.candidates.sort(key=lambda c: c.sort_key)
    return scan


def _candidate_detail(c: _Candidate) -> str:
    shapes = ", ".join(f"{n}× {h}×{w}" for (h, w), n in c.shapes.most_common(3)) or "sizes unknown"
    return f"{len(c.files)} file(s), {c.slices} slice(s): {shapes}"


def _what(c: _Candidate, label: str) -> str:
    kind = "series" if c.dicom else "image folder"
    return f"{kind} {c.uid!r} ({c.description or 'no description'}) in {label}"


# ---------------------------------------------------------------------------------------------------------
# Output that can be printed and written as JSON: a file name that is not UTF-8 becomes \xNN escapes.

def _printable_series(series: Series) -> Series:
    series.files = [printable(f) for f in series.files]
    series.skipped = [(printable(str(p)), printable(str(r))) for p, r in series.skipped]
    series.uid = printable(series.uid)
    series.meta = printable_value(series.meta)
    series.warnings = [printable_lines(w) for w in series.warnings]
    return series


def _printable_output(load):
    """Makes every path and reason ``load`` returns or raises printable (:func:`printable`)."""

    @functools.wraps(load)
    def wrapper(*args, **kwargs):
        try:
            out = load(*args, **kwargs)
        except MedinferError as exc:
            exc.args = tuple(printable_lines(a) if isinstance(a, str) else a for a in exc.args)
            if isinstance(exc, SeriesError):
                exc.skipped = [(printable(str(p)), printable(str(r))) for p, r in exc.skipped]
            if isinstance(exc, MultipleSeriesError):
                exc.series = printable_value(exc.series)
            raise
        if isinstance(out, Series):
            return _printable_series(out)
        return [_printable_series(s) for s in out]

    return wrapper


def _summary(skipped: list[tuple[str, str]], limit: int = 5) -> str:
    if not skipped:
        return "the input holds no files"
    kinds = Counter(reason.split(" (")[0].split(":")[0] for _, reason in skipped)
    examples = "; ".join(f"{path}: {reason}" for path, reason in skipped[:limit])
    counted = ", ".join(f"{n}× {kind}" for kind, n in kinds.most_common(limit))
    return f"{len(skipped)} file(s) skipped ({counted}), e.g. {examples}"


def _build(candidate: _Candidate, skipped: list[tuple[str, str]], acquisition=None, budget: Budget | None = None,
           label: str = "") -> Series:
    """The candidate's series; ``skipped`` (inputs set aside before) leads its ``skipped`` list. Raises
    SeriesError, with every file's reason in ``.skipped``, when none of its slices is usable, and
    SeriesTooLargeError when its decoded pixels exceed ``budget``."""
    if not candidate.dicom:
        no_acquisitions(acquisition, f"the image folder {candidate.uid}")
        series = load_image_series(candidate.files, Path(candidate.uid))
        series.skipped[:0] = skipped
        return series
    frames, own = [], []
    for path in candidate.files:
        found, bad = read_frames(path)
        frames.extend(found)
        own.extend(bad)
        if budget is not None:
            budget.charge(_what(candidate, label), found, skipped, own)
    if not frames:
        raise SeriesError(f"series {candidate.uid!r} ({candidate.description or 'no description'}) has no usable "
                          f"slice: {_summary(own)}", skipped=own)
    return assemble(frames, candidate.uid, [*skipped, *own], acquisition=acquisition)


@_printable_output
def load_series(src: SeriesSource, *, series_uid: str | None = None, acquisition: int | str | None = None,
                max_bytes: int | float | str | None = None) -> Series:
    """Load one CT series.

    ``src``: a folder (searched recursively), a list of files, a single (multi-frame) file, or an
    ``(N, H, W)`` array of HU values (see :meth:`Series.from_array`). A folder holding several series
    raises :class:`~medinfer.errors.MultipleSeriesError` listing them, unless ``series_uid`` picks one;
    files of the other series are then listed in ``skipped``. Raises :class:`~medinfer.errors.SeriesError`
    when no usable slice is found, saying why, and :class:`~medinfer.errors.InputError` for a bad ``src``.

    ``acquisition`` picks one acquisition/reconstruction of a DICOM series that holds several (they differ in
    AcquisitionNumber, SliceThickness, ImageType or ConvolutionKernel; by default the largest is used and the
    others' slices are listed in ``skipped``): a stack number, 1 = the largest (``2`` or ``"2"``), or a key such
    as ``"AcquisitionNumber=2,SliceThickness=1.25"`` (see :func:`medinfer.io.acquisitions.parse_acquisition`).

    ``max_bytes`` bounds the memory the series takes once decoded (stored pixels + float32 HU, from the
    headers' Rows × Columns × frames × BitsAllocated, checked before any pixel is decoded): an int, a string
    such as ``"8G"``, or ``math.inf``. By default ``$MEDINFER_MAX_SERIES_BYTES``, else half of the memory
    available (:func:`medinfer.io.budget.series_memory_limit`). Over it: :class:`~medinfer.errors.SeriesTooLargeError`.

    Paths and reasons in ``files``, ``skipped``, ``uid`` and error messages are printable: a file name that
    is not UTF-8 shows its bytes as ``\\xNN`` (:func:`medinfer.io.text.printable`).
    """
    acquisition = parse_acquisition(acquisition)
    if isinstance(src, np.ndarray):
        no_acquisitions(acquisition, "an HU array")
        return Series.from_array(src)
    scan = _scan(src)
    if not scan.candidates:
        raise SeriesError(f"no CT series in {scan.label}: {_summary(scan.skipped)}", skipped=scan.skipped)
    if series_uid is None:
        if len(scan.candidates) > 1:
            raise MultipleSeriesError(scan.label, [c.describe() for c in scan.candidates])
        chosen = scan.candidates[0]
    else:
        chosen = next((c for c in scan.candidates if series_uid in (c.uid, printable(c.uid))), None)
        if chosen is None:
            listing = "; ".join(f"{c.uid} ({c.description or 'no description'}, {c.slices} slices)"
                                for c in scan.candidates)
            raise SeriesError(f"no series {series_uid!r} in {scan.label}; it holds: {listing}")
    skipped = list(scan.skipped)
    for other in scan.candidates:
        if other is not chosen:
            reason = f"belongs to another series, {other.uid} ({other.description or 'no description'})"
            skipped.extend((str(p), reason) for p in other.files)
    budget = Budget(*series_memory_limit(max_bytes), call="load_series")
    budget.check(_what(chosen, scan.label), chosen.estimate(), _candidate_detail(chosen), skipped)
    return _build(chosen, skipped, acquisition, budget=budget, label=scan.label)


@_printable_output
def load_study(src: SeriesSource, *, max_bytes: int | float | str | None = None) -> list[Series]:
    """Load every CT series in ``src`` (see :func:`load_series`), DICOM series by SeriesNumber, then image
    folders by path. Files that belong to no series (foreign objects, unreadable files) are listed in each
    series' ``skipped``; a series none of whose slices is usable is left out and its files are listed there
    too. Raises :class:`~medinfer.errors.SeriesError` when no series is usable, and
    :class:`~medinfer.errors.SeriesTooLargeError` when the series together would exceed ``max_bytes``
    (as in :func:`load_series`, for all of them: they are held in memory together)."""
    if isinstance(src, np.ndarray):
        return [Series.from_array(src)]
    scan = _scan(src)
    built: list[Series] = []
    common = list(scan.skipped)
    budget = Budget(*series_memory_limit(max_bytes), call="load_study")
    total = sum(c.estimate() for c in scan.candidates)
    if scan.candidates:
        largest = max(scan.candidates, key=lambda c: c.estimate())
        budget.check(f"the {len(scan.candidates)} series in {scan.label}", total,
                     f"the largest, {_what(largest, scan.label)}: {byte_size(largest.estimate())}, "
                     f"{_candidate_detail(largest)}; pick one with load_series(..., series_uid=...)", common)
    for candidate in scan.candidates:
        try:
            built.append(_build(candidate, [], budget=budget, label=scan.label))
        except SeriesTooLargeError:
            raise
        except SeriesError as exc:
            common.extend(exc.skipped)
    if not built:
        raise SeriesError(f"no usable CT series in {scan.label}: {_summary(common)}", skipped=common)
    for series in built:
        series.skipped[:0] = common
    return built
