"""ONNX Runtime engines (``.onnx``): the default that runs on every machine, CUDA provider when present."""

from __future__ import annotations

import numpy as np

from medinfer.engine.base import Engine
from medinfer.errors import EngineError
from medinfer.info import usable_cores
from medinfer.onnx_file import INPUT_NAME, OUTPUT_NAME, plugin_ops, read_export


class OnnxRuntimeEngine(Engine):
    backend = "onnxruntime"

    def __init__(self, path, *, device: str, threads: int | None = None, verify: bool = True):
        import onnxruntime as ort

        super().__init__(path, device=device)
        data, proto, self.metadata = read_export(self.path, verify=verify)
        plugins = plugin_ops(proto)
        if plugins:
            raise EngineError(f"{self.path}: the graph holds medinfer TensorRT plugin nodes ({', '.join(plugins)}), "
                              "which ONNX Runtime cannot run; build a TensorRT plan from it (`medinfer build`), or "
                              "export without --plugins for ONNX Runtime")
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
