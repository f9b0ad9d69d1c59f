"""``medinfer.Engine``: one interface over ONNX Runtime, PyTorch and TensorRT.

``Engine(path)`` picks the backend from the file and the machine — ``.onnx`` → ONNX Runtime, a checkpoint
(``.safetensors`` + ``.json``) → PyTorch, ``.plan`` → TensorRT — and returns that backend's engine. Every
engine checks its file (format, version, checksums) before anything runs, and offers:

* ``infer(batch)``: ``(B, C, H, W)`` float32 → ``(B, K)`` class probabilities;
* ``predict(series)``: anything :func:`medinfer.load_series` accepts → :class:`SeriesPrediction`;
* ``predict_many(series_list)``: slices of many series batched together by the C++ series batcher, the
  next batch prepared while the current one runs.

Engines are safe to call from several threads.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from medinfer import backends
from medinfer.errors import EngineError, InputError
from medinfer.metadata import ModelMetadata
from medinfer.preprocess import Preprocess


@dataclass
class SeriesPrediction:
    """What an engine says about one series."""

    label: str  # the class with the highest aggregated probability
    probabilities: dict[str, float]  # class -> aggregated probability
    slice_probabilities: np.ndarray  # (N, K), slices in anatomical order
    skipped: list[tuple[str, str]]  # (path, reason) of every input slice that was not used
    timings: dict[str, float]  # seconds: load, preprocess, infer, total
    uid: str = ""  # the series' UID
    source: str = ""  # what was passed in (a path), "" for arrays
    aggregate: str = "mean"
    files: list[str] = field(default_factory=list)  # one per row of slice_probabilities
    warnings: list[str] = field(default_factory=list)  # what the loader noticed (gaps, tilt, slices set aside, ...)

    def to_dict(self, slices: bool = True) -> dict[str, Any]:
        """JSON-serialisable form; ``slices=False`` leaves out the per-slice rows."""
        d: dict[str, Any] = {
            "uid": self.uid, "source": self.source, "label": self.label, "probabilities": self.probabilities,
            "aggregate": self.aggregate, "slices_used": int(len(self.slice_probabilities)),
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped], "warnings": self.warnings,
            "timings": self.timings,
        }
        if slices:
            d["slice_probabilities"] = self.slice_probabilities.tolist()
            d["files"] = self.files
        return d


# Which backend runs a kind of engine file, and where its engine class lives: imported only when chosen,
# so that running an ONNX file never imports PyTorch or TensorRT.
_ENGINE_CLASSES = {
    "onnxruntime": ("medinfer.engine.onnxruntime_backend", "OnnxRuntimeEngine"),
    "tensorrt": ("medinfer.engine.tensorrt_backend", "TensorRTEngine"),
    "torch": ("medinfer.engine.torch_backend", "TorchEngine"),
}


_KINDS = {"onnxruntime": "ONNX export", "tensorrt": "TensorRT plan", "torch": "checkpoint"}


def _source_name(src) -> str:
    """What a prediction reports as its source: the path as given, printable and JSON-safe (file names that are
    not UTF-8 show their bytes as ``\\xNN``); "" for arrays and loaded series."""
    from medinfer.io.text import printable

    return printable(os.fsdecode(src)) if isinstance(src, (str, bytes, os.PathLike)) else ""


def backend_for_file(path: Path) -> str:
    """The engine backend a file is for: ``.onnx`` → ONNX Runtime, ``.plan`` → TensorRT, a checkpoint → torch."""
    from medinfer.checkpoint import is_checkpoint

    if path.suffix == ".onnx":
        return "onnxruntime"
    if path.suffix in (".plan", ".engine"):
        return "tensorrt"
    if is_checkpoint(path):
        return "torch"
    raise EngineError(f"{path}: not an engine medinfer knows (.onnx for ONNX Runtime, .plan for TensorRT, or a "
                      "checkpoint: .safetensors + .json, for PyTorch)")


def default_device(backend: str) -> str:
    """A GPU when ``backend`` can use one here, else the CPU."""
    return "cuda" if backends.BACKENDS[backend].is_available("cuda") else "cpu"


def resolve(path: Path, backend: str | None = None, device: str | None = None) -> tuple[str, str]:
    """The (backend, device) that will run ``path``: the backend from the file (``backend`` or
    ``MEDINFER_ENGINE_BACKEND`` may only confirm it), the device as asked, else a GPU when that backend can
    use one here. Refuses, with the reason and the file, what cannot run here."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such engine file")
    kind = backend_for_file(path)
    requested, source = (backend, "argument") if backend else (backends.env_override("engine"),
                                                               "MEDINFER_ENGINE_BACKEND")
    if requested is not None and requested != kind:
        raise EngineError(f"{path}: the {requested} backend cannot run this file; it is for {kind} (the {requested} "
                          f"backend was asked for by {source}; build a .plan with `medinfer build` for TensorRT)")
    device = device or default_device(kind)
    if device not in backends.DEVICES:
        raise InputError(f"device must be one of {', '.join(backends.DEVICES)}, got {device!r}")
    reason = backends.BACKENDS[kind].unavailable_reason(device)
    if reason is not None:
        raise backends.BackendUnavailable(f"{path}: a {_KINDS[kind]} needs the {kind} backend, which cannot run on "
                                          f"{device} here: {reason}")
    return kind, device


