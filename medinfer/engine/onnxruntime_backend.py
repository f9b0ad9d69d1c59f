"""ONNX Runtime engines (``.onnx``): the default that runs on every machine, CUDA provider when present; fp32,
or int8 from a quantized export (:mod:`medinfer.quantize`)."""

from __future__ import annotations

import numpy as np

from medinfer import validation
from medinfer.engine.base import Engine
from medinfer.info import usable_cores
from medinfer.onnx_file import INPUT_NAME, OUTPUT_NAME, VALIDATION_KEY, read_for_runtime, stored_precision


class OnnxRuntimeEngine(Engine):
    backend = "onnxruntime"

    def __init__(self, path, *, device: str, precision: str = "auto", threads: int | None = None,
                 verify: bool = True):
        import onnxruntime as ort

        super().__init__(path, device=device)
        data, props, self.metadata = read_for_runtime(self.path, "ONNX Runtime", verify=verify)
        self._decide(precision, stored=stored_precision(props), reduced={},
                     validations=validation.parse(props.get(VALIDATION_KEY), self.path))
        opts = ort.SessionOptions()
        # ORT's own default ignores the process's CPU affinity.
        opts.intra_op_num_threads = threads or usable_cores()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if self.device == "cuda" \
            else ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(data, opts, providers=providers)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        # InferenceSession.run is thread-safe.
        (probs,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})
        return probs
