"""HU conversion of a 64-slice 512×512 int16 series: native thread pool vs the numpy reference."""

from __future__ import annotations

import numpy as np
import pytest

from medinfer import _ext, hu

SLICES, SIZE = 64, 512


@pytest.fixture(scope="module")
def series():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 4096, (SLICES, SIZE, SIZE), dtype=np.int16)
    return pixels, np.ones(SLICES), np.full(SLICES, -1024.0)


def test_numpy_reference(benchmark, series):
    benchmark.group = "hu: 64×512² int16"
    benchmark.extra_info.update(role="baseline", label="numpy reference", items=SLICES)
    benchmark(hu.to_hu_numpy, *series)


def test_native(benchmark, series):
    if _ext.native() is None:
        pytest.skip(_ext.unavailable_reason())
    out = np.empty(series[0].shape, np.float32)
    benchmark.group = "hu: 64×512² int16"
    benchmark.extra_info.update(role="candidate", label=f"native, {_ext.native().default_threads()} threads",
                                items=SLICES)
    benchmark(hu.to_hu, *series, out=out)
