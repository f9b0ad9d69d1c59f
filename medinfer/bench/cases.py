"""The comparisons medinfer's speed is judged by, each a candidate against a baseline measured in the same run.

A :class:`Comparison` holds two zero-argument callables that do the same work (``items`` slices per call)
the baseline way and the medinfer way. The same objects drive ``medinfer bench`` and the pytest-benchmark
files in ``benchmarks/``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medinfer.bench.artefacts import Artefacts
from medinfer.bench.baselines import naive_series_probabilities, onnxruntime_prebatched

GPU_CANDIDATES = ("torch fp16", "torch fp16 + CUDA graphs", "torch fp16 + CUDA graphs, no fused kernels",
                  "TensorRT fp16")
# Peak dense fp16 tensor-core throughput (TFLOP/s) for the FLOP-roofline fraction on a GPU.
PEAK_FP16_TFLOPS = {"H100 80GB HBM3": 989.4, "H100 PCIe": 756.0, "H100 NVL": 835.0, "H200": 989.4, "A100": 312.0,
                    "L40S": 362.0, "L4": 121.0}


@dataclass
class Comparison:
    group: str  # what is measured, e.g. "end-to-end ddc_resnet101"
    baseline_label: str
    baseline: Callable[[], object]
    candidate_label: str
    candidate: Callable[[], object]
    items: int  # slices per call, on both sides
    target_speedup: float | None = None  # the candidate must be at least this many times faster
    target_text: str = ""
    model: str = ""
    batch: int | None = None  # batch size, for throughput-vs-batch rows

    @property
    def key(self) -> str:
        """Unique name of the comparison (its group and, in a sweep, the batch size)."""
        return self.group if self.batch is None or self.group.endswith(f"batch {self.batch}") \
            else f"{self.group}, batch {self.batch}"


@dataclass
class Skipped:
    group: str
    reason: str


def _random_batch(shape: tuple[int, ...], batch: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)


@functools.cache
def cpu_engine(onnx_path: Path):
    """One ONNX Runtime session per export for all comparisons (sessions are thread-safe and hold the weights)."""
    from medinfer.engine import Engine

    return Engine(onnx_path, device="cpu")


def engine_comparisons(art: Artefacts, batches: list[int]) -> list[Comparison]:
    """PyTorch eager (baseline) vs ONNX Runtime on the CPU, at each batch size; batch 1 is the latency."""
    from medinfer.engine import Engine

    torch_engine, ort_engine = Engine(art.checkpoint, device="cpu"), cpu_engine(art.onnx)
    out = []
    for b in batches:
        x = _random_batch(ort_engine.input_shape, b)
        out.append(Comparison(
            group=f"{art.name} {'latency' if b == 1 else 'throughput'}", model=art.name, batch=b, items=b,
            baseline_label=f"torch eager, batch {b}", baseline=lambda x=x: torch_engine.infer(x),
            candidate_label=f"onnxruntime, batch {b}", candidate=lambda x=x: ort_engine.infer(x),
        ))
    return out


def end_to_end_comparison(art: Artefacts, folder: Path) -> Comparison:
    """A DICOM folder to a series prediction: the naive per-slice pipeline vs ``Engine.predict_many``."""
    from medinfer.checkpoint import load_checkpoint

    ckpt = load_checkpoint(art.checkpoint)
    engine = cpu_engine(art.onnx)
    n = sum(1 for _ in folder.iterdir())
    return Comparison(
        group=f"end-to-end {art.name}", model=art.name, items=n,
        baseline_label="pydicom + numpy + torch per slice",
        baseline=lambda: naive_series_probabilities(folder, ckpt.model, ckpt.metadata.preprocess),
        candidate_label="Engine.predict_many (.onnx)", candidate=lambda: engine.predict_many([folder], progress=False),
        target_speedup=2.0, target_text="≥ 2× the naive pipeline (2 CPU cores)",
    )


def overhead_comparison(art: Artefacts, folder: Path) -> Comparison:
    """What the runtime adds around the model: ``predict_many`` on a loaded series (preprocessing, batching,
    bookkeeping included) vs ONNX Runtime alone on the same slices already preprocessed and batched."""
    from medinfer.io import load_series
    from medinfer.runtime import SeriesBatcher

    engine = cpu_engine(art.onnx)
    series = load_series(folder)
    with SeriesBatcher(engine.preprocess, engine.preferred_batch).run([series]) as run:
        batches = [b.data[: b.count].copy() for b in run]
    return Comparison(
        group=f"runtime overhead {art.name}", model=art.name, items=len(series),
        baseline_label="onnxruntime session.run, pre-batched",
        baseline=lambda: onnxruntime_prebatched(engine.session, batches),
        candidate_label="Engine.predict_many, loaded series",
        candidate=lambda: engine.predict_many([series], progress=False),
        target_speedup=1 / 1.10, target_text="≤ 10 % slower than raw ONNX Runtime",
    )


def drain(batcher, series) -> int:
    """Prepare every batch of ``series`` and drop it: the batcher's work alone. Returns the slices seen."""
    with batcher.run([series]) as run:
        return sum(batch.count for batch in run)


