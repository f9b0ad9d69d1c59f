"""Latency (batch 1) and throughput (batch sweep) per backend, both models at their input sizes: PyTorch eager
(baseline) vs ONNX Runtime on the CPU; on a GPU also fp16, CUDA graphs, the fused kernels and TensorRT.

    pytest benchmarks/bench_engines.py --benchmark-json=benchmarks/results/engines-<machine>.json
"""

from __future__ import annotations

import pytest

from medinfer.bench import cases
from medinfer.bench.suite import GPU_BATCH, SWEEPS


@pytest.fixture(scope="module")
def sweeps(artefacts):
    return {m: {c.batch: c for c in cases.engine_comparisons(artefacts(m), bs)} for m, bs in SWEEPS.items()}


@pytest.mark.parametrize("role", ["baseline", "candidate"])
@pytest.mark.parametrize(("model", "batch"), [(m, b) for m, bs in SWEEPS.items() for b in bs])
def test_cpu_backends(compare, sweeps, model, batch, role):
    compare(sweeps[model][batch], role)


@pytest.fixture(scope="module")
def gpu(artefacts):
    out = {}
    for model in SWEEPS:
        comparisons, skipped = cases.gpu_comparisons(artefacts(model), GPU_BATCH)
        out[model] = ({c.candidate_label: c for c in comparisons}, [s.reason for s in skipped])
    return out


@pytest.mark.gpu
@pytest.mark.parametrize("side", ["baseline", *cases.GPU_CANDIDATES])
@pytest.mark.parametrize("model", list(SWEEPS))
def test_gpu_backends(compare, gpu, model, side):
    by_label, skipped = gpu[model]
    if not by_label:
        pytest.skip("; ".join(skipped) or "no GPU comparison can run here")
    if side == "baseline":  # every GPU candidate shares the fp32 eager baseline and the group
        compare(next(iter(by_label.values())), "baseline")
    elif side in by_label:
        compare(by_label[side], "candidate")
    else:
        pytest.skip("; ".join(skipped) or f"{side} unavailable")
