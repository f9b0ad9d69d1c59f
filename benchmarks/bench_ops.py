"""The fused ops against PyTorch's cuDNN sequence at ddc_resnet101's real shapes (ROI batch 256, 64×64 input).

Groups, each with the reference as the same-run baseline and the Triton and CUDA kernels as candidates:

* ``ddc <width>@<size> <dtype>`` — a DDC block's dense atrous part (``DenseAtrousBlock.forward``: three
  ``ops.dilated_branches`` calls with the fused epilogue) at each stage's width and map, and the head's;
* ``octave <high>/<low>@<size> s<stride> <dtype>`` — the octave 3×3 convolution of each stage's MSFE groups;
* ``ddc_resnet101 <dtype>`` — the whole forward pass, with and without the fused kernels.

GPU only (skipped with the reason elsewhere). One command runs all and keeps the JSON with the device name::

    mkdir -p benchmarks/results && pytest benchmarks/bench_ops.py -m gpu \\
        --benchmark-json=benchmarks/results/ops-"$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 \\
        | tr ' ' _)".json

fp32 runs with PyTorch's defaults (cuDNN convolutions may use TF32; the Triton kernels follow the same switch,
the CUDA kernels compute exact fp32 on CUDA cores). Inputs rotate over several sets so repeated calls do not
measure a warm L2, and every timed call ends with a device synchronisation.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from medinfer import backends, models
from medinfer.models import layers as L

_GPU = backends.BACKENDS["torch"].unavailable_reason("cuda")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_GPU is not None, reason=f"needs a CUDA GPU: {_GPU}")]

BATCH = 256  # ROIs per call
INPUT_SETS = 4
DTYPES = {"fp16": torch.float16, "fp32": torch.float32}
BACKENDS = ["torch", "triton", "cuda"]  # torch = the reference (cuDNN): the baseline of every group
# (width, map) of each stage's DDC block at 64×64 input, then the DDC:4 head's.
DDC_SHAPES = [(32, 16), (64, 8), (128, 4), (256, 2), (256, 4)]
# (high, low channels, map of x_h, stride) of the MSFE octave 3×3 groups, stage by stage.
OCTAVE_SHAPES = [(12, 4, 16, 1), (24, 8, 16, 2), (24, 8, 8, 1), (48, 16, 8, 2), (48, 16, 4, 1), (96, 32, 4, 2),
                 (96, 32, 2, 1)]


def _available(backend: str) -> None:
    reason = backends.BACKENDS[backend].unavailable_reason("cuda")
    if reason:
        pytest.skip(f"{backend}: {reason}")


def _run(benchmark, group: str, backend: str, fn, inputs: list) -> None:
    """Time ``fn(*inputs[i])`` on rotating input sets under ``backend``; the reference is the baseline."""
    _available(backend)
    benchmark.group = group
    benchmark.extra_info.update(role="baseline" if backend == "torch" else "candidate", label=backend, items=BATCH)
    rotation = itertools.cycle(inputs)

    def call():
        fn(*next(rotation))
        torch.cuda.synchronize()

    with torch.inference_mode(), backends.forced("ops", backend):
        call()  # compile / load before timing
        benchmark.pedantic(call, rounds=50, iterations=1, warmup_rounds=5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("width", "size"), DDC_SHAPES, ids=[f"{w}@{s}" for w, s in DDC_SHAPES])
def test_ddc_block(benchmark, backend, dtype, width, size):
    block = L.DenseAtrousBlock(width).to("cuda", DTYPES[dtype]).eval()
    inputs = [(torch.randn(BATCH, width, size, size, device="cuda", dtype=DTYPES[dtype]),) for _ in range(INPUT_SETS)]
    _run(benchmark, f"ddc {width}@{size} {dtype}", backend, block, inputs)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", OCTAVE_SHAPES, ids=[f"{h}/{lo}@{s}s{st}" for h, lo, s, st in OCTAVE_SHAPES])
def test_octave_conv(benchmark, backend, dtype, shape):
    high, low, size, stride = shape
    conv = L.OctaveConv((high, low), (high, low), 3, stride).to("cuda", DTYPES[dtype]).eval()
    half = (size + 1) // 2
    inputs = [((torch.randn(BATCH, high, size, size, device="cuda", dtype=DTYPES[dtype]),
                torch.randn(BATCH, low, half, half, device="cuda", dtype=DTYPES[dtype])),) for _ in range(INPUT_SETS)]
    _run(benchmark, f"octave {high}/{low}@{size} s{stride} {dtype}", backend, conv, inputs)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_ddc_resnet101(benchmark, backend, dtype):
    model = models.create("ddc_resnet101").to("cuda", DTYPES[dtype]).eval()
    inputs = [(torch.randn(BATCH, 1, 64, 64, device="cuda", dtype=DTYPES[dtype]),) for _ in range(INPUT_SETS)]
    _run(benchmark, f"ddc_resnet101 {dtype}", backend, model, inputs)
