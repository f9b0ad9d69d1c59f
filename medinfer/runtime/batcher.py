"""``SeriesBatcher``: slices of many series -> fixed-size model-input batches -> per-series scores.

The slices of all series are concatenated (series 0 first, each in anatomical order) and cut into batches
of ``batch_size`` rows, so a batch may hold the end of one series and the start of the next; the last
batch is zero-padded and says how many rows are real (``count``). ``Batch.series_index`` and
``slice_index`` say where each row came from; :meth:`BatchRun.record` takes the engine's scores for a
batch and :meth:`BatchRun.results` folds them into one result per series (mean of the slice probabilities
as in the Res-Dense Net paper, or max, or the mean of the top k).

Two backends produce the same batches: ``"native"`` (``medinfer._C.BatchRun``: C++ on the thread pool, the
GIL released) and ``"numpy"`` (:meth:`medinfer.preprocess.Preprocess.apply`, the reference). Both prepare
batch k + 1 in the background while the caller holds batch k::

    batcher = SeriesBatcher(spec.preprocess, batch_size=32)
    with batcher.run([series_a, series_b]) as run:
        for batch in run:
            run.record(batch, engine(batch.data)[: batch.count])
        results = run.results("mean")

A batch's ``data`` stays valid, and unchanged, for as long as the caller references it: the native
backend recycles an output array only once nothing else holds it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from medinfer import _ext
from medinfer.backends import BackendUnavailable
from medinfer.errors import InputError
from medinfer.hu import to_hu_numpy
from medinfer.io.series import Series
from medinfer.preprocess import Preprocess

BACKENDS = ("native", "numpy")
DTYPES = ("float32", "float16")
AGGREGATES = ("mean", "max", "topk")


@dataclass
class Batch:
    """One model input batch. Rows ``>= count`` are zero padding."""

    data: np.ndarray  # (batch_size, C, H, W) float32 or float16, C-contiguous
    count: int
    series_index: np.ndarray  # (count,) int64: which series each row comes from
    slice_index: np.ndarray  # (count,) int64: which slice of it
    index: int = 0  # position of this batch in its run


@dataclass
class SeriesScores:
    """The folded result of one series."""

    slice_scores: np.ndarray  # (N, K) in slice order
    score: np.ndarray  # (K,) aggregated over the slices
    aggregate: str = "mean"


@dataclass(frozen=True)
class BatchStats:
    prepare_seconds: float  # spent preparing batches (on the producer side)
    wait_seconds: float  # the consumer spent blocked waiting for a batch
    batches: int  # handed out so far
    slices: int  # real rows handed out so far


def _series_inputs(items: Sequence[Series | np.ndarray], preprocess: Preprocess):
    """(pixels, slopes, intercepts) per series, with 8-bit display series spread over the window."""
    inputs = []
    for i, item in enumerate(items):
        if isinstance(item, np.ndarray):
            item = Series.from_array(item, uid=f"array {i}")  # a uid, so the volume is not hashed for one
        elif not isinstance(item, Series):
            raise InputError(f"series {i}: expected a Series or an (N, H, W) HU array, got {type(item).__name__}")
        slopes, intercepts = item.slopes, item.intercepts
        if item.units == "display":
            ds, di = preprocess.display_rescale()
            slopes, intercepts = slopes * ds, intercepts * ds + di
        inputs.append((item.pixels, slopes, intercepts))  # Series keeps them contiguous float64
    return inputs


class _NumpyProducer:
    """The reference backend: Preprocess.apply on a background thread, one batch ahead."""

    def __init__(self, preprocess: Preprocess, batch_size: int, dtype: str, inputs, offsets: np.ndarray):
        self._pp, self._bs, self._dtype = preprocess, batch_size, np.dtype(dtype)
        self._inputs, self._offsets = inputs, offsets
        self._n = math.ceil(int(offsets[-1]) / batch_size)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="medinfer-batcher")
        self._futures: dict[int, Future] = {}
        self._next = 0
        self.prepare_seconds = self.wait_seconds = 0.0

    def _prepare(self, index: int):
        t0 = time.perf_counter()
        first = index * self._bs
        count = min(self._bs, int(self._offsets[-1]) - first)
        out = np.zeros((self._bs, self._pp.channels, *self._pp.size), self._dtype)
        row = 0
        while row < count:
            s = int(np.searchsorted(self._offsets, first + row, side="right")) - 1
            lo = first + row - int(self._offsets[s])
            hi = min(lo + count - row, int(self._offsets[s + 1] - self._offsets[s]))
            pixels, slopes, intercepts = self._inputs[s]
            hu = to_hu_numpy(pixels[lo:hi], slopes[lo:hi], intercepts[lo:hi])
            out[row : row + hi - lo] = self._pp.apply(hu)
            row += hi - lo
        return out, count, time.perf_counter() - t0

    def next(self):
        if self._next >= self._n:
            return None
        for i in (self._next, self._next + 1):
            if i < self._n and i not in self._futures:
                self._futures[i] = self._executor.submit(self._prepare, i)
        t0 = time.perf_counter()
        try:
            data, count, seconds = self._futures.pop(self._next).result()
        finally:
            self.wait_seconds += time.perf_counter() - t0
        self.prepare_seconds += seconds
        self._next += 1
        return data, count, self._next - 1

    def close(self) -> None:
        self._next = self._n
        for f in self._futures.values():
            f.cancel()
        self._futures.clear()
        self._executor.shutdown(wait=True)


class BatchRun:
    """One pass over a list of series: iterate for batches, :meth:`record` scores, then :meth:`results`.

    Also a context manager: leaving it (or :meth:`close`) stops the background preparation.
    """

    def __init__(self, producer, offsets: np.ndarray, batch_size: int):
        self._producer = producer
        self._offsets = offsets  # offsets[s]: first slice of series s in the concatenation; [-1]: total
        self._batch_size = batch_size
        self._scores: np.ndarray | None = None
        self._recorded = np.zeros(self.num_batches, bool)
        self._handed = self._slices = 0

    @property
    def total_slices(self) -> int:
        return int(self._offsets[-1])

    @property
    def num_batches(self) -> int:
        return math.ceil(self.total_slices / self._batch_size)

    @property
    def stats(self) -> BatchStats:
        return BatchStats(self._producer.prepare_seconds, self._producer.wait_seconds, self._handed, self._slices)

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        item = self._producer.next()
        if item is None:
            self.close()
            raise StopIteration
        data, count, index = item
        rows = index * self._batch_size + np.arange(count, dtype=np.int64)
        series = np.searchsorted(self._offsets, rows, side="right") - 1
        self._handed += 1
        self._slices += count
        return Batch(data=data, count=int(count), series_index=series, slice_index=rows - self._offsets[series],
                     index=int(index))

    def close(self) -> None:
        self._producer.close()

    def __enter__(self) -> BatchRun:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def record(self, batch: Batch, scores: np.ndarray) -> None:
        """Scores of a batch's real rows, ``(count, K)`` (or ``(batch_size, K)``: padding rows are dropped;
        1-D scores are one class)."""
        if not 0 <= batch.index < self.num_batches:
            raise InputError(f"record: batch {batch.index} is not a batch of this run ({self.num_batches} batches)")
        first = batch.index * self._batch_size
        expected = min(self._batch_size, self.total_slices - first)
        if batch.count != expected:
            raise InputError(f"record: batch {batch.index} has {batch.count} rows, this run's has {expected}")
        scores = np.asarray(scores)
        if scores.dtype.kind not in "biuf":
            raise InputError(f"record: scores must be real numbers, got dtype {scores.dtype}")
        if scores.ndim == 1:
            scores = scores[:, None]
        if scores.ndim == 2 and scores.shape[0] == self._batch_size:
            scores = scores[: batch.count]
        if scores.ndim != 2 or scores.shape[0] != batch.count:
            raise InputError(f"record: expected scores of shape ({batch.count}, K) for batch {batch.index}, "
                             f"got {np.shape(scores)}")
        scores = scores.astype(np.float64)
        if not np.all(np.isfinite(scores)):
            raise InputError(f"record: scores of batch {batch.index} hold NaN or infinite values")
        if self._scores is None:
            self._scores = np.zeros((self.total_slices, scores.shape[1]))
        elif scores.shape[1] != self._scores.shape[1]:
            raise InputError(f"record: batch {batch.index} has {scores.shape[1]} scores per slice, earlier batches "
                             f"had {self._scores.shape[1]}")
        if self._recorded[batch.index]:
            raise InputError(f"record: batch {batch.index} was recorded already")
        self._scores[first : first + batch.count] = scores
        self._recorded[batch.index] = True

    def results(self, aggregate: str = "mean", k: int | None = None) -> list[SeriesScores]:
        """One :class:`SeriesScores` per input series, in input order.

        ``"mean"`` averages each class's score over the slices (the Res-Dense Net paper's), ``"max"`` takes the largest,
        ``"topk"`` the mean of the ``k`` largest (all slices when a series has fewer). ``max`` and ``topk``
        work per class, so their scores need not sum to one.
        """
        check_aggregate(aggregate, k)
        missing = np.flatnonzero(~self._recorded)
        if missing.size:
            raise InputError(f"results: batch(es) {missing[:10].tolist()} have no scores yet: record() every batch "
                             "first")
        return [SeriesScores(slice_scores=(scores := self._scores[lo:hi].copy()), score=fold(scores, aggregate, k),
                             aggregate=aggregate)
                for lo, hi in zip(self._offsets[:-1], self._offsets[1:], strict=True)]


def fold(scores: np.ndarray, aggregate: str = "mean", k: int | None = None) -> np.ndarray:
    """One series' ``(N, K)`` slice scores -> its ``(K,)`` score (see :meth:`BatchRun.results`)."""
    if aggregate == "mean":
        return scores.mean(axis=0)
    if aggregate == "max":
        return scores.max(axis=0)
    return np.sort(scores, axis=0)[-min(int(k), len(scores)) :].mean(axis=0)


