"""``load_series`` and ``load_study``: from what a user has (a folder, files, an array) to :class:`Series`.

A folder is searched recursively, following symlinks to folders (each folder and each file once; symlink
loops, dangling links, FIFOs, sockets, devices and unreadable folders are listed in ``skipped``, and only
regular files are ever opened). Image files (PNG/JPG/TIFF/BMP) form one series per folder; every other
file is read as DICOM and grouped by SeriesInstanceUID. Headers are read first; pixels are decoded only
for the series that is loaded, and only once its decoded size (from the headers) is known to fit the
memory limit (:func:`series_memory_limit`). Every input file ends up either in a series or in its
``skipped`` list, and every path in them is printable (:func:`medinfer.io.dicom.printable`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import math
import os
import stat
from collections import Counter, defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medinfer.errors import InputError, MedinferError, MultipleSeriesError, SeriesError, SeriesTooLargeError
from medinfer.io.assemble import assemble, no_acquisitions, parse_acquisition
from medinfer.io.dicom import (
    MAX_FRAMES,
    MAX_PIXELS,
    MAX_SIDE,
    Header,
    byte_size,
    file_kind,
    printable,
    read_frames,
    read_header,
)
from medinfer.io.images import is_image_file, load_image_series
from medinfer.io.series import Series

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

    def estimate(self) -> int:
        """Bytes this series takes once decoded, from its files' headers; no pixel is decoded."""
        if self.decoded_bytes is None:
            self.decoded_bytes = 0
            for path in self.files:
                n, shape = _image_bytes(path)
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


def _files(src) -> tuple[list[Path], list[tuple[str, str]], str]:
    """Input files (each once), what was listed or found but cannot be read as a file, and a label for messages.

    Folders are searched recursively, following symlinks to folders; a folder is searched once (a second
    way to it, or a symlink loop, is listed in ``skipped``), and so is a file (a second path to it is
    "listed twice"). Dangling symlinks, FIFOs, sockets, devices and folders that cannot be read are listed
    in ``skipped`` with their reason; none of them is opened.
    """
    skipped: list[tuple[str, str]] = []
    if isinstance(src, (str, bytes, os.PathLike)):
        root = Path(os.fsdecode(src))  # bytes: a file name as the OS holds it, UTF-8 or not
        try:
            os.stat(root)
        except FileNotFoundError:
            if not os.path.islink(root):
                raise InputError(f"no such file or folder: {printable(str(root))}") from None
            raise InputError(f"no such file or folder: {printable(str(root))} is a dangling symlink (to "
                             f"{printable(_link_target(root))})") from None
        except OSError as exc:
            raise InputError(f"cannot read {printable(str(root))}: {_os_problem(root, exc)}") from None
        entries, label = [root], str(root)
    elif isinstance(src, Sequence) and not isinstance(src, bytearray):
        entries, label = [], f"{len(src)} listed path(s)"
        for i, item in enumerate(src):
            if not isinstance(item, (str, bytes, os.PathLike)):
                raise InputError(f"load_series: item {i} of the list is a {type(item).__name__}, not a path")
            entries.append(Path(os.fsdecode(item)))
    else:
        raise InputError(f"load_series: expected a folder, a file, a list of files or an (N, H, W) HU array, "
                         f"got {type(src).__name__}")
    walk = _Walk(skipped)
    for entry in entries:
        try:
            info = os.stat(entry)
        except OSError as exc:
            skipped.append((str(entry), _os_problem(entry, exc)))
            continue
        if stat.S_ISDIR(info.st_mode):
            key = (info.st_dev, info.st_ino)
            if key in walk.folders:
                skipped.append((str(entry), f"listed twice (a folder already searched as {walk.folders[key]})"))
                continue
            found = walk.folder(entry, key)
        elif stat.S_ISREG(info.st_mode):
            found = [(entry, info, os.path.islink(entry))]
        else:
            skipped.append((str(entry), f"not a regular file: {file_kind(info.st_mode)}"))
            continue
        walk.add_files(sorted(found, key=lambda f: f[0]))
    return walk.files, skipped, label


