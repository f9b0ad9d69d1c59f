"""The streaming pipeline (medinfer.runtime.stream) under Engine.stream / predict_many: faults stay with their
series, results come in input order, memory is bounded by the queue, results come as series finish."""

from __future__ import annotations

import threading
import time
import weakref

import numpy as np
import pytest

from medinfer.engine import Engine
from medinfer.errors import InputError, SeriesError
from medinfer.io import Series


@pytest.fixture(scope="module")
def engine(tiny_exports):
    return Engine(tiny_exports("ddc_resnet101")["onnx"])


def _series(rng, n, size=(37, 29)):
    return Series.from_array(rng.uniform(-1000, 1000, (n, *size)).astype(np.float32))


def _damaged_folder(tmp_path, name="broken"):
    folder = tmp_path / name
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.dcm").write_bytes(b"DICM" * 10)
    return folder


@pytest.mark.parametrize("loaders", [1, 3])
@pytest.mark.parametrize("depth", [1, 4])
def test_broken_series_among_good_ones_give_results_for_all_in_order(engine, rng, tmp_path, loaders, depth):
    good = [_series(rng, n) for n in (5, 1, 70, 13)]
    broken = _damaged_folder(tmp_path)
    nan = rng.uniform(-1000, 1000, (3, 9, 9))
    nan[1, 2, 3] = np.nan
    sources = [good[0], broken, good[1], tmp_path / "missing", good[2], nan, good[3]]
    preds = engine.predict_many(sources, loaders=loaders, depth=depth)
    assert [p.status for p in preds] == ["ok", "error", "ok", "error", "ok", "error", "ok"]
    for pred, series in zip([preds[i] for i in (0, 2, 4, 6)], good, strict=True):
        alone = engine.predict(series)
        assert pred.uid == series.uid and pred.label == alone.label
        np.testing.assert_allclose(pred.slice_probabilities, alone.slice_probabilities, atol=1e-6)
    assert str(broken) in preds[1].error and preds[1].source == str(broken)
    assert {r for _, r in preds[1].skipped} and len(preds[1].skipped) == 3  # every file's reason
    assert "no such file or folder" in preds[3].error
    assert "non-finite" in preds[5].error
    for p in (preds[1], preds[3], preds[5]):
        assert p.label == "" and p.probabilities == {} and p.slice_probabilities.shape == (0, 4)
        assert p.to_dict()["status"] == "error"


def test_errors_raise_gives_the_first_failure(engine, rng, tmp_path):
    broken = _damaged_folder(tmp_path)
    with pytest.raises(SeriesError, match="broken"):
        engine.predict_many([_series(rng, 4), broken], errors="raise")
    with pytest.raises(SeriesError):
        engine.predict(broken)  # one series: raising is the default
    assert engine.predict(broken, errors="record").status == "error"
    with pytest.raises(InputError, match="errors must be one of"):
        engine.predict_many([_series(rng, 2)], errors="ignore")


class _SlowEngine:
    """The engine, slower: the loaders get ahead and must wait on the queue."""

    def __init__(self, engine, delay):
        self._engine, self._delay = engine, delay
        self.preprocess, self.preferred_batch = engine.preprocess, 8

    concurrency = 1

    def infer(self, batch):
        time.sleep(self._delay)
        return self._engine.infer(batch)

    def submit(self, batch):
        from medinfer.runtime.stream import completed

        return completed(self.infer, batch)


@pytest.mark.parametrize(("depth", "loaders"), [(1, 1), (2, 3), (5, 2)])
def test_the_loader_queue_never_holds_more_than_its_depth(engine, rng, depth, loaders):
    from medinfer.runtime.stream import Stream

    alive, most = set(), [0]
    lock = threading.Lock()

    def load(n):
        series = _series(rng, n, size=(16, 16))
        with lock:
            alive.add(id(series))
            most[0] = max(most[0], len(alive))
        weakref.finalize(series, alive.discard, id(series))
        return series

    slow = _SlowEngine(engine, 0.01)
    finish = engine._prediction  # noqa: SLF001  (the engine's own result maker)
    stream = Stream(slow, [3, 5, 1, 7, 2, 9, 4, 4, 6, 3, 8, 1] * 2, load=load, describe=lambda n: (str(n), ""),
                    finish=lambda o: finish(o, aggregate="mean", k=None), depth=depth, loaders=loaders)
    results = list(stream)
    assert sorted(i for i, _ in results) == list(range(24))
    assert all(p.ok for _, p in results)
    assert 1 <= stream.stats.max_queued <= depth
    # Series alive at once: the queue, one held by each loader waiting to put it, and the few being packed
    # (a batch of 8 rows spans at most 8 series).
    assert most[0] <= depth + loaders + 8
    assert stream.stats.slices == sum([3, 5, 1, 7, 2, 9, 4, 4, 6, 3, 8, 1] * 2)