def check_aggregate(aggregate: str, k: int | None) -> None:
    """Refuse an aggregation :meth:`BatchRun.results` cannot do, before any work is spent on it."""
    if aggregate not in AGGREGATES:
        raise InputError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {aggregate!r}")
    if aggregate == "topk":
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InputError(f"aggregate='topk' needs a positive integer k, got {k!r}")
    elif k is not None:
        raise InputError(f"k applies to aggregate='topk' only, not {aggregate!r}")


class SeriesBatcher:
    """Batches series for one :class:`~medinfer.preprocess.Preprocess`.

    ``dtype``: ``"float32"`` or ``"float16"`` (rounded to nearest even). ``threads``: native threads
    (default ``MEDINFER_NUM_THREADS`` or all cores; the numpy backend uses one). ``backend``: ``"native"``,
    ``"numpy"``, or None for native when the extension is built. Asking for ``"native"`` without it raises
    :class:`~medinfer.backends.BackendUnavailable` with the reason.
    """

    def __init__(self, preprocess: Preprocess, batch_size: int, *, dtype: str = "float32",
                 threads: int | None = None, backend: str | None = None):
        if not isinstance(preprocess, Preprocess):
            raise InputError(f"SeriesBatcher: preprocess must be a Preprocess, got {type(preprocess).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise InputError(f"SeriesBatcher: batch_size must be a positive integer, got {batch_size!r}")
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = None
        if name not in DTYPES:
            raise InputError(f"SeriesBatcher: dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise InputError(f"SeriesBatcher: threads must be a positive integer or None, got {threads!r}")
        if backend is None:
            backend = "native" if _ext.native() is not None else "numpy"
        elif backend not in BACKENDS:
            raise InputError(f"SeriesBatcher: backend must be one of {', '.join(BACKENDS)} or None, got {backend!r}")
        elif backend == "native" and _ext.native() is None:
            raise BackendUnavailable(f"SeriesBatcher(backend='native'): {_ext.unavailable_reason()}")
        self.preprocess = preprocess
        self.batch_size = int(batch_size)
        self.dtype = name
        self.threads = threads
        self.backend = backend

    def run(self, series: Sequence[Series | np.ndarray] | Series | np.ndarray, *,
            rows: Sequence[tuple[int, int]] | None = None) -> BatchRun:
        """Start a pass over ``series`` (a list, or a single Series / (N, H, W) HU array). ``rows``, one
        ``(start, stop)`` per series, takes only those slices of each, as if the series held just them (the
        streaming pipeline batches series piece by piece this way, without copying their pixels)."""
        if isinstance(series, (Series, np.ndarray)):
            series = [series]
        inputs = _series_inputs(series, self.preprocess)
        if rows is not None:
            if len(rows) != len(inputs):
                raise InputError(f"SeriesBatcher.run: {len(rows)} row ranges for {len(inputs)} series")
            inputs = [(p[lo:hi], s[lo:hi], i[lo:hi]) for (p, s, i), (lo, hi) in zip(inputs, rows, strict=True)]
        offsets = np.concatenate([[0], np.cumsum([p.shape[0] for p, _, _ in inputs], dtype=np.int64)])
        if self.backend == "numpy":
            producer = _NumpyProducer(self.preprocess, self.batch_size, self.dtype, inputs, offsets)
        else:
            lo, hi = self.preprocess.hu_range or (-math.inf, math.inf)
            scale, offset = self.preprocess.affine()
            out_h, out_w = self.preprocess.size
            params = dict(out_h=out_h, out_w=out_w, channels=self.preprocess.channels, lo=lo, hi=hi, scale=scale,
                          offset=offset, antialias=self.preprocess.antialias)
            producer = _ext.native().BatchRun(params, self.batch_size, self.dtype, self.threads or 0, inputs)
        return BatchRun(producer, offsets, self.batch_size)