class _Opening(type):
    """``Engine(path, ...)`` resolves backend and device once (:func:`resolve`), then constructs that
    backend's engine with the resolved device. A backend's own class (``OnnxRuntimeEngine(path)``) gets
    the same default device and leaves every other check to the backend (files first, then the runtime)."""

    def __call__(cls, path: str | Path, *, backend: str | None = None, device: str | None = None, **options):
        path = Path(path)
        engine_class: Any = cls
        if cls is Engine:
            kind, device = resolve(path, backend, device)
            module, name = _ENGINE_CLASSES[kind]
            engine_class = getattr(importlib.import_module(module), name)
        elif backend is not None and backend != engine_class.backend:
            raise EngineError(f"{path}: {cls.__name__} is the {engine_class.backend} backend, not {backend}")
        else:
            device = device or default_device(engine_class.backend)
        return type.__call__(engine_class, path, device=device, **options)


# On a CPU, throughput grows with the batch only while a batch's activations stay in cache. Measured on two EPYC
# cores (benchmarks/results/bench-epyc-2core.json): DDC-ResNet101 at 64² peaks at batch 64, Res-Dense Net at
# 256² at batch 4-8 — about 2^18 input pixels per batch either way.
CPU_BATCH_PIXELS = 2**18


def cpu_batch(input_shape: tuple[int, ...]) -> int:
    """The batch size for CPU inference at ``input_shape`` (``(C, H, W)``)."""
    h, w = input_shape[-2:]
    return max(1, min(64, CPU_BATCH_PIXELS // (h * w)))


class Engine(metaclass=_Opening):
    """Load an engine file; see the module docstring. ``backend`` confirms the one the file is for
    (``"onnxruntime"``, ``"tensorrt"``, ``"torch"``; or ``MEDINFER_ENGINE_BACKEND``); ``device`` is ``"cpu"``
    or ``"cuda"`` (default: a GPU when the backend can use one here). Backends receive the resolved device."""

    backend: ClassVar[str]

    metadata: ModelMetadata

    def __init__(self, path: str | Path, *, backend: str | None = None, device: str | None = None, **options):
        # Reached with the path and device _Opening resolved (``backend`` and ``options`` are the backend's).
        self.path = Path(path)
        self.device = device or "cpu"
        self._lock = threading.Lock()  # backends whose state is not reentrant serialise through it

    # Description -----------------------------------------------------------------------------------------
    @property
    def class_names(self) -> tuple[str, ...]:
        return self.metadata.class_names

    @property
    def preprocess(self) -> Preprocess:
        return self.metadata.preprocess

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.metadata.input_shape

    @property
    def preferred_batch(self) -> int:
        """The batch size the series batcher fills for this engine."""
        return cpu_batch(self.input_shape) if self.device == "cpu" else 32

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({str(self.path)!r}, model={self.metadata.name}, device={self.device}, "
                f"classes={list(self.class_names)})")

    # Inference -------------------------------------------------------------------------------------------
    #: Each backend's inference: (B, C, H, W) float32, validated → (B, K) float32 probabilities. (Declared,
    #: not abstract: ``Engine(path)`` always makes a backend's engine, and type checkers see the call.)
    _infer: Callable[[np.ndarray], np.ndarray]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities ``(B, K)`` of a preprocessed float32 batch ``(B, C, H, W)``."""
        batch = np.asarray(batch)
        if batch.ndim != 4 or batch.shape[1:] != self.input_shape:
            raise InputError(f"{self.path.name}: expected a batch of shape (B, {', '.join(map(str, self.input_shape))})"
                             f", got {batch.shape}")
        if batch.dtype.kind != "f":
            raise InputError(f"{self.path.name}: expected a floating-point batch, got {batch.dtype}")
        if len(batch) == 0:
            return np.zeros((0, len(self.class_names)), np.float32)
        return self._infer(np.ascontiguousarray(batch, dtype=np.float32))

    def predict(self, series, *, aggregate: str = "mean", k: int | None = None, series_uid: str | None = None,
                acquisition: int | str | None = None) -> SeriesPrediction:
        """Classify one series: a folder, a list of files, a multi-frame file, an ``(N, H, W)`` HU array or
        a :class:`medinfer.Series`. Slice probabilities are folded by ``aggregate``: ``"mean"`` (the Res-Dense
        Net paper's rule), ``"max"`` or ``"topk"`` (mean of the ``k`` highest per class). ``series_uid`` and
        ``acquisition`` pick one series of a folder and one acquisition of a series, as in
        :func:`medinfer.load_series`."""
        return self.predict_many([series], aggregate=aggregate, k=k, series_uid=series_uid,
                                 acquisition=acquisition)[0]

    def predict_many(self, series_list: Sequence, *, aggregate: str = "mean", k: int | None = None,
                     progress: bool | None = None, series_uid: str | None = None,
                     acquisition: int | str | None = None) -> list[SeriesPrediction]:
        """Classify several series, their slices packed together into full batches by the series batcher,
        which prepares the next batch while this engine runs the current one. ``series_uid`` and
        ``acquisition`` are passed to :func:`medinfer.load_series` for every source that is not a
        :class:`medinfer.Series` already.

        Progress bars (loading, then inference) show on a terminal, or as ``progress`` says. Each prediction's
        ``load`` time is its own; ``preprocess`` and ``infer`` are shared work, apportioned to series by their
        slice counts.
        """
        from medinfer.io import Series, load_series
        from medinfer.progress import progress_bar
        from medinfer.runtime import SeriesBatcher
        from medinfer.runtime.batcher import check_aggregate

        check_aggregate(aggregate, k)
        start = time.perf_counter()
        loaded, load_times = [], []
        for src in progress_bar(series_list, desc="loading", unit="series", leave=False, progress=progress):
            t = time.perf_counter()
            loaded.append(src if isinstance(src, Series) else
                          load_series(src, series_uid=series_uid, acquisition=acquisition))
            load_times.append(time.perf_counter() - t)
        total = sum(len(s) for s in loaded)
        infer_s = 0.0
        with SeriesBatcher(self.preprocess, self.preferred_batch).run(loaded) as run, \
                progress_bar(total=total, desc="inference", unit="slice", leave=False, progress=progress) as bar:
            for batch in run:
                t = time.perf_counter()
                scores = self.infer(batch.data[: batch.count])
                infer_s += time.perf_counter() - t
                run.record(batch, scores)
                bar.update(batch.count)
            folded = run.results(aggregate, k)
            prepare_s = run.stats.prepare_seconds
        shared = time.perf_counter() - start - sum(load_times)
        out = []
        for src, series, scores, load_s in zip(series_list, loaded, folded, load_times, strict=True):
            share = len(series) / total if total else 0.0
            best = int(np.argmax(scores.score))
            out.append(SeriesPrediction(
                label=self.class_names[best],
                probabilities={c: float(p) for c, p in zip(self.class_names, scores.score, strict=True)},
                slice_probabilities=scores.slice_scores, skipped=list(series.skipped),
                timings={"load": load_s, "preprocess": prepare_s * share, "infer": infer_s * share,
                         "total": load_s + shared * share},
                uid=series.uid, source=_source_name(src), aggregate=aggregate,
                files=list(series.files), warnings=list(series.warnings),
            ))
        return out
