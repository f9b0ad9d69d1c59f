"""How much memory a series may take once decoded, and the estimate from its headers that is checked
against that limit before any pixel is decoded."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medinfer.errors import InputError, SeriesTooLargeError
from medinfer.io.dicom import MAX_FRAMES, MAX_PIXELS, MAX_SIDE, Header, byte_size

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


def dicom_bytes(header: Header) -> int:
    """What one file takes once decoded: stored pixels + float32 HU. 0 for a header read_frames will refuse."""
    bits, rows, cols = header.bits_allocated, header.rows or 0, header.columns or 0
    if bits not in (8, 16, 32) or not (1 <= rows <= MAX_SIDE and 1 <= cols <= MAX_SIDE):
        return 0
    if not 1 <= header.frames <= MAX_FRAMES or header.pixel_count > MAX_PIXELS:
        return 0
    return header.pixel_count * (bits // 8 + HU_BYTES)


def image_bytes(path: Path) -> tuple[int, tuple[int, int] | None]:
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
class Budget:
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

    def charge(self, what: str, frames: list, skipped: list[tuple[str, str]],
               more_skipped: Sequence[tuple[str, str]] = ()) -> None:
        """Counts decoded frames; raises when they exceed the limit (their headers said less), with
        ``skipped`` + ``more_skipped`` (joined only then) as the error's ``skipped``."""
        for f in frames:
            self.used += int(f.pixels.nbytes + f.pixels.size * HU_BYTES)
        if self.used > self.limit:
            raise SeriesTooLargeError(
                f"{what}: the pixels decoded so far already take {byte_size(self.used)} with their float32 HU, "
                f"over the limit of {byte_size(self.limit)} ({self.source}), more than the headers declared. "
                f"Raise it with {self.call}(..., max_bytes=...) or {MAX_SERIES_BYTES_ENV}",
                estimate=self.used, limit=self.limit, skipped=[*skipped, *more_skipped])