def test_a_result_comes_as_soon_as_its_series_is_scored(engine, rng):
    first_result = threading.Event()

    def sources():
        yield _series(rng, 3)  # fewer slices than a batch: it must not wait for the next series to fill one
        assert first_result.wait(30), "the first series' result did not come before the next series was asked for"
        yield _series(rng, 2)

    got = []
    for index, _ in engine.stream(sources(), loaders=1):
        got.append(index)
        first_result.set()
    assert got == [0, 1]


def test_a_consumer_that_leaves_early_stops_the_threads(engine, rng):
    before = threading.active_count()
    stream = engine.stream((_series(rng, 4) for _ in range(50)), depth=2)
    next(stream)
    stream.close()
    deadline = time.monotonic() + 10
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before


def test_a_failing_source_iterator_ends_the_stream_with_its_error(engine, rng):
    def sources():
        yield _series(rng, 2)
        raise OSError("the archive's disk went away")

    with pytest.raises(OSError, match="disk went away"):
        list(engine.stream(sources()))


def test_an_engine_failure_fails_only_the_series_of_that_batch(engine, rng):
    from medinfer.runtime.stream import Stream

    class Flaky(_SlowEngine):
        calls = 0

        def infer(self, batch):
            Flaky.calls += 1
            if Flaky.calls == 2:
                raise RuntimeError("device lost")
            return self._engine.infer(batch)

    sizes = [8, 8, 8, 8]  # one batch per series
    stream = Stream(Flaky(engine, 0), [_series(rng, n) for n in sizes], load=lambda s: s,
                    describe=lambda s: ("", s.uid), finish=lambda o: engine._prediction(o, aggregate="mean", k=None),
                    loaders=1, depth=4)
    results = dict(stream)
    assert [results[i].status for i in range(4)] == ["ok", "error", "ok", "ok"]
    assert "RuntimeError: device lost" in results[1].error


class _AsyncEngine(_SlowEngine):
    """Runs ``concurrency`` batches at once on a thread pool, as OpenVINO's infer requests do; counts overlap."""

    def __init__(self, engine, delay, concurrency):
        from concurrent.futures import ThreadPoolExecutor

        super().__init__(engine, delay)
        self.concurrency, self.running, self.most = concurrency, 0, 0
        self._pool, self._count = ThreadPoolExecutor(concurrency), threading.Lock()

    def _run(self, batch):
        with self._count:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            return self.infer(batch)
        finally:
            with self._count:
                self.running -= 1

    def submit(self, batch):
        return self._pool.submit(self._run, batch.copy())


@pytest.mark.parametrize("concurrency", [1, 2, 3])
def test_batches_in_flight_give_the_same_predictions(engine, rng, concurrency):
    from medinfer.runtime.stream import Stream

    series = [_series(rng, n) for n in (5, 19, 8, 1, 30, 13)]
    fake = _AsyncEngine(engine, 0.02, concurrency)
    stream = Stream(fake, series, load=lambda s: s, describe=lambda s: ("", s.uid),
                    finish=lambda o: engine._prediction(o, aggregate="mean", k=None), loaders=2, depth=4)
    results = dict(stream)
    expected = engine.predict_many(series, hint="latency")
    assert 1 <= fake.most <= concurrency and (concurrency == 1 or fake.most > 1)
    for i, want in enumerate(expected):
        np.testing.assert_allclose(results[i].slice_probabilities, want.slice_probabilities, atol=1e-6)
    assert stream.stats.slices == sum(len(s) for s in series)
