"""medinfer.ops against their plain PyTorch references (``*_native``, beside each op).

* On the CPU, the Triton kernels run in Triton's interpreter (``TRITON_INTERPRET=1``, set by conftest) on
  fresh random inputs of odd shapes; with a GPU (``pytest -m gpu``) the compiled Triton kernels and the
  CUDA kernels of ``medinfer._C`` are tested at the model's shapes.
* Every kernel output is poisoned with NaN before the launch, so an element the kernel forgets to write fails.
* Tolerances, one table for everything (flash-attention's rule): the fused result's largest error against
  the float64 reference may be at most ``FACTOR`` times the largest error of the same computation done by
  PyTorch in that dtype on the same device, plus ``ULPS`` units in the last place of the output's largest
  magnitude (at least 1): the fused kernel rounds its result once where PyTorch may be lucky, and Triton's
  interpreter rounds fp32 → bf16 toward zero (compiled Triton rounds to nearest even), so on the CPU that one
  rounding can cost a whole ulp.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medinfer import backends, models, ops
from medinfer.errors import InputError
from medinfer.models import layers as L
from medinfer.ops import dilated, dispatch, octave

#: dtype: (FACTOR, ULPS) — see the module docstring.
TOLERANCES = {
    torch.float32: (2.0, 1),
    torch.float16: (2.0, 1),
    torch.bfloat16: (2.0, 1),
}
DTYPES = list(TOLERANCES)


# --- helpers ------------------------------------------------------------------------------------------------
def randn(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.from_numpy(rng.standard_normal(shape) * scale)


def weight(rng, out_ch: int, in_ch: int, k: int = 3) -> torch.Tensor:
    return randn(rng, out_ch, in_ch, k, k, scale=(in_ch * k * k) ** -0.5)


def cast(values, dtype, device="cpu"):
    """Tensors (possibly nested in lists/tuples/None) converted to dtype and device."""
    if isinstance(values, torch.Tensor):
        return values.to(device=device, dtype=dtype)
    if isinstance(values, (list, tuple)):
        return type(values)(cast(v, dtype, device) for v in values)
    return values  # None, dilations, flags


def assert_matches_reference(fused, reference, args, dtype, device="cpu"):
    """``fused`` (tensor or list of them) vs ``reference(*args)`` in float64 and in ``dtype`` (same device)."""
    exact = reference(*cast(args, torch.float64))
    at_dtype = reference(*cast(args, dtype, device))
    factor, ulps = TOLERANCES[dtype]
    for f, e, d in zip(_flat(fused), _flat(exact), _flat(at_dtype), strict=True):
        assert f.dtype == dtype and f.shape == e.shape
        assert torch.isfinite(f).all(), "unwritten (NaN-poisoned) or non-finite output elements"
        err = (f.double().cpu() - e).abs().max().item()
        base = (d.double().cpu() - e).abs().max().item()
        floor = ulps * torch.finfo(dtype).eps * max(1.0, e.abs().max().item())
        assert err <= factor * base + floor, (f"{dtype}: error {err:.3g} > {factor} × PyTorch's {base:.3g} + "
                                              f"{ulps} ulp ({floor:.3g})")


def _flat(x):
    return [t for t in (x if isinstance(x, (list, tuple)) else [x]) if t is not None]


@pytest.fixture
def poisoned(monkeypatch):
    """Kernel outputs start as NaN, so unwritten elements cannot pass as correct."""
    allocate = dispatch.empty_output

    def nan_filled(x, channels, h, w):
        return allocate(x, channels, h, w).fill_(float("nan"))

    for op in (dilated, octave):  # where each op allocates its kernels' outputs
        monkeypatch.setattr(op, "empty_output", nan_filled)


@pytest.fixture
def triton_cpu(poisoned):
    reason = backends.BACKENDS["triton"].unavailable_reason("cpu")
    if reason:
        pytest.skip(reason)


def ddc_reference(x, weights, biases, dilations, pw, pb, residual, keep):
    ts = dilated.dilated_branches_native(x, weights, biases, dilations)
    return [dilated.ddc_project_sum_native(residual, ts, pw, pb), *(t for t, k in zip(ts, keep, strict=True) if k)]


# --- Triton kernels in the interpreter, fresh odd shapes --------------------------------------------------------
# (N, C, H, W, O, dilations): odd sizes; the second needs several channel blocks and output-channel blocks.
BRANCH_CASES = [(2, 5, 13, 11, 7, (1, 3, 5)), (1, 37, 6, 5, 70, (1, 2))]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", BRANCH_CASES, ids=["odd", "blocks"])
def test_dilated_branches_triton(triton_cpu, rng, dtype, case):
    n, c, h, w, o, dil = case
    x = randn(rng, n, c, h, w)
    ws = [weight(rng, o, c) for _ in dil]
    bs = [randn(rng, o) if k != 1 else None for k in range(len(dil))]  # one branch without bias
    args = (x, ws, bs, dil)
    out = ops.dilated_branches(*cast(args[:3], dtype), dil, backend="triton")
    assert_matches_reference(out, dilated.dilated_branches_native, args, dtype)


# (N, C, H, W, O, CO, dilations, keep, projection bias): the DDC block's three calls, and chunked branches.
EPILOGUE_CASES = [
    (2, 5, 13, 11, 7, 6, (1, 3), (True, False), True),
    (1, 7, 9, 10, 7, 7, (5,), (False,), False),
    (1, 9, 7, 5, 40, 20, (3,), (True,), True),
    (1, 3, 6, 7, 5, 4, (1, 3), (False, True), False),  # the stored branch is not the first
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", EPILOGUE_CASES, ids=["level1", "level3", "chunks", "second-kept"])
def test_ddc_epilogue_triton(triton_cpu, rng, dtype, case):
    n, c, h, w, o, co, dil, keep, has_pb = case
    x, residual = randn(rng, n, c, h, w), randn(rng, n, co, h, w)
    ws, bs = [weight(rng, o, c) for _ in dil], [randn(rng, o) for _ in dil]
    pw, pb = weight(rng, co, o, 1), randn(rng, co) if has_pb else None
    args = (x, ws, bs, dil, pw, pb, residual, keep)
    t = cast(args, dtype)
    out = ops.dilated_branches(t[0], t[1], t[2], dil, epilogue=ops.DDCEpilogue(t[4], t[5], t[6], keep),
                               backend="triton")
    assert len(out) == 1 + sum(keep)
    assert_matches_reference(out, ddc_reference, args, dtype)


def test_wide_projection_runs_branches_fused_and_epilogue_as_reference(triton_cpu, rng, monkeypatch):
    from medinfer.kernels import dilated_branches as kernel

    launches = []
    plan = kernel.plan
    monkeypatch.setattr(kernel, "plan", lambda x, buf, *a, **k: launches.append(buf.out) or plan(x, buf, *a, **k))
    co = ops.MAX_PROJECT_WIDTH + 1
    x, ws, bs = randn(rng, 1, 3, 5, 4), [weight(rng, 4, 3)], [randn(rng, 4)]
    pw, residual = weight(rng, co, 4, 1), randn(rng, 1, co, 5, 4)
    args = (x, ws, bs, (3,), pw, None, residual, (True,))
    t = cast(args, torch.float32)
    out = ops.dilated_branches(t[0], t[1], t[2], (3,), epilogue=ops.DDCEpilogue(t[4], None, t[6], (True,)),
                               backend="triton")
    assert launches == [None]  # the branch kernel ran, without the epilogue
    assert_matches_reference(out, ddc_reference, args, torch.float32)


# (name, has x_l, has w_hl, kernel size): the model's layers — full 3×3, first and last 1×1 — and the rest.
PATHS = [("full", True, True, 3), ("first", False, True, 3), ("last", True, False, 3), ("full1x1", True, True, 1)]
OCTAVE_GRID = ([(torch.float32, p, s, (2, 5, 13, 11, 3, 4, 2)) for p in PATHS for s in (1, 2)]
               + [(d, PATHS[0], s, (2, 5, 13, 11, 3, 4, 2)) for d in DTYPES[1:] for s in (1, 2)]
               + [(torch.float32, PATHS[0], s, (1, 3, 1, 1, 2, 3, 2)) for s in (1, 2)]
               + [(torch.float16, PATHS[0], 2, (1, 37, 6, 5, 20, 70, 33))])


def octave_args(rng, path, shape):
    _, has_xl, has_hl, k = path
    n, ch, h, w, cl, oh, ol = shape
    x_h = randn(rng, n, ch, h, w)
    x_l = randn(rng, n, cl, (h + 1) // 2, (w + 1) // 2) if has_xl else None
    return (x_h, x_l, weight(rng, oh, ch, k), weight(rng, ol, ch, k) if has_hl else None,
            weight(rng, oh, cl, k) if has_xl else None, weight(rng, ol, cl, k) if has_xl and has_hl else None)


@pytest.mark.parametrize(("dtype", "path", "stride", "shape"), OCTAVE_GRID,
                         ids=[f"{d}-{p[0]}-s{s}-{'x'.join(map(str, sh[:4]))}" for d, p, s, sh in OCTAVE_GRID])
def test_octave_conv_triton(triton_cpu, rng, dtype, path, stride, shape):
    args = octave_args(rng, path, shape)
    out = ops.octave_conv(*cast(args, dtype), stride=stride, backend="triton")
    assert (out[1] is None) == (args[3] is None)
    assert_matches_reference(out, lambda *a: octave.octave_conv_native(*a, stride), args, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_dense_atrous_block_with_triton(triton_cpu, rng, monkeypatch, dtype):
    block = L.DenseAtrousBlock(6).double().eval()
    for p in block.parameters():
        torch.nn.init.normal_(p, 0.0, 0.2)
    x = randn(rng, 2, 6, 9, 11)
    monkeypatch.setenv("MEDINFER_OPS_BACKEND", "triton")
    with torch.no_grad():
        fused = block.to(dtype)(x.to(dtype))
        monkeypatch.setenv("MEDINFER_OPS_BACKEND", "torch")
        assert_matches_reference(fused, lambda xx: block.to(xx.dtype)(xx), (x,), dtype)


def test_channels_last_models_run_without_copying_weights(triton_cpu, rng, monkeypatch):
    # model.to(memory_format=torch.channels_last) — as the GPU engine does — makes the weights channels-last too.
    block = L.DenseAtrousBlock(6).eval().to(memory_format=torch.channels_last)
    conv = L.OctaveConv((5, 3), (4, 2), 3, 2).eval().to(memory_format=torch.channels_last)
    for p in (*block.parameters(), *conv.parameters()):
        torch.nn.init.normal_(p, 0.0, 0.3)
    weights = [block.d1.weight, block.d3.weight, conv.w_hh, conv.w_hl, conv.w_lh, conv.w_ll]
    laid_out, channels_last = dispatch.weight_layout(weights)
    assert channels_last and [w.data_ptr() for w in laid_out] == [w.data_ptr() for w in weights]
    x = randn(rng, 2, 6, 9, 11).float().contiguous(memory_format=torch.channels_last)
    x_h = randn(rng, 2, 5, 9, 11).float().contiguous(memory_format=torch.channels_last)
    x_l = randn(rng, 2, 3, 5, 6).float().contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        monkeypatch.setenv("MEDINFER_OPS_BACKEND", "torch")
        expected = [block(x), *conv((x_h, x_l))]
        monkeypatch.setenv("MEDINFER_OPS_BACKEND", "triton")
        got = [block(x), *conv((x_h, x_l))]
    for g, e in zip(got, expected, strict=True):
        assert g.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-5)


def test_whole_model_with_triton_matches_the_reference(triton_cpu, rng, monkeypatch):
    model = models.create("ddc_resnet101", layers=(1, 1, 1, 1), planes=(8, 8, 16, 16), head_width=8,
                          stem_width=8).eval()
    x = randn(rng, 1, 1, 12, 12).float()
    with torch.no_grad():
        monkeypatch.setenv("MEDINFER_OPS_BACKEND", "torch")
        expected = model(x)
        monkeypatch.setenv("MEDINFER_OPS_BACKEND", "triton")
        got = model(x)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


# --- the CPU default stays the reference, bit for bit ---------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_cpu_modules_compute_exactly_the_reference(rng, dtype):
    block = L.DenseAtrousBlock(5).to(dtype)
    for p in block.parameters():
        torch.nn.init.normal_(p, 0.0, 0.3)
    x = randn(rng, 2, 5, 13, 11).to(dtype)
    expected = x
    for t in block.branches(x):
        expected = expected + F.relu(block.project(t))
    assert torch.equal(block(x), expected)

    conv = L.OctaveConv((5, 3), (4, 2), 3, 2).to(dtype)
    x_l = randn(rng, 2, 3, 7, 6).to(dtype)
    got, want = conv((x, x_l)), octave.octave_conv_native(x, x_l, conv.w_hh, conv.w_hl, conv.w_lh, conv.w_ll, 2)
    assert all(torch.equal(g, e) for g, e in zip(got, want, strict=True))


# --- routing: what runs the reference instead of a kernel -------------------------------------------------------
@pytest.fixture
def kernels_forbidden(triton_cpu, monkeypatch):
    """The Triton launchers fail the test if called."""
    def forbidden(*args, **kwargs):
        raise AssertionError("a fused kernel ran where the reference should have")

    for op in (dilated, octave):
        monkeypatch.setitem(op.LAUNCHERS, "triton", forbidden)


def test_autograd_and_float64_run_the_reference(kernels_forbidden, rng):
    x = randn(rng, 1, 3, 6, 5)
    ws, bs = [weight(rng, 4, 3)], [randn(rng, 4)]
    assert torch.equal(ops.dilated_branches(x, ws, bs, (3,), backend="triton")[0],
                       dilated.dilated_branches_native(x, ws, bs, (3,))[0])  # float64
    xf, wf = x.float().requires_grad_(), ws[0].float()
    (y,) = ops.dilated_branches(xf, [wf], [bs[0].float()], (3,), backend="triton")  # autograd records
    y.sum().backward()
    assert xf.grad is not None and xf.grad.shape == xf.shape


@pytest.mark.parametrize(("has_xl", "has_hl", "k"), [(False, False, 3), (True, True, 5)], ids=["plain", "5x5"])
def test_octave_cases_without_a_kernel_run_the_reference(kernels_forbidden, rng, has_xl, has_hl, k):
    args = cast(octave_args(rng, ("", has_xl, has_hl, k), (1, 4, 7, 6, 2, 3, 2)), torch.float32)
    got = ops.octave_conv(*args, stride=2, backend="triton")
    want = octave.octave_conv_native(*args, 2)
    assert all(g is e is None or torch.equal(g, e) for g, e in zip(got, want, strict=True))


def test_explicit_backends_that_cannot_run_say_why(monkeypatch):
    x, w = torch.randn(1, 2, 5, 5), torch.randn(2, 2, 3, 3)
    with pytest.raises(backends.BackendUnavailable, match="cannot run on cpu: the CUDA kernels run on GPU tensors"):
        ops.dilated_branches(x, [w], [None], [1], backend="cuda")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setenv("MEDINFER_OPS_BACKEND", "triton")
    with pytest.raises(backends.BackendUnavailable, match="MEDINFER_OPS_BACKEND.*TRITON_INTERPRET=1"):
        ops.octave_conv(x, None, w, w, None, None)


# --- validation ----------------------------------------------------------------------------------------------
def test_invalid_calls_are_rejected_with_the_reason():
    x, w = torch.randn(1, 4, 5, 5), torch.randn(3, 4, 3, 3)
    cases = [
        (lambda: ops.dilated_branches(x, [w, w], [None], [1, 3]), "one weight, bias and dilation per branch"),
        (lambda: ops.dilated_branches(x, [torch.randn(3, 5, 3, 3)], [None], [1]), r"weights\[0\] has shape"),
        (lambda: ops.dilated_branches(x, [w.double()], [None], [1]), "float64 on cpu; expected torch.float32"),
        (lambda: ops.dilated_branches(x, [w], [None], [0]), "positive integer"),
        (lambda: ops.dilated_branches(x, [w], [None], [1], epilogue=ops.DDCEpilogue(
            torch.randn(4, 3, 1, 1), None, x, keep=(True, True))), "2 flags for 1 branches"),
        (lambda: ops.octave_conv(x, torch.randn(1, 2, 2, 2), w, None, torch.randn(3, 2, 3, 3), None),
         r"x_l has shape \(1, 2, 2, 2\); expected \(1, \*, 3, 3\)"),
        (lambda: ops.octave_conv(x, None, w, None, None, torch.randn(2, 2, 3, 3)), "need a low-frequency input"),
        (lambda: ops.octave_conv(x, None, w, None, None, None, stride=3), "stride 1 or 2"),
    ]
    for call, message in cases:
        with pytest.raises(InputError, match=message):
            call()


# --- on a GPU: compiled Triton and the CUDA kernels at the model's shapes --------------------------------------------
GPU_BACKENDS = ["triton", "cuda"]
# The model's DDC widths and maps at 64×64 input (stage 1–4, head), batch 4.
DDC_SHAPES = [(32, 16), (64, 8), (128, 4), (256, 2), (256, 4)]
# The model's octave 3×3 groups (high, low channels, map, stride).
OCTAVE_SHAPES = [(12, 4, 16, 1), (24, 8, 16, 2), (48, 16, 4, 1), (96, 32, 4, 2), (96, 32, 2, 1)]


def gpu_backend(name: str) -> str:
    reason = backends.BACKENDS[name].unavailable_reason("cuda")
    if reason:
        pytest.skip(reason)
    return name


@pytest.mark.gpu
@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("width", "size"), DDC_SHAPES)
def test_ddc_calls_on_gpu(poisoned, rng, backend, dtype, width, size):
    backend = gpu_backend(backend)
    x, residual = randn(rng, 4, width, size, size), randn(rng, 4, width, size, size)
    ws, bs = [weight(rng, width, width) for _ in range(2)], [randn(rng, width) for _ in range(2)]
    pw, pb = weight(rng, width, width, 1), randn(rng, width)
    for dil, keep in (((1, 3), (True, False)), ((1, 3), (False, True)), ((3,), (True,)), ((5,), (False,))):
        k = len(dil)
        args = (x, ws[:k], bs[:k], dil, pw, pb, residual, keep)
        t = cast(args, dtype, "cuda")
        out = ops.dilated_branches(t[0], t[1], t[2], dil, epilogue=ops.DDCEpilogue(t[4], t[5], t[6], keep),
                                   backend=backend)
        assert_matches_reference(out, ddc_reference, args, dtype, "cuda")
        plain = ops.dilated_branches(t[0], t[1], t[2], dil, backend=backend)
        assert_matches_reference(plain, dilated.dilated_branches_native, args[:4], dtype, "cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", OCTAVE_SHAPES, ids=str)
@pytest.mark.parametrize("path", PATHS, ids=[p[0] for p in PATHS])
def test_octave_conv_on_gpu(poisoned, rng, backend, dtype, shape, path):
    backend = gpu_backend(backend)
    ch, cl, size, stride = shape
    args = octave_args(rng, path, (4, ch, size + 1, size, cl, ch, cl))  # one odd side
    out = ops.octave_conv(*cast(args, dtype, "cuda"), stride=stride, backend=backend)
    assert_matches_reference(out, lambda *a: octave.octave_conv_native(*a, stride), args, dtype, "cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last], ids=["nchw", "channels_last"])
def test_ddc_resnet101_forward_on_gpu(rng, monkeypatch, backend, dtype, layout):
    backend = gpu_backend(backend)
    model = models.create("ddc_resnet101").eval().to("cuda", dtype, memory_format=layout)
    x = randn(rng, 8, 1, 64, 64).to("cuda", dtype).contiguous(memory_format=layout)
    with torch.inference_mode():
        monkeypatch.setenv("MEDINFER_OPS_BACKEND", "torch")
        expected = model(x).float()
        monkeypatch.setenv("MEDINFER_OPS_BACKEND", backend)
        got = model(x).float()
    scale = expected.abs().max().item()
    assert (got - expected).abs().max().item() <= (2e-2 if dtype == torch.float16 else 2e-3) * max(scale, 1.0)
