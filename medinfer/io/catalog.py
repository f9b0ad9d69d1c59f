"""Every series of an archive: folders of studies -> one :class:`SeriesRef` per series, before any pixel is read.

An archive is read a unit at a time, so that memory holds one unit's headers rather than the archive's, and
classification starts after the first unit: a root's own files form one unit, each folder directly inside a
root another (a study, or a patient's studies, as PACS exports and research cohorts lay them out). A series
is expected within one unit; one that spans two is found in each, as two series with the same UID and
different sources. Files that belong to no series (unreadable, not CT) are listed in the ``skipped`` of the
series in their folder or below it; a folder none of whose files belongs to a series is reported as a
:class:`NoSeries`, with every file's reason.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medinfer.errors import InputError, SeriesError
from medinfer.io.text import printable


@dataclass(frozen=True)
class SeriesRef:
    """A series found in an archive: where its files are, and the attributes selection rules look at."""

    uid: str  # SeriesInstanceUID (for an image folder: the folder's path)
    source: str  # printable: the folder holding its files, or its file
    files: tuple[str, ...]
    description: str = ""
    slices: int = 0
    attributes: dict = field(default_factory=dict)  # DICOM attributes of its first file (none for images)
    skipped: tuple[tuple[str, str], ...] = ()  # files of its unit that belong to no series

    @property
    def key(self) -> tuple[str, str]:
        """What identifies it in a results file (``--resume``)."""
        return printable(self.uid), self.source

    def to_dict(self) -> dict:
        return {"kind": "series", "uid": self.uid, "source": self.source, "files": list(self.files),
                "description": self.description, "slices": self.slices, "attributes": self.attributes,
                "skipped": [list(s) for s in self.skipped]}

    def load(self, *, acquisition: int | str | None = None, max_bytes: int | float | str | None = None):
        """Its :class:`~medinfer.io.Series` (the headers are read again: files may have changed since)."""
        from medinfer.io.load import load_series

        series = load_series(list(self.files), series_uid=self.uid, acquisition=acquisition, max_bytes=max_bytes)
        series.skipped[:0] = list(self.skipped)
        return series


@dataclass(frozen=True)
class NoSeries:
    """A unit of an archive in which no series could be found; loading it raises the reason."""

    source: str
    message: str
    skipped: tuple[tuple[str, str], ...] = ()
    uid: str = ""
    description: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return "", self.source

    def load(self, **_):
        raise SeriesError(self.message, skipped=list(self.skipped))

    def to_dict(self) -> dict:
        return {"kind": "none", "source": self.source, "message": self.message,
                "skipped": [list(s) for s in self.skipped]}


def from_dict(d: dict) -> SeriesRef | NoSeries:
    """The inverse of ``to_dict`` (refs travel to Ray workers as JSON, never pickled files)."""
    skipped = tuple(tuple(s) for s in d["skipped"])
    if d["kind"] == "none":
        return NoSeries(d["source"], d["message"], skipped)  # type: ignore[arg-type]
    return SeriesRef(d["uid"], d["source"], tuple(d["files"]), d["description"], d["slices"], d["attributes"],
                     skipped)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Unit:
    """A part of an archive read at once: a folder, or a root's own files (JSON-safe, for Ray workers)."""

    paths: tuple[str, ...]  # one folder, or files
    name: str  # printable, for messages

    def to_dict(self) -> dict:
        return {"paths": list(self.paths), "name": self.name}

    @classmethod
    def from_dict(cls, d: dict) -> Unit:
        return cls(tuple(d["paths"]), d["name"])


def discover(roots: Sequence[str | os.PathLike], *, tags: Sequence[str] = ()) -> Iterator[SeriesRef | NoSeries]:
    """The series under ``roots`` (folders or files), unit by unit (:func:`units`, :func:`discover_unit`)."""
    for unit in units(roots):
        yield from discover_unit(unit, tags=tags)


def discover_unit(unit: Unit, *, tags: Sequence[str] = ()) -> Iterator[SeriesRef | NoSeries]:
    """The series of one unit, in order of SeriesNumber, then image folders by path; ``tags`` are DICOM
    keywords to read for selection rules besides the usual ones."""
    from medinfer.io.load import _scan, _summary

    src = unit.paths[0] if len(unit.paths) == 1 else list(unit.paths)
    scan = _scan(src, tags)
    refs = []
    for c in scan.candidates:
        files = tuple(str(f) for f in c.files)
        refs.append(SeriesRef(uid=c.uid, source=_source(files), files=files, description=c.description,
                              slices=c.slices, attributes=c.attributes))
    # A file that belongs to no series is listed with the series in its folder or below it (a DICOMDIR or a
    # note beside a study's series); a folder whose files all belong to none is reported on its own.
    shared: dict[int, list[tuple[str, str]]] = {i: [] for i in range(len(refs))}
    orphans: dict[str, list[tuple[str, str]]] = {}
    for path, reason in scan.skipped:
        entry = (printable(str(path)), printable(reason))
        folder = printable(os.path.dirname(os.fspath(path)))
        near = [i for i, r in enumerate(refs) if _within(r.source, folder)]
        for i in near:
            shared[i].append(entry)
        if not near:
            orphans.setdefault(folder, []).append(entry)
    for i, ref in enumerate(refs):
        yield dataclasses.replace(ref, skipped=tuple(shared[i])) if shared[i] else ref
    for folder, skipped in orphans.items():
        yield NoSeries(folder, f"no CT series in {folder}: {_summary(skipped)}", tuple(skipped))


def _within(source: str, folder: str) -> bool:
    """Whether a series' source lies in ``folder`` or below it."""
    return source == folder or source.startswith(folder.rstrip(os.sep) + os.sep)


def units(roots: Sequence[str | os.PathLike]) -> list[Unit]:
    """The units of ``roots``, in order: for a folder its own files (one unit), then each folder in it; a
    file is a unit of its own. Raises InputError for a root that does not exist or cannot be read."""
    out: list[Unit] = []
    for root in roots:
        root = Path(os.fsdecode(root))
        try:
            info = os.stat(root)
        except (OSError, ValueError):
            raise InputError(f"no such file or folder: {printable(str(root))}") from None
        if not stat.S_ISDIR(info.st_mode):
            out.append(Unit((str(root),), printable(str(root))))
            continue
        try:
            with os.scandir(root) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise InputError(f"cannot read the folder {printable(str(root))}: {exc.strerror or exc}") from None
        loose = tuple(e.path for e in entries if not _is_folder(e))
        if loose:
            out.append(Unit(loose, printable(str(root))))
        out += [Unit((e.path,), printable(e.path)) for e in entries if _is_folder(e)]
    return out


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows symlinks: a linked study folder is a unit like any other
    except OSError:
        return False


def _source(files: tuple[str, ...]) -> str:
    """A series' source: its file when it has one, else the folder that holds all its files."""
    if len(files) == 1:
        return printable(files[0])
    return printable(os.path.commonpath(files))
