"""``medinfer.Engine``: one interface over ONNX Runtime, OpenVINO, PyTorch and TensorRT.

``Engine(path)`` picks the backend from the file and the machine — ``.onnx`` → ONNX Runtime, or OpenVINO where
the export passed a bf16 or int8 check for it (:func:`medinfer.backends.choose_engine`), a checkpoint
(``.safetensors`` + ``.json``) → PyTorch, ``.plan`` → TensorRT — and returns that backend's engine. Every
engine checks its file (format, version, checksums) before anything runs, and offers:

* ``infer(batch)``: ``(B, C, H, W)`` float32 → ``(B, K)`` class probabilities; ``submit(batch)``: the same
  as a future, ``concurrency`` of them running at once on engines with asynchronous requests (OpenVINO);
* ``predict(series)``: anything :func:`medinfer.load_series` accepts → :class:`SeriesPrediction`;
* ``predict_many(series_list)``: one prediction per input, in order, through :meth:`Engine.stream`;
* ``stream(sources)``: ``(index, prediction)`` as each series finishes — series loaded by background threads
  into a bounded queue, their slices packed across series into full batches by the C++ series batcher while
  the engine runs (:mod:`medinfer.runtime.stream`). Memory is bounded by the queue, not by the input.

A series that cannot be loaded or classified comes out with ``status="error"`` and the reason, every other
series is classified (``errors="raise"`` raises instead; :meth:`Engine.predict` raises by default).

Every engine says what precision it runs and why (``precision``, ``precision_reason``, ``validation``):
below fp32 only with a check against fp32 on record, or with a warning (:mod:`medinfer.validation`).

Engines are safe to call from several threads.
"""

from __future__ import annotations

import functools
import importlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from medinfer import backends, validation
from medinfer.errors import EngineError, InputError
from medinfer.metadata import ModelMetadata
from medinfer.preprocess import Preprocess

STATUSES = ("ok", "error")


@dataclass
class SeriesPrediction:
    """What an engine says about one series. ``status`` is ``"ok"``, or ``"error"`` when the series could not
    be loaded or classified: ``error`` then says why (the file and the problem), ``label`` is ``""`` and
    ``probabilities`` is empty."""

    label: str  # the class with the highest aggregated probability
    probabilities: dict[str, float]  # class -> aggregated probability
    slice_probabilities: np.ndarray  # (N, K), slices in anatomical order
    skipped: list[tuple[str, str]]  # (path, reason) of every input slice that was not used
    timings: dict[str, float]  # seconds: load, preprocess, infer (its shares of batches), total (load to result)
    uid: str = ""  # the series' UID
    source: str = ""  # what was passed in (a path), "" for arrays
    aggregate: str = "mean"
    files: list[str] = field(default_factory=list)  # one per row of slice_probabilities
    warnings: list[str] = field(default_factory=list)  # what the loader noticed (gaps, tilt, slices set aside, ...)
    status: str = "ok"
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self, slices: bool = True) -> dict[str, Any]:
        """JSON-serialisable form; ``slices=False`` leaves out the per-slice rows."""
        d: dict[str, Any] = {
            "uid": self.uid, "source": self.source, "status": self.status, "error": self.error,
            "label": self.label, "probabilities": self.probabilities,
            "aggregate": self.aggregate, "slices_used": int(len(self.slice_probabilities)),
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped], "warnings": self.warnings,
            "timings": self.timings,
        }
        if slices:
            d["slice_probabilities"] = self.slice_probabilities.tolist()
            d["files"] = self.files
        return d


# Where each backend's engine class lives: imported only when chosen, so that running an ONNX file never
# imports PyTorch or TensorRT.
_ENGINE_CLASSES = {
    "onnxruntime": ("medinfer.engine.onnxruntime_backend", "OnnxRuntimeEngine"),
    "openvino": ("medinfer.engine.openvino_backend", "OpenVINOEngine"),
    "tensorrt": ("medinfer.engine.tensorrt_backend", "TensorRTEngine"),
    "torch": ("medinfer.engine.torch_backend", "TorchEngine"),
}

#: Kinds of engine file, by :func:`kind_of`, and the backends that run each.
KINDS = {"onnx": ("an ONNX export", ("onnxruntime", "openvino")), "plan": ("a TensorRT plan", ("tensorrt",)),
         "checkpoint": ("a checkpoint", ("torch",))}
HINTS = ("throughput", "latency")


