"""OpenVINO engines (``.onnx``, ``backend="openvino"``): the CPU engine that leads where the CPU runs bf16 or int8
natively.

The export is checked as for ONNX Runtime, then OpenVINO reads the checked bytes (never the path again). Two
compilations, each made on first use: one with the **latency** hint (one stream using every core of the
process's CPU affinity) for :meth:`~medinfer.engine.base.Engine.infer` and one-series :meth:`predict`, and one
with the **throughput** hint (several streams, each running one batch) for :meth:`predict_many` and archive
runs, where the stream keeps as many batches in flight as OpenVINO has optimal infer requests, so the
batcher prepares the next batches while they run. Precision: fp32, bf16 (``INFERENCE_PRECISION_HINT``; native
on AMX or AVX512-BF16 CPUs), or int8 from a quantized export (:mod:`medinfer.quantize`); ``precision="auto"``
takes bf16 only where its check against fp32 passed (:func:`medinfer.validation.decide`).
"""

from __future__ import annotations

import io
import threading
from concurrent.futures import Future

import numpy as np

from medinfer import cpu, validation
from medinfer.engine.base import HINTS, Engine
from medinfer.errors import EngineError, InputError
from medinfer.info import usable_cores
from medinfer.onnx_file import VALIDATION_KEY, read_for_runtime, stored_precision

_OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8 nodes come from the graph; the rest fp32


def bf16_unavailable(core) -> str | None:
    """``None`` where OpenVINO's CPU plugin runs bf16 natively here, else why not."""
    native = cpu.native_bf16()
    if native is None:
        return f"this CPU lacks AMX-BF16 and AVX512-BF16 ({cpu.model()})"
    if "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        return f"OpenVINO's CPU plugin does not offer bf16 here (though the CPU has {native})"
    return None


class _Compiled:
    """One compilation and its pool of infer requests; :meth:`submit` returns a future of the probabilities."""

    def __init__(self, core, model, config: dict):
        import openvino as ov

        self.model = core.compile_model(model, "CPU", config)
        self.requests = self.model.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
        self._queue = ov.AsyncInferQueue(self.model, self.requests)
        self._queue.set_callback(self._finished)
        self._lock = threading.Lock()  # AsyncInferQueue is not thread-safe; start_async waits for a free request

    @staticmethod
    def _finished(request, future: Future) -> None:
        # The output tensor is the request's own memory, reused by its next batch.
        future.set_result(request.get_output_tensor(0).data.copy())

    def submit(self, batch: np.ndarray) -> Future:
        future: Future = Future()
        with self._lock:
            self._queue.start_async({0: batch}, future)
        return future


class OpenVINOEngine(Engine):
    backend = "openvino"

    def __init__(self, path, *, device: str, precision: str = "auto", threads: int | None = None,
                 verify: bool = True):
        import openvino as ov

        super().__init__(path, device=device)
        data, props, self.metadata = read_for_runtime(self.path, "OpenVINO", verify=verify)
        self.core = ov.Core()
        self._decide(precision, stored=stored_precision(props), reduced={"bf16": bf16_unavailable(self.core)},
                     validations=validation.parse(props.get(VALIDATION_KEY), self.path))
        try:
            self._model = self.core.read_model(io.BytesIO(data))
        except RuntimeError as exc:
            raise EngineError(f"{self.path}: OpenVINO cannot read this graph: {exc}") from None
        # OpenVINO's own default sizes its thread pool to the machine, not to the process's CPU affinity.
        self.threads = threads or usable_cores()
        self._compiled: dict[str, _Compiled] = {}
        self._compile_lock = threading.Lock()

    def compiled(self, hint: str) -> _Compiled:
        """The compilation for ``hint`` (``"latency"`` or ``"throughput"``), made on first use."""
        if hint not in HINTS:
            raise InputError(f"hint must be one of {', '.join(HINTS)}, got {hint!r}")
        with self._compile_lock:
            if hint not in self._compiled:
                config = {"PERFORMANCE_HINT": hint.upper(), "INFERENCE_PRECISION_HINT": _OV_PRECISION[self.precision],
                          "INFERENCE_NUM_THREADS": self.threads}
                try:
                    self._compiled[hint] = _Compiled(self.core, self._model, config)
                except RuntimeError as exc:
                    raise EngineError(f"{self.path}: OpenVINO cannot compile this graph ({hint}, {self.precision}): "
                                      f"{exc}") from None
            return self._compiled[hint]

    @property
    def concurrency(self) -> int:
        return self.compiled("throughput").requests

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return self.compiled("latency").submit(batch).result()

    def _submit(self, batch: np.ndarray) -> Future:
        return self.compiled("throughput").submit(batch)

    def runtime_precisions(self, hint: str = "latency") -> dict[str, int]:
        """How many convolutions and matrix products of the compiled graph run at each precision (what OpenVINO
        actually chose: e.g. ``{"i8": 104, "f32": 1}`` for a quantized export)."""
        counts: dict[str, int] = {}
        for op in self.compiled(hint).model.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if info["layerType"].astype(str) in ("Convolution", "FullyConnected", "MatMul"):
                p = info["runtimePrecision"].astype(str).lower()
                counts[p] = counts.get(p, 0) + 1
        return counts
