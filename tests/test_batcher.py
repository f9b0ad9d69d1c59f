"""SeriesBatcher: the native batcher against the numpy reference, bookkeeping, aggregation, buffer lifetime."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from medinfer import _ext
from medinfer.backends import BackendUnavailable
from medinfer.errors import InputError
from medinfer.hu import to_hu_numpy
from medinfer.io.series import Series
from medinfer.preprocess import Preprocess
from medinfer.runtime import SeriesBatcher

# Series sizes mixing odd shapes, a single slice and a single pixel, all in one run.
SERIES_SHAPES = [(3, 37, 53), (1, 13, 11), (5, 64, 65), (2, 1, 1)]
DTYPES = ["int16", "uint16", "uint8", "int32", "float32", "float64"]
PREPROCESS = {
    "lung-shrink": Preprocess(size=(19, 22), window=(-600, 1500)),
    "grow-3ch": Preprocess(size=(70, 41), channels=3, clip=(-1000, 400), out_range=(0, 1)),
    "meanstd-noaa": Preprocess(size=(7, 5), normalize="mean_std", mean=-300, std=420, antialias=False),
    "raw-hu": Preprocess(size=(16, 16), normalize="none"),
}


def _series(rng, shape, dtype) -> Series:
    dt = np.dtype(dtype)
    if dt.kind == "f":
        pixels = rng.uniform(-1500, 3000, shape).astype(dt)
    else:
        info = np.iinfo(dt)
        pixels = rng.integers(max(info.min, -2048), min(info.max, 4095), shape, endpoint=True).astype(dt)
    n = shape[0]
    return Series(pixels=pixels, slopes=rng.uniform(0.5, 2.0, n), intercepts=rng.uniform(-1100, 50, n),
                  spacing=(1, 1, 1), positions=np.zeros((n, 3)), files=[""] * n, uid=f"s{dtype}{shape}")


def _reference(series: list[Series], pp: Preprocess) -> np.ndarray:
    return np.concatenate([pp.apply(to_hu_numpy(s.pixels, s.slopes, s.intercepts)) for s in series])


def _collect(run) -> tuple[np.ndarray, list]:
    rows, batches = [], []
    for batch in run:
        rows.append(batch.data[: batch.count].copy())
        batches.append(batch)
    return np.concatenate(rows), batches


def _assert_close(got: np.ndarray, ref: np.ndarray) -> None:
    # float32 arithmetic against the float64 reference: within 1e-5 absolute for outputs of magnitude up to 1
    # (every window-normalised input); for unwindowed HU outputs (up to ~3000) within 1e-5 of the slice's
    # largest magnitude, the scale float32 rounding errors are relative to.
    scale = np.maximum(1.0, np.abs(ref).max(axis=tuple(range(1, ref.ndim)), keepdims=True))
    err = np.abs(got.astype(np.float64) - ref) / scale
    assert err.max() <= 1e-5, f"max error {err.max():.3g} (relative to max(1, |slice|))"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pp_name", list(PREPROCESS))
@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_native_matches_reference(native, rng, dtype, pp_name, batch_size):
    pp = PREPROCESS[pp_name]
    series = [_series(rng, shape, dtype) for shape in SERIES_SHAPES]
    got, batches = _collect(SeriesBatcher(pp, batch_size, backend="native").run(series))
    _assert_close(got, _reference(series, pp))
    for b in batches:
        assert b.data.shape == (batch_size, pp.channels, *pp.size) and b.data.dtype == np.float32
        assert b.data.flags.c_contiguous
        assert not b.data[b.count :].any(), "padding rows must be zero"


@pytest.mark.parametrize("pp_name", ["lung-shrink", "grow-3ch"])
def test_numpy_backend_is_the_reference(rng, pp_name):
    pp = PREPROCESS[pp_name]
    series = [_series(rng, shape, "int16") for shape in SERIES_SHAPES]
    got, _ = _collect(SeriesBatcher(pp, 3, backend="numpy").run(series))
    np.testing.assert_array_equal(got, _reference(series, pp))


def test_float16_output_is_round_to_nearest_even(native, rng):
    # Identity preprocessing, so the batcher's float16 output is the float32 input converted: compare bit for
    # bit with numpy, over the whole float16 range, subnormals, overflow to inf and exact ties.
    values = np.concatenate([
        rng.uniform(-70000, 70000, 3000),
        rng.uniform(-1e-4, 1e-4, 3000),
        np.ldexp(rng.integers(1, 2**11, 1000), rng.integers(-35, 5, 1000)) + np.ldexp(1.0, -36),
        (np.arange(2048) + 0.5) * 2.0**-24,  # ties between float16 subnormals
        np.float16(np.arange(-2048, 2048) / 7).astype(np.float64) + 2.0**-13,
        [0.0, -0.0, 65504, 65519.99, 65520, -65520, 6.1e-5, 5.96e-8, 2.98e-8, 1e30, -1e30],
    ]).astype(np.float32)
    pixels = np.resize(values, (3, 33, values.size // 99 + 1)).astype(np.float32)
    pp = Preprocess(size=pixels.shape[1:], normalize="none")
    series = Series.from_array(pixels, check_hu=False)
    got, _ = _collect(SeriesBatcher(pp, 2, dtype="float16", backend="native").run([series]))
    with np.errstate(over="ignore"):
        expected = pp.apply(pixels).astype(np.float16)  # the reference: float32 values, numpy's conversion
    np.testing.assert_array_equal(got.view(np.uint16), expected.view(np.uint16))


def test_float16_output_matches_reference(native, rng):
    pp = PREPROCESS["lung-shrink"]
    series = [_series(rng, shape, "int16") for shape in SERIES_SHAPES]
    got, batches = _collect(SeriesBatcher(pp, 5, dtype="float16", backend="native").run(series))
    assert batches[0].data.dtype == np.float16
    ref = _reference(series, pp)
    # float16 of two float32 values within 1e-5 differ by at most one float16 step.
    np.testing.assert_allclose(got.astype(np.float64), ref, rtol=2**-10, atol=2**-24)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_thread_count_does_not_change_results(native, rng, threads):
    pp = PREPROCESS["lung-shrink"]
    series = [_series(rng, (9, 40, 33), "int16"), _series(rng, (4, 20, 21), "uint16")]
    one, _ = _collect(SeriesBatcher(pp, 4, threads=1).run(series))
    many, _ = _collect(SeriesBatcher(pp, 4, threads=threads).run(series))
    np.testing.assert_array_equal(one, many)


@pytest.mark.parametrize("backend", ["native", "numpy"])
@pytest.mark.parametrize("batch_size", [1, 3, 7, 50])
def test_bookkeeping_covers_every_slice_once(rng, backend, batch_size):
    if backend == "native" and _ext.native() is None:
        pytest.skip(_ext.unavailable_reason())
    lengths = [4, 1, 9, 2]
    series = [_series(rng, (n, 5, 6), "int16") for n in lengths]
    run = SeriesBatcher(Preprocess(size=(3, 3), window=(0, 100)), batch_size, backend=backend).run(series)
    pairs = []
    for i, batch in enumerate(run):
        assert batch.index == i and batch.count == min(batch_size, sum(lengths) - i * batch_size)
        assert batch.series_index.dtype == np.int64 and batch.slice_index.shape == (batch.count,)
        pairs += list(zip(batch.series_index.tolist(), batch.slice_index.tolist(), strict=True))
    assert pairs == [(s, k) for s, n in enumerate(lengths) for k in range(n)]
    assert run.num_batches == -(-sum(lengths) // batch_size) == i + 1
    stats = run.stats
    assert stats.batches == run.num_batches and stats.slices == sum(lengths)
    assert stats.prepare_seconds > 0 and stats.wait_seconds >= 0


def _scored_run(rng, lengths, batch_size, k_classes=3, backend=None):
    series = [_series(rng, (n, 4, 4), "int16") for n in lengths]
    truth = [rng.uniform(0, 1, (n, k_classes)) for n in lengths]
    run = SeriesBatcher(Preprocess(size=(2, 2), window=(0, 10)), batch_size, backend=backend).run(series)
    for batch in run:
        scores = np.stack([truth[s][k] for s, k in zip(batch.series_index, batch.slice_index, strict=True)])
        run.record(batch, scores)
    return run, truth


def test_results_fold_scores_per_series(rng):
    run, truth = _scored_run(rng, [5, 1, 12, 3], batch_size=4)
    for aggregate, fold in [("mean", lambda t: t.mean(0)), ("max", lambda t: t.max(0))]:
        for res, t in zip(run.results(aggregate), truth, strict=True):
            np.testing.assert_array_equal(res.slice_scores, t)
            np.testing.assert_allclose(res.score, fold(t), rtol=1e-12)
            assert res.aggregate == aggregate
    for k in (1, 2, 50):
        for res, t in zip(run.results("topk", k=k), truth, strict=True):
            np.testing.assert_allclose(res.score, np.sort(t, 0)[::-1][:k].mean(0), rtol=1e-12)


def test_record_accepts_full_padded_batches_and_1d_scores(rng):
    series = [_series(rng, (3, 4, 4), "int16")]
    run = SeriesBatcher(Preprocess(size=(2, 2), window=(0, 10)), 5).run(series)
    batch = next(run)
    run.record(batch, np.arange(5.0))  # engine output for all 5 rows, one class
    np.testing.assert_array_equal(run.results()[0].slice_scores, [[0.0], [1.0], [2.0]])


def test_record_and_results_refuse_misuse(rng):
    series = [_series(rng, (3, 4, 4), "int16"), _series(rng, (2, 4, 4), "int16")]
    run = SeriesBatcher(Preprocess(size=(2, 2), window=(0, 10)), 2).run(series)
    first, second = next(run), next(run)
    with pytest.raises(InputError, match=r"shape \(2, K\)"):
        run.record(first, np.zeros((3, 2)))
    with pytest.raises(InputError, match="NaN"):
        run.record(first, np.full((2, 2), np.nan))
    with pytest.raises(InputError, match="real numbers"):
        run.record(first, np.array([["a", "b"], ["c", "d"]]))
    run.record(first, np.zeros((2, 2)))
    with pytest.raises(InputError, match="recorded already"):
        run.record(first, np.zeros((2, 2)))
    with pytest.raises(InputError, match="had 2"):
        run.record(second, np.zeros((2, 3)))
    with pytest.raises(InputError, match=r"batch\(es\) \[1, 2\] have no scores"):
        run.results()
    with pytest.raises(InputError, match="aggregate must be"):
        run.results("median")
    with pytest.raises(InputError, match="positive integer k"):
        run.results("topk")
    with pytest.raises(InputError, match="k applies"):
        run.results("mean", k=3)
    run.close()


def test_held_batches_are_never_overwritten(native, rng):
    pp = PREPROCESS["lung-shrink"]
    series = [_series(rng, (23, 30, 30), "int16")]
    ref = _reference(series, pp)
    run = SeriesBatcher(pp, 2, backend="native").run(series)
    first = next(run)
    kept = [first] + list(run)  # every batch held at once: each must keep its own data
    for b in kept:
        _assert_close(b.data[: b.count], ref[2 * b.index : 2 * b.index + b.count])
    views = [b.data for b in kept]
    del run, kept, first
    gc.collect()
    for i, v in enumerate(views):  # still valid after the run is gone
        _assert_close(v[: min(2, 23 - 2 * i)], ref[2 * i : 2 * i + 2])


def test_dropped_batches_are_recycled_and_stay_correct(native, rng):
    pp = PREPROCESS["lung-shrink"]
    series = [_series(rng, (41, 30, 30), "int16")]
    ref = _reference(series, pp)
    buffers = set()
    with SeriesBatcher(pp, 3, backend="native").run(series) as run:
        for batch in run:
            buffers.add(batch.data.ctypes.data)
            _assert_close(batch.data[: batch.count], ref[3 * batch.index : 3 * batch.index + batch.count])
    assert len(buffers) <= 4, "steady state needs a few buffers, not one per batch"


@pytest.mark.parametrize("backend", ["native", "numpy"])
def test_closing_early_stops_the_run(rng, backend):
    if backend == "native" and _ext.native() is None:
        pytest.skip(_ext.unavailable_reason())
    series = [_series(rng, (30, 64, 64), "int16")]
    with SeriesBatcher(PREPROCESS["lung-shrink"], 2, backend=backend).run(series) as run:
        next(run)
    with pytest.raises(StopIteration):
        next(run)
    run = SeriesBatcher(PREPROCESS["lung-shrink"], 2, backend=backend).run(series)
    next(run)
    del run  # dropped while the next batch is being prepared
    gc.collect()


def test_display_series_are_spread_over_the_window(rng):
    pixels = rng.integers(0, 256, (3, 16, 16)).astype(np.uint8)
    series = Series(pixels=pixels, slopes=np.ones(3), intercepts=np.zeros(3), spacing=(1, 1, 1),
                    positions=np.zeros((3, 3)), files=[""] * 3, uid="jpg", units="display")
    pp = Preprocess(size=(16, 16), window=(-600, 1500))
    got, _ = _collect(SeriesBatcher(pp, 2).run(series))
    np.testing.assert_allclose(got[:, 0], pixels / 127.5 - 1, rtol=0, atol=1e-5)


def test_arrays_are_taken_as_hu(rng):
    hu = rng.uniform(-1000, 1000, (4, 9, 9)).astype(np.float32)
    pp = PREPROCESS["lung-shrink"]
    got, _ = _collect(SeriesBatcher(pp, 3).run(hu))
    _assert_close(got, pp.apply(hu))


def test_empty_run():
    run = SeriesBatcher(PREPROCESS["lung-shrink"], 4).run([])
    assert list(run) == [] and run.results() == [] and run.num_batches == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"dtype": "int8"}, "dtype"),
        ({"dtype": "bogus"}, "dtype"),
        ({"threads": 0}, "threads"),
        ({"backend": "cuda"}, "backend"),
        ({"preprocess": {"size": (4, 4)}}, "Preprocess"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    args = {"preprocess": PREPROCESS["lung-shrink"], "batch_size": 4, **kwargs}
    with pytest.raises(InputError, match=message):
        SeriesBatcher(args.pop("preprocess"), args.pop("batch_size"), **args)


def test_bad_series_are_named():
    with pytest.raises(InputError, match="series 1: expected a Series"):
        SeriesBatcher(PREPROCESS["lung-shrink"], 4).run([np.zeros((1, 4, 4)), "scan.dcm"])


def test_explicit_native_without_extension_fails_loudly(monkeypatch):
    monkeypatch.setattr(_ext, "native", lambda: None)
    monkeypatch.setattr(_ext, "unavailable_reason", lambda: "hidden by the test")
    with pytest.raises(BackendUnavailable, match="hidden by the test"):
        SeriesBatcher(PREPROCESS["lung-shrink"], 4, backend="native")
    assert SeriesBatcher(PREPROCESS["lung-shrink"], 4).backend == "numpy"


def test_native_binding_checks_its_buffers(native):
    params = dict(out_h=4, out_w=4, channels=1, lo=-1.0, hi=1.0, scale=1.0, offset=0.0, antialias=True)
    one = np.ones(1)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        native.BatchRun(params, 2, "float32", 0, [(np.zeros((4, 4), np.int16), one, one)])
    with pytest.raises(ValueError, match="C-contiguous"):
        native.BatchRun(params, 2, "float32", 0, [(np.zeros((2, 4, 8), np.int16)[..., ::2], one, one)])
    with pytest.raises(ValueError, match="big-endian"):
        native.BatchRun(params, 2, "float32", 0, [(np.zeros((2, 4, 4), ">i2"), one, one)])
    with pytest.raises(ValueError, match="one per slice"):
        native.BatchRun(params, 2, "float32", 0, [(np.zeros((2, 4, 4), np.int16), np.ones(3), np.ones(3))])
    with pytest.raises(ValueError, match="dtype"):
        native.BatchRun(params, 2, "bfloat16", 0, [])
    with pytest.raises(ValueError, match="batch_size"):
        native.BatchRun(params, 0, "float32", 0, [])