def _source_name(src) -> str:
    """What a prediction reports as its source: the path as given, printable and JSON-safe (file names that are
    not UTF-8 show their bytes as ``\\xNN``); "" for arrays and loaded series."""
    from medinfer.io.text import printable

    return printable(os.fsdecode(src)) if isinstance(src, (str, bytes, os.PathLike)) else ""


def kind_of(path: Path) -> str:
    """The kind of engine file: ``"onnx"`` (``.onnx``), ``"plan"`` (``.plan``) or ``"checkpoint"``."""
    from medinfer.checkpoint import is_checkpoint

    if path.suffix == ".onnx":
        return "onnx"
    if path.suffix in (".plan", ".engine"):
        return "plan"
    if is_checkpoint(path):
        return "checkpoint"
    raise EngineError(f"{path}: not an engine medinfer knows (.onnx for ONNX Runtime or OpenVINO, .plan for "
                      "TensorRT, or a checkpoint: .safetensors + .json, for PyTorch)")


def default_device(backend: str) -> str:
    """A GPU when ``backend`` can use one here, else the CPU."""
    return "cuda" if backends.BACKENDS[backend].is_available("cuda") else "cpu"


def _passed_checks(path: Path, runners: tuple[str, ...], device: str) -> frozenset[str]:
    """``backend/precision`` of the checks against fp32 that ``path`` passed, read only where they can change
    the choice (OpenVINO runs the file and is usable here); none for an unreadable record: the engine itself
    then says what is wrong with the file."""
    if "openvino" not in runners or not backends.BACKENDS["openvino"].is_available(device):
        return frozenset()
    try:
        return frozenset(k for k, v in validation.recorded(path).items() if v.passed)
    except (EngineError, OSError):
        return frozenset()


