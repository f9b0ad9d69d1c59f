"""A small wall-clock timer for ``medinfer bench`` (the pytest suite in benchmarks/ uses pytest-benchmark)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    seconds: float  # median wall time of one call
    stdev: float
    rounds: int


def measure(fns: Sequence[Callable[[], object]], *, min_time: float = 1.0, min_rounds: int = 3,
            max_rounds: int = 200, warmup: int = 1) -> list[Timing]:
    """Time ``fns`` (a baseline and its candidate) in interleaved rounds — one call of each per round — so
    that a shared machine's changing load falls on all of them alike instead of on whichever ran second.

    Each is called ``warmup`` times untimed, then rounds run until the slowest has had ``min_time`` seconds
    and ``min_rounds`` calls — except that calls slow enough to fill ``3 × min_time`` on their own stop there,
    so a one-minute baseline is not run three times over. Medians, robust to the odd scheduling hiccup."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    while len(times[0]) < max_rounds:
        rounds, spent = len(times[0]), max(sum(t) for t in times)
        if rounds and spent >= min_time and (rounds >= min_rounds or spent >= 3 * min_time):
            break
        for fn, ts in zip(fns, times, strict=True):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return [Timing(statistics.median(ts), statistics.stdev(ts) if len(ts) > 1 else 0.0, len(ts)) for ts in times]
