"""A small wall-clock timer for ``medinfer bench`` (the pytest suite in benchmarks/ uses pytest-benchmark)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    seconds: float  # median wall time of one call
    stdev: float
    rounds: int


def measure(fn: Callable[[], object], *, min_time: float = 1.0, min_rounds: int = 3, max_rounds: int = 200,
            warmup: int = 1) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then at least ``min_time`` seconds and ``min_rounds`` times — except
    that calls slow enough to fill ``3 × min_time`` on their own stop there, so a one-minute baseline is not
    run three times over. The median is robust to the odd scheduling hiccup on a shared machine."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_rounds:
        elapsed = time.perf_counter() - start
        if elapsed >= min_time and (len(times) >= min_rounds or elapsed >= 3 * min_time):
            break
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return Timing(statistics.median(times), statistics.stdev(times) if len(times) > 1 else 0.0, len(times))