def resolve(path: Path, backend: str | None = None, device: str | None = None) -> tuple[str, str]:
    """The (backend, device) that will run ``path``. ``backend`` (or ``MEDINFER_ENGINE_BACKEND``) must be one that
    runs the file's kind; without one the registry chooses (:func:`medinfer.backends.choose_engine`: OpenVINO
    for an export whose bf16 or int8 check passed on it, else ONNX Runtime). The device is as asked, else a
    GPU when the backend can use one here. Refuses, with the reason and the file, what cannot run here."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such engine file")
    kind = kind_of(path)
    what, runners = KINDS[kind]
    requested, source = (backend, "argument") if backend else (backends.env_override("engine"),
                                                               "MEDINFER_ENGINE_BACKEND")
    if requested is not None and requested not in runners:
        raise EngineError(f"{path}: the {requested} backend cannot run this file ({what}); it runs on "
                          f"{' or '.join(runners)} (the {requested} backend was asked for by {source}; build a .plan "
                          "with `medinfer build` for TensorRT)")
    if requested is None:
        device = device or default_device(runners[0])
        requested, _ = backends.choose_engine(runners, device, passed=_passed_checks(path, runners, device))
    device = device or default_device(requested)
    if device not in backends.DEVICES:
        raise InputError(f"device must be one of {', '.join(backends.DEVICES)}, got {device!r}")
    reason = backends.BACKENDS[requested].unavailable_reason(device)
    if reason is not None:
        raise backends.BackendUnavailable(f"{path}: {what} needs the {requested} backend, which cannot run on "
                                          f"{device} here: {reason}")
    return requested, device


class _Opening(type):
    """``Engine(path, ...)`` resolves backend and device once (:func:`resolve`), then constructs that
    backend's engine with the resolved device. A backend's own class (``OnnxRuntimeEngine(path)``) gets
    the same default device and leaves every other check to the backend (files first, then the runtime)."""

    def __call__(cls, path: str | Path, *, backend: str | None = None, device: str | None = None, **options):
        path = Path(path)
        engine_class: Any = cls
        if cls is Engine:
            chosen, device = resolve(path, backend, device)
            module, name = _ENGINE_CLASSES[chosen]
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


class Classifier:
    """The series API over a batch inference — ``infer``, ``submit``, ``predict``, ``predict_many``, ``stream`` —
    shared by every engine file's :class:`Engine` and by :class:`medinfer.serve.RemoteEngine`, whose batches run
    on a server. A subclass sets ``metadata`` and ``_infer`` (and ``_submit`` where requests run asynchronously)."""

    metadata: ModelMetadata
    device: str = "cpu"
    precision: str = "fp32"
    precision_reason: str = "fp32"
    validation: validation.Validation | None = None  # the check behind a reduced precision

    @property
    def where(self) -> str:
        """What errors about a batch name: the engine file, the server's model."""
        return self.metadata.name

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

    @property
    def concurrency(self) -> int:
        """How many batches :meth:`submit` runs at once (1: one after the other)."""
        return 1

    # Inference -------------------------------------------------------------------------------------------
    #: Each backend's inference: (B, C, H, W) float32, validated → (B, K) float32 probabilities. (Declared,
    #: not abstract: ``Engine(path)`` always makes a backend's engine, and type checkers see the call.)
    _infer: Callable[[np.ndarray], np.ndarray]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities ``(B, K)`` of a preprocessed float32 batch ``(B, C, H, W)``."""
        batch = self._checked(batch)
        return self._infer(batch) if len(batch) else np.zeros((0, len(self.class_names)), np.float32)

    def submit(self, batch: np.ndarray) -> Future:
        """:meth:`infer` as a future; an engine with asynchronous requests runs :attr:`concurrency` at once."""
        batch = self._checked(batch)
        if not len(batch):
            future: Future = Future()
            future.set_result(np.zeros((0, len(self.class_names)), np.float32))
            return future
        return self._submit(batch)

    def _submit(self, batch: np.ndarray) -> Future:
        from medinfer.runtime.stream import completed

        return completed(self._infer, batch)

    def _checked(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch)
        if batch.ndim != 4 or batch.shape[1:] != self.input_shape:
            raise InputError(f"{self.where}: expected a batch of shape (B, {', '.join(map(str, self.input_shape))})"
                             f", got {batch.shape}")
        if batch.dtype.kind != "f":
            raise InputError(f"{self.where}: expected a floating-point batch, got {batch.dtype}")
        return np.ascontiguousarray(batch, dtype=np.float32)

    def predict(self, series, *, aggregate: str = "mean", k: int | None = None, series_uid: str | None = None,
                acquisition: int | str | None = None, errors: str = "raise") -> SeriesPrediction:
        """Classify one series: a folder, a list of files, a multi-frame file, an ``(N, H, W)`` HU array or
        a :class:`medinfer.Series`. Slice probabilities are folded by ``aggregate``: ``"mean"`` (the Res-Dense
        Net paper's rule), ``"max"`` or ``"topk"`` (mean of the ``k`` highest per class). ``series_uid`` and
        ``acquisition`` pick one series of a folder and one acquisition of a series, as in
        :func:`medinfer.load_series`. A series that cannot be classified raises (``errors="record"``: a
        prediction with ``status="error"`` instead)."""
        return self.predict_many([series], aggregate=aggregate, k=k, series_uid=series_uid,
                                 acquisition=acquisition, errors=errors, progress=False, hint="latency")[0]

    def predict_many(self, series_list: Sequence, *, aggregate: str = "mean", k: int | None = None,
                     progress: bool | None = None, series_uid: str | None = None,
                     acquisition: int | str | None = None, errors: str = "record", loaders: int | None = None,
                     depth: int | None = None, hint: str = "throughput") -> list[SeriesPrediction]:
        """Classify several series: one prediction per input, in input order, through :meth:`stream`. A
        series that cannot be loaded or classified gives ``status="error"`` and the reason; the others are
        classified (``errors="raise"``: the first failure is raised). A progress bar (series done and failed,
        slices/s) shows on a terminal, or as ``progress`` says."""
        from medinfer.progress import StreamProgress

        out: list[SeriesPrediction | None] = [None] * len(series_list)
        stream = self.stream(series_list, aggregate=aggregate, k=k, series_uid=series_uid,
                             acquisition=acquisition, errors=errors, loaders=loaders, depth=depth, hint=hint)
        with StreamProgress(total=len(series_list), progress=progress) as bar:
            for index, pred in stream:
                out[index] = pred
                bar.update(pred.status, len(pred.slice_probabilities))
        return out  # type: ignore[return-value]  # every index is filled: the stream yields each input once

    def stream(self, sources: Iterable, *, aggregate: str = "mean", k: int | None = None,
               series_uid: str | None = None, acquisition: int | str | None = None, errors: str = "record",
               loaders: int | None = None, depth: int | None = None, hint: str = "throughput",
               load: Callable[[Any], Any] | None = None,
               describe: Callable[[Any], tuple[str, str]] | None = None) -> Iterator[tuple[int, SeriesPrediction]]:
        """``(index, prediction)`` for each source as soon as its series is classified (completion order).

        ``sources`` may be any iterable, a generator included (read by the loader threads as they need more).
        ``loaders`` threads (default 2) read series into a queue of at most ``depth`` (default 4) series;
        ``load(source) -> Series`` and ``describe(source) -> (source name, uid)`` replace how a source is read
        (default :func:`medinfer.load_series` with ``series_uid`` / ``acquisition``) and named. Timings per
        prediction: its own ``load``, its shares of batch ``preprocess`` and ``infer``, and ``total`` from the
        start of its loading to its result. ``hint``: ``"throughput"`` keeps :attr:`concurrency` batches in
        flight (many series), ``"latency"`` runs one batch at a time on every core (one series)."""
        from medinfer.runtime.batcher import check_aggregate
        from medinfer.runtime.stream import Stream, completed

        check_aggregate(aggregate, k)
        if hint not in HINTS:
            raise InputError(f"hint must be one of {', '.join(HINTS)}, got {hint!r}")
        latency = hint == "latency"
        if load is None:
            load = functools.partial(_load_source, series_uid=series_uid, acquisition=acquisition)
        finish = functools.partial(self._prediction, aggregate=aggregate, k=k)
        return iter(Stream(self, sources, load=load, describe=describe or _describe_source, finish=finish,
                           errors=errors, loaders=loaders, depth=depth,
                           submit=functools.partial(completed, self._infer) if latency else self.submit,
                           concurrency=1 if latency else self.concurrency))

    def _prediction(self, outcome, *, aggregate: str, k: int | None) -> SeriesPrediction:
        from medinfer.runtime.batcher import fold
        from medinfer.runtime.stream import error_message

        timings = {"load": outcome.load_s, "preprocess": outcome.prepare_s, "infer": outcome.infer_s,
                   "total": time.perf_counter() - outcome.started}
        common = dict(skipped=outcome.skipped, timings=timings, uid=outcome.uid, source=outcome.source,
                      aggregate=aggregate, warnings=outcome.warnings)
        if outcome.error is not None:
            return SeriesPrediction(label="", probabilities={}, status="error", error=error_message(outcome),
                                    slice_probabilities=np.zeros((0, len(self.class_names)), np.float64), **common)
        score = fold(outcome.scores, aggregate, k)
        return SeriesPrediction(
            label=self.class_names[int(np.argmax(score))],
            probabilities={c: float(p) for c, p in zip(self.class_names, score, strict=True)},
            slice_probabilities=outcome.scores, files=outcome.files, **common)


class Engine(Classifier, metaclass=_Opening):
    """Load an engine file; see the module docstring. ``backend`` picks among those that run the file
    (``"onnxruntime"`` or ``"openvino"`` for ``.onnx``, ``"tensorrt"``, ``"torch"``; or
    ``MEDINFER_ENGINE_BACKEND``); ``device`` is ``"cpu"`` or ``"cuda"`` (default: a GPU when the backend can use
    one here). Backends receive the resolved device; ``precision`` (``"auto"``, ``"fp32"``, ...) is theirs."""

    backend: ClassVar[str]

    def __init__(self, path: str | Path, *, backend: str | None = None, device: str | None = None, **options):
        # Reached with the path and device _Opening resolved (``backend`` and ``options`` are the backend's).
        self.path = Path(path)
        self.device = device or "cpu"
        self._lock = threading.Lock()  # backends whose state is not reentrant serialise through it

    @property
    def where(self) -> str:
        return self.path.name

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({str(self.path)!r}, model={self.metadata.name}, device={self.device}, "
                f"precision={self.precision}, classes={list(self.class_names)})")

    def describe(self) -> dict[str, Any]:
        """What runs and why, for ``medinfer info ENGINE``, ``predict`` and result files."""
        return {"backend": self.backend, "device": self.device, "precision": self.precision,
                "precision_reason": self.precision_reason,
                "validation": self.validation.to_dict() if self.validation else None,
                "model": self.metadata.to_dict()}

    def _decide(self, requested: str | None, *, stored: str = "fp32", reduced: Mapping[str, str | None],
                validations: Mapping[str, validation.Validation]) -> None:
        decision = validation.decide(self.path, self.backend, requested or "auto", stored=stored, reduced=reduced,
                                     validations=validations)
        self.precision, self.precision_reason, self.validation = (decision.precision, decision.reason,
                                                                  decision.validation)


def _load_source(src, *, series_uid: str | None, acquisition: int | str | None):
    from medinfer.io import Series, load_series

    return src if isinstance(src, Series) else load_series(src, series_uid=series_uid, acquisition=acquisition)


def _describe_source(src) -> tuple[str, str]:
    from medinfer.io import Series

    return _source_name(src), src.uid if isinstance(src, Series) else ""