def preprocess_comparison(folder: Path, preprocess) -> Comparison:
    """The C++ series batcher vs its numpy reference on one series."""
    from medinfer.io import load_series
    from medinfer.runtime import SeriesBatcher

    series = load_series(folder)

    def run(backend: str) -> Callable[[], object]:
        batcher = SeriesBatcher(preprocess, 32, backend=backend)
        return lambda: drain(batcher, series)

    h, w = preprocess.size
    return Comparison(group=f"preprocessing to {h}×{w}", items=len(series), baseline_label="numpy reference",
                      baseline=run("numpy"), candidate_label="C++ batcher", candidate=run("native"),
                      target_speedup=5.0, target_text="≥ 5× the numpy reference (2 CPU cores)")


def gpu_comparisons(art: Artefacts, batch: int) -> tuple[list[Comparison], list[Skipped]]:
    """On a GPU: fp32 eager PyTorch (baseline) vs fp16, fp16 + CUDA graphs, the fused kernels and TensorRT."""
    from medinfer import backends
    from medinfer.engine import Engine

    reason = backends.BACKENDS["torch"].unavailable_reason("cuda")
    group = f"{art.name} on GPU, batch {batch}"
    if reason is not None:
        return [], [Skipped(group, reason)]
    base = Engine(art.checkpoint, device="cuda", precision="fp32", cuda_graphs=False)
    x = _random_batch(base.input_shape, batch)
    fp16 = Engine(art.checkpoint, device="cuda", precision="fp16", cuda_graphs=False)
    graphs = Engine(art.checkpoint, device="cuda", precision="fp16", cuda_graphs=True)
    unfused = Engine(art.checkpoint, device="cuda", precision="fp16", cuda_graphs=True)

    def without_fused_kernels() -> object:
        # Ops pick their backend at every call, and the CUDA graph is recorded on the first (warm-up) call.
        with backends.forced("ops", "torch"):
            return unfused.infer(x)

    candidates: dict[str, Callable[[], object]] = {
        GPU_CANDIDATES[0]: lambda: fp16.infer(x), GPU_CANDIDATES[1]: lambda: graphs.infer(x),
        GPU_CANDIDATES[2]: without_fused_kernels,
    }
    skipped = []
    trt_reason = backends.BACKENDS["tensorrt"].unavailable_reason("cuda")
    if trt_reason is None:
        from medinfer.engine import build_engine

        plan = build_engine(art.onnx, art.onnx.with_suffix(".fp16.plan"), precision="fp16",
                            batch=(1, batch, max(batch, 256)), progress=False)
        trt = Engine(plan)
        candidates[GPU_CANDIDATES[3]] = lambda: trt.infer(x)
    else:
        skipped.append(Skipped(f"{group}: TensorRT", trt_reason))
    return [Comparison(group=group, model=art.name, batch=batch, items=batch,
                       baseline_label="torch fp32 eager", baseline=lambda: base.infer(x),
                       candidate_label=label, candidate=run)
            for label, run in candidates.items()], skipped


def peak_fp16_tflops(gpu_name: str) -> float | None:
    return next((v for k, v in PEAK_FP16_TFLOPS.items() if k in gpu_name), None)
