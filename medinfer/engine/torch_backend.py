"""PyTorch engines: a checkpoint (``.safetensors`` + ``.json``) run directly.

On the CPU: eager fp32. On a GPU: fp16 or bf16 (once checked against fp32, :mod:`medinfer.validation`; or
asked for) or fp32 weights in channels-last layout, the fused
kernels of :mod:`medinfer.ops` wherever the model uses them (the ops registry picks them for CUDA
tensors), and CUDA graphs: one graph per power-of-two batch size, captured on first use and replayed
with the batch padded up to it, which removes the per-layer launch overhead that dominates small batches.
"""

from __future__ import annotations

import numpy as np
import torch

from medinfer import validation
from medinfer.checkpoint import load_checkpoint
from medinfer.engine.base import Engine
from medinfer.errors import InputError

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MAX_GRAPH_BATCH = 256  # larger batches run eagerly in chunks of this size


class _GraphRunner:
    """CUDA graphs of ``model`` for batch sizes 1, 2, 4, ..., ``MAX_GRAPH_BATCH``, captured lazily."""

    def __init__(self, model: torch.nn.Module, input_shape: tuple[int, ...], dtype: torch.dtype):
        self.model, self.input_shape, self.dtype = model, input_shape, dtype
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}

    def _capture(self, size: int):
        static_in = torch.zeros((size, *self.input_shape), device="cuda", dtype=self.dtype)
        static_in = static_in.contiguous(memory_format=torch.channels_last)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(3):  # warm-up: cuDNN autotuning and lazy allocations happen outside the graph
                self.model(static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.inference_mode():
            static_out = torch.softmax(self.model(static_in).float(), dim=1)
        self.graphs[size] = (graph, static_in, static_out)
        return self.graphs[size]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        size = 1 << (n - 1).bit_length()
        graph, static_in, static_out = self.graphs.get(size) or self._capture(size)
        static_in[:n].copy_(x)
        static_in[n:].zero_()
        graph.replay()
        return static_out[:n].clone()


class TorchEngine(Engine):
    backend = "torch"

    def __init__(self, path, *, device: str, precision: str | None = None, cuda_graphs: bool | None = None):
        super().__init__(path, device=device)
        ckpt = load_checkpoint(self.path)
        self.metadata = ckpt.metadata
        gpu_only = None if self.device == "cuda" else "it runs on a GPU only; the CPU path is fp32"
        self._decide(precision, reduced={"fp16": gpu_only, "bf16": gpu_only},
                     validations=validation.parse(ckpt.validation, ckpt.config_path))
        self.dtype = PRECISIONS[self.precision]
        model = ckpt.model.to(self.device, self.dtype).eval()
        if self.device == "cuda":
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        use_graphs = self.device == "cuda" if cuda_graphs is None else cuda_graphs
        if use_graphs and self.device != "cuda":
            raise InputError("CUDA graphs need device='cuda'")
        self._graphs = _GraphRunner(model, self.input_shape, self.dtype) if use_graphs else None

    @property
    def preferred_batch(self) -> int:
        return 128 if self.device == "cuda" else super().preferred_batch

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._graphs is not None:
            # Graph replay shares static buffers: one caller at a time.
            with self._lock:
                return torch.cat([self._graphs(c) for c in x.split(MAX_GRAPH_BATCH)])
        with torch.inference_mode():
            return torch.softmax(self.model(x).float(), dim=1)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch)
        if self.device == "cuda":
            x = x.pin_memory().to("cuda", non_blocking=True).to(self.dtype, memory_format=torch.channels_last)
        return self._forward(x).cpu().numpy()
