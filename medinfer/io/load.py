"""``load_series`` and ``load_study``: from what a user has (a folder, files, an array) to :class:`Series`.

A folder is searched recursively. Image files (PNG/JPG/TIFF/BMP) form one series per folder; every other
file is read as DICOM and grouped by SeriesInstanceUID. Headers are read first; pixels are decoded only
for the series that is loaded. Every input file ends up either in a series or in its ``skipped`` list.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medinfer.errors import InputError, MultipleSeriesError, SeriesError
from medinfer.io.assemble import assemble
from medinfer.io.dicom import Header, read_frames, read_header
from medinfer.io.images import is_image_file, load_image_series
from medinfer.io.series import Series

SeriesSource = str | os.PathLike | Sequence[str | os.PathLike] | np.ndarray


@dataclass
class _Candidate:
    """A series found in the input, before its pixels are read."""

    uid: str
    description: str
    slices: int
    sort_key: tuple
    files: list[Path]
    dicom: bool

    def describe(self) -> dict:
        return {"uid": self.uid, "description": self.description, "slices": self.slices}


@dataclass
class _Scan:
    label: str
    candidates: list[_Candidate] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # not attributable to any series


def _files(src) -> tuple[list[Path], list[tuple[str, str]], str]:
    """Input files (each once), what was listed but does not exist, and a label for messages."""
    skipped: list[tuple[str, str]] = []
    if isinstance(src, (str, os.PathLike)):
        root = Path(src)
        if not root.exists():
            raise InputError(f"no such file or folder: {root}")
        entries, label = [root], str(root)
    elif isinstance(src, Sequence) and not isinstance(src, (bytes, bytearray)):
        entries, label = [], f"{len(src)} listed path(s)"
        for i, item in enumerate(src):
            if not isinstance(item, (str, os.PathLike)):
                raise InputError(f"load_series: item {i} of the list is a {type(item).__name__}, not a path")
            entries.append(Path(item))
    else:
        raise InputError(f"load_series: expected a folder, a file, a list of files or an (N, H, W) HU array, "
                         f"got {type(src).__name__}")
    files: list[Path] = []
    seen: dict[Path, Path] = {}
    for entry in entries:
        if entry.is_dir():
            found = sorted(p for p in entry.rglob("*") if p.is_file())
        elif entry.is_file():
            found = [entry]
        else:
            skipped.append((str(entry), "no such file"))
            continue
        for path in found:
            key = path.resolve()
            if key in seen:
                skipped.append((str(path), f"listed twice (same file as {seen[key]})"))
            else:
                seen[key] = path
                files.append(path)
    return files, skipped, label


def _scan(src) -> _Scan:
    files, skipped, label = _files(src)
    scan = _Scan(label, skipped=skipped)
    dicom: dict[str, list[Header]] = defaultdict(list)
    images: dict[Path, list[Path]] = defaultdict(list)
    for path in files:
        if is_image_file(path):
            images[path.parent].append(path)
            continue
        header = read_header(path)
        if isinstance(header, str):
            scan.skipped.append((str(path), header))
        else:
            dicom[header.series_uid].append(header)
    for uid, headers in dicom.items():
        first = headers[0]
        number = first.series_number if first.series_number is not None else float("inf")
        scan.candidates.append(_Candidate(uid, first.description, sum(h.frames for h in headers), (0, number, uid),
                                          [Path(h.path) for h in headers], dicom=True))
    for folder, paths in images.items():
        scan.candidates.append(_Candidate(str(folder.resolve()), folder.name, len(paths), (1, str(folder)),
                                          sorted(paths), dicom=False))
    scan.candidates.sort(key=lambda c: c.sort_key)
    return scan


def _summary(skipped: list[tuple[str, str]], limit: int = 5) -> str:
    if not skipped:
        return "the input holds no files"
    kinds = Counter(reason.split(" (")[0].split(":")[0] for _, reason in skipped)
    examples = "; ".join(f"{path}: {reason}" for path, reason in skipped[:limit])
    counted = ", ".join(f"{n}× {kind}" for kind, n in kinds.most_common(limit))
    return f"{len(skipped)} file(s) skipped ({counted}), e.g. {examples}"


def _build(candidate: _Candidate, skipped: list[tuple[str, str]]) -> Series:
    """The candidate's series; ``skipped`` (inputs set aside before) leads its ``skipped`` list. Raises
    SeriesError, with every file's reason in ``.skipped``, when none of its slices is usable."""
    if not candidate.dicom:
        series = load_image_series(candidate.files, Path(candidate.uid))
        series.skipped[:0] = skipped
        return series
    frames, own = [], []
    for path in candidate.files:
        found, bad = read_frames(path)
        frames.extend(found)
        own.extend(bad)
    if not frames:
        raise SeriesError(f"series {candidate.uid!r} ({candidate.description or 'no description'}) has no usable "
                          f"slice: {_summary(own)}", skipped=own)
    return assemble(frames, candidate.uid, [*skipped, *own])


def load_series(src: SeriesSource, *, series_uid: str | None = None) -> Series:
    """Load one CT series.

    ``src``: a folder (searched recursively), a list of files, a single (multi-frame) file, or an
    ``(N, H, W)`` array of HU values (see :meth:`Series.from_array`). A folder holding several series
    raises :class:`~medinfer.errors.MultipleSeriesError` listing them, unless ``series_uid`` picks one;
    files of the other series are then listed in ``skipped``. Raises :class:`~medinfer.errors.SeriesError`
    when no usable slice is found, saying why, and :class:`~medinfer.errors.InputError` for a bad ``src``.
    """
    if isinstance(src, np.ndarray):
        return Series.from_array(src)
    scan = _scan(src)
    if not scan.candidates:
        raise SeriesError(f"no CT series in {scan.label}: {_summary(scan.skipped)}", skipped=scan.skipped)
    if series_uid is None:
        if len(scan.candidates) > 1:
            raise MultipleSeriesError(scan.label, [c.describe() for c in scan.candidates])
        chosen = scan.candidates[0]
    else:
        chosen = next((c for c in scan.candidates if c.uid == series_uid), None)
        if chosen is None:
            listing = "; ".join(f"{c.uid} ({c.description or 'no description'}, {c.slices} slices)"
                                for c in scan.candidates)
            raise SeriesError(f"no series {series_uid!r} in {scan.label}; it holds: {listing}")
    skipped = list(scan.skipped)
    for other in scan.candidates:
        if other is not chosen:
            reason = f"belongs to another series, {other.uid} ({other.description or 'no description'})"
            skipped.extend((str(p), reason) for p in other.files)
    return _build(chosen, skipped)


def load_study(src: SeriesSource) -> list[Series]:
    """Load every CT series in ``src`` (see :func:`load_series`), DICOM series by SeriesNumber, then image
    folders by path. Files that belong to no series (foreign objects, unreadable files) are listed in each
    series' ``skipped``; a series none of whose slices is usable is left out and its files are listed there
    too. Raises :class:`~medinfer.errors.SeriesError` when no series is usable."""
    if isinstance(src, np.ndarray):
        return [Series.from_array(src)]
    scan = _scan(src)
    built: list[Series] = []
    common = list(scan.skipped)
    for candidate in scan.candidates:
        try:
            built.append(_build(candidate, []))
        except SeriesError as exc:
            common.extend(exc.skipped)
    if not built:
        raise SeriesError(f"no usable CT series in {scan.label}: {_summary(common)}", skipped=common)
    for series in built:
        series.skipped[:0] = common
    return built