def _link_target(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def _os_problem(path: Path, exc: OSError) -> str:
    """Why ``path`` (found or listed) cannot be followed to a file or folder, for ``skipped``."""
    if exc.errno == errno.ELOOP:
        return f"symlink loop (to {_link_target(path)}): it never reaches a file or folder"
    if isinstance(exc, FileNotFoundError):
        if os.path.islink(path):
            return f"dangling symlink (to {_link_target(path)}, which does not exist)"
        return "no such file"
    return f"cannot read: {exc.strerror or exc}"


class _Walk:
    """The files under the folders of one input, each file and folder once (by device and inode)."""

    def __init__(self, skipped: list[tuple[str, str]]):
        self.skipped = skipped
        self.files: list[Path] = []
        self.file_paths: dict[tuple[int, int], Path] = {}
        self.folders: dict[tuple[int, int], Path] = {}  # searched, or queued to be

    def add_files(self, found: list[tuple[Path, os.stat_result, bool]]) -> None:
        """Adds ``(path, stat, is a symlink)`` in order; of several paths to one file (symlinks, hard links)
        the first that is not a symlink is used, the others are "listed twice"."""
        primary: dict[tuple[int, int], tuple[Path, bool]] = {}
        for path, info, link in found:
            key = (info.st_dev, info.st_ino)
            if key not in self.file_paths and (key not in primary or (primary[key][1] and not link)):
                primary[key] = (path, link)
        for path, info, _ in found:
            key = (info.st_dev, info.st_ino)
            if key in self.file_paths:  # found through an earlier input
                self.skipped.append((str(path), f"listed twice (same file as {self.file_paths[key]})"))
            elif primary[key][0] == path:
                self.files.append(path)
            else:
                self.skipped.append((str(path), f"listed twice (same file as {primary[key][0]})"))
        self.file_paths.update((key, path) for key, (path, _) in primary.items())

    def folder(self, root: Path, root_key: tuple[int, int]) -> list[tuple[Path, os.stat_result, bool]]:
        """Regular files under ``root``. Real subfolders are searched first, then the folders symlinks point
        to, so that a folder reached both ways is listed under its own path."""
        found: list[tuple[Path, os.stat_result, bool]] = []
        self.folders[root_key] = root
        parent: dict[tuple[int, int], tuple[int, int] | None] = {root_key: None}  # the chain each folder was reached by
        pending: list[tuple[Path, tuple[int, int]]] = [(root, root_key)]
        links: deque[tuple[Path, tuple[int, int], tuple[int, int]]] = deque()
        while pending or links:
            if pending:
                folder, key = pending.pop()
            else:
                link, key, via = links.popleft()
                if not self._follow(link, key, via, parent):
                    continue
                folder = link
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                self.skipped.append((str(folder), f"cannot read the folder: {exc.strerror or exc}"))
                continue
            subfolders = []
            for entry in entries:
                path = folder / entry.name
                try:
                    info = entry.stat()  # follows symlinks
                except OSError as exc:
                    self.skipped.append((str(path), _os_problem(path, exc)))
                    continue
                if stat.S_ISREG(info.st_mode):
                    found.append((path, info, entry.is_symlink()))
                elif stat.S_ISDIR(info.st_mode):
                    sub = (info.st_dev, info.st_ino)
                    if entry.is_symlink():
                        links.append((path, sub, key))
                    elif sub in self.folders:  # a bind mount, or a folder also listed on its own
                        if self.folders[sub] != path:
                            self.skipped.append((str(path), f"folder already searched as {self.folders[sub]}"))
                    else:
                        self.folders[sub] = path
                        parent[sub] = key
                        subfolders.append((path, sub))
                else:
                    through = " (through a symlink)" if entry.is_symlink() else ""
                    self.skipped.append((str(path), f"not a regular file: {file_kind(info.st_mode)}{through}"))
            pending.extend(reversed(subfolders))
        return found

    def _follow(self, link: Path, key: tuple[int, int], via: tuple[int, int], parent: dict) -> bool:
        """Whether to search the folder ``link`` points to; if not, says why in ``skipped``."""
        chain: set[tuple[int, int]] = set()
        k: tuple[int, int] | None = via
        while k is not None:
            chain.add(k)
            k = parent.get(k)
        target = os.path.realpath(link)
        here = os.path.realpath(link.parent)
        if key in chain or here == target or here.startswith(target.rstrip(os.sep) + os.sep):
            self.skipped.append((str(link), f"symlink loop: points to {target}, a folder that contains it"))
            return False
        if key in self.folders:
            self.skipped.append((str(link), f"symlink to a folder already searched as {self.folders[key]} (its "
                                            "files are listed under that path)"))
            return False
        self.folders[key] = link
        parent[key] = via
        return True


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
        shapes: Counter[tuple[int, int]] = Counter()
        for h in headers:
            shapes[(h.rows or 0, h.columns or 0)] += h.frames
        scan.candidates.append(_Candidate(uid, first.description, sum(h.frames for h in headers), (0, number, uid),
                                          [Path(h.path) for h in headers], dicom=True,
                                          decoded_bytes=sum(_dicom_bytes(h) for h in headers), shapes=shapes))
    for folder, paths in images.items():
        scan.candidates.append(_Candidate(str(folder.resolve()), folder.name, len(paths), (1, str(folder)),
                                          sorted(paths), dicom=False))
    scan.candidates.sort(key=lambda c: c.sort_key)
    return scan


# ---------------------------------------------------------------------------------------------------------
# Memory: how much a series may take once decoded, checked from the headers before any pixel is decoded.

MAX_SERIES_BYTES_ENV = "MEDINFER_MAX_SERIES_BYTES"
# The default limit is this fraction of the memory available when loading starts: MemAvailable in
# /proc/meminfo, or the cgroup's limit less its usage where that is smaller (a container), or free
# physical pages where /proc/meminfo is missing. What remains is for the batcher's buffers, the engine
# and everything else in the process.
SERIES_MEMORY_FRACTION = 0.5
FALLBACK_MAX_SERIES_BYTES = 4 << 30  # when the platform says nothing about its memory
HU_BYTES = 4  # series.hu is float32, computed from the stored pixels (which the series keeps as well)
_UNLIMITED = ("unlimited", "none", "inf", "infinite", "off")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def available_memory() -> tuple[int, str] | None:
    """Bytes of memory available to this process now, and where that figure comes from; None if unknown."""
    found: list[tuple[int, str]] = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append((int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo"))
                    break
    except (OSError, ValueError, IndexError):
        pass
    cgroup = _cgroup_memory_left()
    if cgroup is not None:
        found.append(cgroup)
    if not found:
        with contextlib.suppress(AttributeError, OSError, ValueError):
            found.append((os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "free physical pages"))
    found = [f for f in found if f[0] > 0]
    return min(found) if found else None


def _read_number(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
        return None if text == "max" else int(text)
    except (OSError, ValueError):
        return None


def _cgroup_memory_left() -> tuple[int, str] | None:
    """The tightest (limit - usage) of this process' memory cgroup and its ancestors (cgroup v2 or v1)."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    best: tuple[int, str] | None = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, where = parts
        if controllers == "":
            base, limit_name, usage_name = "/sys/fs/cgroup", "memory.max", "memory.current"
        elif "memory" in controllers.split(","):
            base, limit_name, usage_name = "/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes"
        else:
            continue
        # In a container the cgroup's own path may not be visible: then its root is the container's cgroup.
        paths, where = [], where.rstrip("/")
        while True:
            paths.append(base + where)
            if not where:
                break
            where = where.rsplit("/", 1)[0]
        for folder in paths:
            limit, usage = _read_number(f"{folder}/{limit_name}"), _read_number(f"{folder}/{usage_name}")
            if limit is None or usage is None or limit >= 1 << 60:  # absent, or "no limit"
                continue
            left = max(limit - usage, 0)
            if best is None or left < best[0]:
                best = (left, f"the memory cgroup's limit less its usage ({folder}/{limit_name})")
    return best


def parse_byte_count(text: str, what: str = MAX_SERIES_BYTES_ENV) -> float:
    """``"8G"``, ``"512MiB"``, ``"1.5g"``, ``"1073741824"`` (powers of 1024) -> bytes; ``"unlimited"`` -> inf."""
    value = text.strip().lower()
    if value in _UNLIMITED:
        return math.inf
    number = value.removesuffix("ib").removesuffix("b")
    unit = number[-1:] if number[-1:] in _UNITS and number[-1:] != "" else ""
    number = number[: len(number) - len(unit)].strip()
    try:
        result = float(number) * _UNITS[unit]
    except ValueError:
        result = math.nan
    if not math.isfinite(result) or result <= 0:
        raise InputError(f"{what}={text!r}: expected a number of bytes such as 8G, 512M or 1073741824 (powers "
                         f"of 1024), or 'unlimited'")
    return result


def default_max_series_bytes() -> tuple[int, str]:
    """The default limit on a series' decoded size (:data:`SERIES_MEMORY_FRACTION` of the available memory)
    and how it was derived."""
    available = available_memory()
    if available is None:
        return FALLBACK_MAX_SERIES_BYTES, "medinfer's fallback: this platform does not say how much memory is free"
    amount, source = available
    return int(amount * SERIES_MEMORY_FRACTION), (f"{SERIES_MEMORY_FRACTION:g} of the {byte_size(amount)} of "
                                                  f"memory available now, {source}")


def series_memory_limit(max_bytes: int | float | str | None = None) -> tuple[float, str]:
    """The limit on the bytes a load may decode, and where it comes from: ``max_bytes`` if given, else the
    environment variable ``MEDINFER_MAX_SERIES_BYTES``, else :func:`default_max_series_bytes`."""
    if max_bytes is not None:
        if isinstance(max_bytes, str):
            return parse_byte_count(max_bytes, "max_bytes"), f"max_bytes={max_bytes!r}"
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, float)) or not max_bytes > 0:
            raise InputError(f"max_bytes={max_bytes!r}: expected a positive number of bytes, a string such as "
                             "'8G', or math.inf for no limit")
        return float(max_bytes), f"max_bytes={max_bytes!r}"
    env = os.environ.get(MAX_SERIES_BYTES_ENV)
    if env is not None and env.strip():
        return parse_byte_count(env), f"{MAX_SERIES_BYTES_ENV}={env.strip()}"
    limit, source = default_max_series_bytes()
    return float(limit), source


def _dicom_bytes(header: Header) -> int:
    """What one file takes once decoded: stored pixels + float32 HU. 0 for a header read_frames will refuse."""
    bits, rows, cols = header.bits_allocated, header.rows or 0, header.columns or 0
    if bits not in (8, 16, 32) or not (1 <= rows <= MAX_SIDE and 1 <= cols <= MAX_SIDE):
        return 0
    if not 1 <= header.frames <= MAX_FRAMES or header.pixel_count > MAX_PIXELS:
        return 0
    return header.pixel_count * (bits // 8 + HU_BYTES)


def _image_bytes(path: Path) -> tuple[int, tuple[int, int] | None]:
    """The decoded size of an image file from its header (Pillow reads no pixels to open it)."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            width, height = im.size
            mode = im.mode
    except Exception:  # unreadable: load_image_series says why
        return 0, None
    stored = 2 if mode.startswith("I;16") or mode == "I" else 4 if mode == "F" else 1
    return width * height * (stored + HU_BYTES), (height, width)


@dataclass
class _Budget:
    """The bytes one call may decode, and what it has decoded so far."""

    limit: float
    source: str
    call: str  # "load_series" or "load_study", for the message
    used: int = 0

    def check(self, what: str, need: int, detail: str, skipped: list[tuple[str, str]]) -> None:
        if self.used + need > self.limit:
            raise SeriesTooLargeError(
                f"{what} would take about {byte_size(need)} of memory once decoded ({detail}; "
                f"{HU_BYTES} bytes of float32 HU + the stored bytes per pixel), over the limit of "
                f"{byte_size(self.limit)} ({self.source}). Raise it with {self.call}(..., max_bytes=...) or the "
                f"environment variable {MAX_SERIES_BYTES_ENV} (e.g. {MAX_SERIES_BYTES_ENV}=16G, or =unlimited), "
                "or load fewer slices", estimate=self.used + need, limit=self.limit, skipped=skipped)

    def charge(self, what: str, frames: list, skipped: list[tuple[str, str]]) -> None:
        """Counts decoded frames; raises when they exceed the limit (their headers said less)."""
        for f in frames:
            self.used += int(f.pixels.nbytes + f.pixels.size * HU_BYTES)
        if self.used > self.limit:
            raise SeriesTooLargeError(
                f"{what}: the pixels decoded so far already take {byte_size(self.used)} with their float32 HU, "
                f"over the limit of {byte_size(self.limit)} ({self.source}), more than the headers declared. "
                f"Raise it with {self.call}(..., max_bytes=...) or {MAX_SERIES_BYTES_ENV}",
                estimate=self.used, limit=self.limit, skipped=skipped)


def _candidate_detail(c: _Candidate) -> str:
    shapes = ", ".join(f"{n}× {h}×{w}" for (h, w), n in c.shapes.most_common(3)) or "sizes unknown"
    return f"{len(c.files)} file(s), {c.slices} slice(s): {shapes}"


def _what(c: _Candidate, label: str) -> str:
    kind = "series" if c.dicom else "image folder"
    return f"{kind} {c.uid!r} ({c.description or 'no description'}) in {label}"


# ---------------------------------------------------------------------------------------------------------
# Output that can be printed and written as JSON: a file name that is not UTF-8 becomes \xNN escapes.

def _printable_value(value):
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {_printable_value(k): _printable_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_printable_value(v) for v in value)
    return value


def _printable_lines(text: str) -> str:
    return "\n".join(printable(line) for line in text.split("\n"))


def _printable_series(series: Series) -> Series:
    series.files = [printable(f) for f in series.files]
    series.skipped = [(printable(str(p)), printable(str(r))) for p, r in series.skipped]
    series.uid = printable(series.uid)
    series.meta = _printable_value(series.meta)
    if isinstance(getattr(series, "warnings", None), list):
        series.warnings = [_printable_lines(w) for w in series.warnings]
    return series


def _printable_output(load):
    """Makes every path and reason ``load`` returns or raises printable (:func:`printable`)."""

    @functools.wraps(load)
    def wrapper(*args, **kwargs):
        try:
            out = load(*args, **kwargs)
        except MedinferError as exc:
            exc.args = tuple(_printable_lines(a) if isinstance(a, str) else a for a in exc.args)
            if isinstance(exc, SeriesError):
                exc.skipped = [(printable(str(p)), printable(str(r))) for p, r in exc.skipped]
            if isinstance(exc, MultipleSeriesError):
                exc.series = _printable_value(exc.series)
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


def _build(candidate: _Candidate, skipped: list[tuple[str, str]], acquisition=None, budget: _Budget | None = None,
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
            budget.charge(_what(candidate, label), found, [*skipped, *own])
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
    as ``"AcquisitionNumber=2,SliceThickness=1.25"`` (see :func:`medinfer.io.assemble.parse_acquisition`).

    ``max_bytes`` bounds the memory the series takes once decoded (stored pixels + float32 HU, from the
    headers' Rows × Columns × frames × BitsAllocated, checked before any pixel is decoded): an int, a string
    such as ``"8G"``, or ``math.inf``. By default ``$MEDINFER_MAX_SERIES_BYTES``, else half of the memory
    available (:func:`series_memory_limit`). Over it: :class:`~medinfer.errors.SeriesTooLargeError`.

    Paths and reasons in ``files``, ``skipped``, ``uid`` and error messages are printable: a file name that
    is not UTF-8 shows its bytes as ``\\xNN`` (:func:`medinfer.io.dicom.printable`).
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
    budget = _Budget(*series_memory_limit(max_bytes), call="load_series")
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
    budget = _Budget(*series_memory_limit(max_bytes), call="load_study")
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
