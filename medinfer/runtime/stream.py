"""Streaming inference: series in, one prediction per series out, as soon as its last slice is scored.

::

    loader threads --(<= depth loaded series)--> packer thread --(prepared batches)--> caller: engine.submit

Loader threads read series from the sources (in any order; each result carries its input's index) into a
bounded queue. The packer cuts the loaded series' slices into full batches — a batch may hold the end of one
series and the start of the next — has the series batcher (C++, GIL released) prepare each, and hands it on
through a second bounded queue, so loading and preparation overlap inference. The caller's thread submits
batches to the engine — up to ``concurrency`` at once: engines with asynchronous infer requests (OpenVINO's
throughput streams) run several while the next are prepared — scatters the scores back to their series and
folds a series as soon as all its slices are in; the packer drops its reference to a series' pixels once they
are batched. Peak memory is therefore bounded by ``depth + loaders`` loaded series, the few being packed and
``concurrency + 1`` batches — not by how many series there are.

A source that cannot be loaded, a batch that cannot be prepared or scored, fails only its own series: they
come out as predictions with ``status="error"`` and the reason (``errors="record"``), or the first one is
raised (``errors="raise"``). Everything else is classified.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medinfer.errors import InputError, MedinferError

ERRORS = ("record", "raise")
DEFAULT_LOADERS = 2
DEFAULT_DEPTH = 4
_POLL_S = 0.1  # how often a blocked thread looks whether the stream was stopped


@dataclass
class SeriesOutcome:
    """What the stream knows about one series: everything a prediction reports except the scores."""

    index: int  # position of its source in the input
    source: str  # printable name of the source
    uid: str = ""
    files: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    slices: int = 0
    started: float = 0.0  # perf_counter when its loading began
    load_s: float = 0.0
    prepare_s: float = 0.0  # its share of batch preparation
    infer_s: float = 0.0  # its share of the engine's time
    error: BaseException | None = None
    scores: np.ndarray | None = None  # (slices, K), filled batch by batch
    scored: int = 0
    reported: bool = False  # its prediction (or failure) was handed out


@dataclass
class StreamStats:
    """Counters of one stream, readable while it runs (tests check the queue bound with ``max_queued``)."""

    depth: int
    loaders: int
    loaded: int = 0
    failed: int = 0
    done: int = 0
    batches: int = 0
    slices: int = 0
    max_queued: int = 0  # the most loaded series ever waiting for the packer


class _Stopped(Exception):
    """The consumer went away; a producer thread ends quietly."""


class _Channel:
    """A bounded queue whose blocking calls give up (raising _Stopped) once the stream is stopped."""

    def __init__(self, size: int, stop: threading.Event):
        self.queue: queue.Queue = queue.Queue(size)
        self._stop = stop

    def put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self.queue.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue
        raise _Stopped

    def get(self, timeout: float | None = None):
        """The next item; with ``timeout``, _EMPTY when none came in that time."""
        waited = 0.0
        while True:
            try:
                return self.queue.get(timeout=_POLL_S if timeout is None else min(_POLL_S, timeout - waited))
            except queue.Empty:
                if self._stop.is_set():
                    raise _Stopped from None
                waited += _POLL_S
                if timeout is not None and waited >= timeout:
                    return _EMPTY


_DONE = object()  # a loader has no more sources
_EMPTY = object()  # nothing came in time
_HURRY_S = 0.005  # how often the packer, waiting for more slices, checks whether the engine is idle


@dataclass
class _Packed:
    """A prepared batch and where its rows belong: (series outcome, first slice, count) per piece."""

    data: np.ndarray
    count: int
    pieces: list[tuple[SeriesOutcome, int, int]]
    prepare_s: float


@dataclass
class _InFlight:
    """A batch submitted to the engine, and when it started and finished."""

    packed: _Packed
    future: Future
    started: float
    finished: float = 0.0


class Stream:
    """One pass of an engine over many sources; iterate for ``(index, prediction)`` in completion order.

    ``load(source) -> Series`` reads a source (it runs on the loader threads); ``describe(source) -> (source
    name, uid)`` names it for results, errors included. ``finish(outcome)`` makes the prediction of a finished
    or failed series. ``submit(batch) -> Future`` runs a batch (default ``engine.submit``), ``concurrency``
    batches at most at once (default ``engine.concurrency``).
    """

    def __init__(self, engine, sources: Iterable, *, load: Callable[[Any], Any],
                 describe: Callable[[Any], tuple[str, str]], finish: Callable[[SeriesOutcome], Any],
                 errors: str = "record", loaders: int | None = None, depth: int | None = None,
                 submit: Callable[[np.ndarray], Future] | None = None, concurrency: int | None = None):
        from medinfer.runtime.batcher import SeriesBatcher

        if errors not in ERRORS:
            raise InputError(f"errors must be one of {', '.join(ERRORS)}, got {errors!r}")
        loaders = DEFAULT_LOADERS if loaders is None else loaders
        depth = DEFAULT_DEPTH if depth is None else depth
        for name, value in (("loaders", loaders), ("depth", depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        self._submit = submit or engine.submit
        self._concurrency = concurrency or engine.concurrency
        self._batcher = SeriesBatcher(engine.preprocess, engine.preferred_batch)
        self._sources = iter(enumerate(sources))
        self._sources_lock = threading.Lock()
        self._load, self._describe, self._finish = load, describe, finish
        self._raise = errors == "raise"
        self.stats = StreamStats(depth=depth, loaders=loaders)
        self._stats_lock = threading.Lock()
        self._stop = threading.Event()
        self._loaded = _Channel(depth, self._stop)
        self._ready = _Channel(self._concurrency + 1, self._stop)
        self._threads = [threading.Thread(target=self._loader, name=f"medinfer-loader-{i}", daemon=True)
                         for i in range(loaders)]
        self._threads.append(threading.Thread(target=self._packer, name="medinfer-packer", daemon=True))
        self._started = False
        self._crash: BaseException | None = None
        self._idle = threading.Event()  # the caller is waiting for a batch

    # Loader threads --------------------------------------------------------------------------------------
    def _next_source(self):
        with self._sources_lock:  # the sources may be a generator (archive discovery): one thread at a time
            return next(self._sources, None)

    def _loader(self) -> None:
        try:
            while (item := self._next_source()) is not None:
                index, src = item
                source, uid = self._describe(src)
                outcome = SeriesOutcome(index=index, source=source, uid=uid, started=time.perf_counter())
                try:
                    series = self._load(src)
                except Exception as exc:  # the series fails; the stream goes on
                    series, outcome.error = None, exc
                    skipped = getattr(exc, "skipped", None)
                    outcome.skipped = list(skipped) if skipped else []
                outcome.load_s = time.perf_counter() - outcome.started
                if series is not None:
                    outcome.uid, outcome.slices = series.uid, len(series)
                    outcome.files, outcome.skipped = list(series.files), list(series.skipped)
                    outcome.warnings = list(series.warnings)
                self._loaded.put((outcome, series))
                with self._stats_lock:
                    self.stats.loaded += 1
                    self.stats.max_queued = max(self.stats.max_queued, self._loaded.queue.qsize())
            self._loaded.put(_DONE)
        except _Stopped:
            pass
        except BaseException as exc:  # the sources themselves failed (e.g. discovery): end the stream with it
            self._stop_with(exc)

    # Packer thread ---------------------------------------------------------------------------------------
    def _packer(self) -> None:
        try:
            pending: deque[list] = deque()  # [outcome, series, next slice], in arrival order
            running = len(self._threads) - 1
            size = self._batcher.batch_size
            while True:
                rows = sum(len(s) - start for _, s, start in pending)
                while rows < size and running:
                    item = self._loaded.get(timeout=_HURRY_S if pending else None)
                    if item is _EMPTY:
                        if self._idle.is_set():  # never keep the engine waiting for a fuller batch
                            break
                        continue
                    if item is _DONE:
                        running -= 1
                        continue
                    outcome, series = item
                    if series is None:
                        self._ready.put(outcome)  # failed to load: straight to the consumer
                        continue
                    pending.append([outcome, series, 0])
                    rows += len(series)
                if not pending:
                    break
                self._ready.put(self._pack(pending, size))
            self._ready.put(_DONE)
        except _Stopped:
            pass
        except BaseException as exc:
            self._stop_with(exc)

    def _pack(self, pending: deque, size: int) -> _Packed:
        """The next batch from the front of ``pending``; fully batched series leave it (and their pixels go)."""
        series, ranges, pieces, rows = [], [], [], 0
        for entry in pending:
            outcome, s, start = entry
            take = min(size - rows, len(s) - start)
            series.append(s)
            ranges.append((start, start + take))
            pieces.append((outcome, start, take))
            entry[2] += take
            rows += take
            if rows == size:
                break
        while pending and pending[0][2] == len(pending[0][1]):
            pending.popleft()
        t = time.perf_counter()
        try:
            with self._batcher.run(series, rows=ranges) as run:
                batch = next(run)
        except Exception as exc:
            # The batch cannot be prepared: its series fail, the rest of them is dropped.
            failed = {id(o) for o, _, _ in pieces}
            for outcome, _, _ in pieces:
                outcome.error = exc
            for entry in [e for e in pending if id(e[0]) in failed]:
                pending.remove(entry)
            return _Packed(np.empty(0), 0, pieces, 0.0)
        return _Packed(batch.data, batch.count, pieces, time.perf_counter() - t)

    def _stop_with(self, exc: BaseException) -> None:
        self._crash = exc
        self._stop.set()
        with contextlib.suppress(queue.Full):  # the consumer polls the stop flag anyway
            self._ready.queue.put_nowait(_DONE)

    # The caller's thread ---------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple[int, Any]]:
        if self._started:
            raise InputError("a Stream runs once; make a new one")
        self._started = True
        for t in self._threads:
            t.start()
        try:
            yield from self._consume()
        finally:
            self.close()

    def _consume(self) -> Iterator[tuple[int, Any]]:
        inflight: deque[_InFlight] = deque()
        packing = True
        while packing or inflight:
            if inflight and (inflight[0].future.done() or not packing or len(inflight) >= self._concurrency):
                yield from self._score(inflight.popleft())
                continue
            item = self._next_ready(wait=not inflight)
            if item is _EMPTY:  # batches are in flight and none is ready: look at the oldest again
                with contextlib.suppress(Exception):  # its failure is reported by _score
                    inflight[0].future.exception(timeout=_HURRY_S)
            elif item is _DONE:
                if self._crash is not None:
                    raise self._crash
                packing = False
            elif isinstance(item, SeriesOutcome):  # it failed to load
                yield self._failed(item)
            elif item.count == 0:  # preparation failed; its series carry the error
                yield from self._fail_all(item.pieces)
            else:
                inflight.append(self._start(item))

    def _next_ready(self, wait: bool):
        """The next prepared batch (or failure, or _DONE); without ``wait``, _EMPTY unless one is ready now."""
        self._idle.set()  # the engine has room: the packer should not hold back a partial batch
        try:
            return self._ready.get(timeout=None if wait else _HURRY_S)
        except _Stopped:
            return _DONE
        finally:
            self._idle.clear()

    def _start(self, packed: _Packed) -> _InFlight:
        started = time.perf_counter()
        try:
            future = self._submit(packed.data[: packed.count])
        except Exception as exc:  # the engine refused this batch: its series fail
            future = Future()
            future.set_exception(exc)
        flight = _InFlight(packed, future, started)
        future.add_done_callback(lambda _: setattr(flight, "finished", time.perf_counter()))
        return flight

    def _score(self, flight: _InFlight) -> Iterator[tuple[int, Any]]:
        packed = flight.packed
        try:
            scores = flight.future.result()
        except Exception as exc:  # the engine failed on this batch: its series fail
            for outcome, _, _ in packed.pieces:
                outcome.error = outcome.error or exc
            yield from self._fail_all(packed.pieces)
            return
        infer_s = (flight.finished or time.perf_counter()) - flight.started
        with self._stats_lock:
            self.stats.batches += 1
            self.stats.slices += packed.count
        row = 0
        for outcome, start, n in packed.pieces:
            if outcome.error is None:
                share = n / packed.count
                if outcome.scores is None:
                    outcome.scores = np.zeros((outcome.slices, scores.shape[1]), np.float64)
                outcome.scores[start : start + n] = scores[row : row + n]
                outcome.scored += n
                outcome.prepare_s += packed.prepare_s * share
                outcome.infer_s += infer_s * share
                if outcome.scored == outcome.slices:
                    yield self._done(outcome)
            elif not outcome.reported:  # failed in an earlier batch's preparation, after this one was packed
                yield self._failed(outcome)
            row += n

    def _fail_all(self, pieces) -> Iterator[tuple[int, Any]]:
        for outcome, _, _ in pieces:
            if not outcome.reported:
                yield self._failed(outcome)

    def _failed(self, outcome: SeriesOutcome) -> tuple[int, Any]:
        outcome.reported = True
        if self._raise:
            raise outcome.error
        with self._stats_lock:
            self.stats.failed += 1
        outcome.scores = None
        return outcome.index, self._finish(outcome)

    def _done(self, outcome: SeriesOutcome) -> tuple[int, Any]:
        outcome.reported = True
        with self._stats_lock:
            self.stats.done += 1
        result = self._finish(outcome)
        outcome.scores = None
        return outcome.index, result

    def close(self) -> None:
        """Stops the threads (a consumer that leaves early, or an error); safe to call twice."""
        self._stop.set()
        for ch in (self._loaded, self._ready):  # unblock producers waiting on a full queue
            while True:
                try:
                    ch.queue.get_nowait()
                except queue.Empty:
                    break
        for t in self._threads:
            if t.is_alive() and t is not threading.current_thread():
                t.join()


def completed(infer: Callable[[np.ndarray], np.ndarray], batch: np.ndarray) -> Future:
    """``infer(batch)`` run now, as a finished future (how engines without asynchronous requests submit)."""
    future: Future = Future()
    try:
        future.set_result(infer(batch))
    except Exception as exc:
        future.set_exception(exc)
    return future


def error_message(outcome: SeriesOutcome) -> str:
    """The reason a series failed, naming its source: medinfer's own errors say what was wrong with the input;
    anything else is reported with its type (a bug or a runtime failure, not the input's fault)."""
    exc = outcome.error
    text = str(exc) if isinstance(exc, MedinferError) else f"{type(exc).__name__}: {exc}"
    return text if not outcome.source or outcome.source in text else f"{outcome.source}: {text}"
