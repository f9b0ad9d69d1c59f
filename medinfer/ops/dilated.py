"""``medinfer.ops.dilated_branches``: several dilated 3×3 convolutions of one input, with the DDC epilogue.

Everything about this op lives here, in the order a reader needs it:

1. the plain PyTorch reference (:func:`dilated_branches_native`, :func:`ddc_project_sum_native`) — the
   contract, the CPU and training path, the test reference and the standard-operator export;
2. the public op: validation, and dispatch through the one backend registry;
3. the launches of the fused kernels: Triton (``medinfer.kernels.dilated_branches``, which is handed the
   buffers allocated here) and CUDA (``medinfer._C``);
4. the ``medinfer::DilatedBranches`` ONNX node: the custom op ``torch.export`` records, its translation to
   ONNX, and its ``onnx.reference`` evaluation (schemas in :mod:`medinfer.ops.onnx`);
5. the op-specific half of the TensorRT plugin (:mod:`medinfer.ops.tensorrt_plugins` wraps it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from medinfer.errors import InputError
from medinfer.ops import onnx as ops_onnx
from medinfer.ops.dispatch import (
    NATIVE_DTYPES,
    backend_for,
    check_4d,
    check_like,
    empty_output,
    linear_tensor,
    native_ptr,
    native_tensor,
    weight_layout,
)

if TYPE_CHECKING:
    import tensorrt as trt

#: Widest projection the fused epilogue holds on chip; wider ones run the branches fused and the epilogue
#: as the reference.
MAX_PROJECT_WIDTH = 256


# ---------------------------------------------------------------------------------------------------------
# 1. Reference
# ---------------------------------------------------------------------------------------------------------
def dilated_branches_native(x: Tensor, weights: Sequence[Tensor], biases: Sequence[Tensor | None],
                            dilations: Sequence[int]) -> list[Tensor]:
    """3×3 convolutions of one input with several dilations (padding = dilation, stride 1), one output per
    branch."""
    if not len(weights) == len(biases) == len(dilations):
        raise ValueError("dilated_branches: weights, biases and dilations must have equal length")
    return [F.conv2d(x, w, b, padding=d, dilation=d) for w, b, d in zip(weights, biases, dilations, strict=True)]


def ddc_project_sum_native(residual: Tensor, branches: Sequence[Tensor], weight: Tensor,
                           bias: Tensor | None) -> Tensor:
    """The fused epilogue: the end of the dense atrous block, ``residual + Σ_k relu(conv1x1(t_k, weight,
    bias))``, summed in branch order."""
    out = residual
    for t in branches:
        out = out + F.relu(F.conv2d(t, weight, bias))
    return out


def _native(x, weights, biases, dilations, epilogue: DDCEpilogue | None, keep) -> list[Tensor]:
    ts = dilated_branches_native(x, weights, biases, dilations)
    return ts if epilogue is None else _with_epilogue(ts, epilogue, keep)


def _with_epilogue(ts: list[Tensor], epilogue: DDCEpilogue, keep: Sequence[bool]) -> list[Tensor]:
    out = ddc_project_sum_native(epilogue.residual, ts, epilogue.weight, epilogue.bias)
    return [out, *(t for t, k in zip(ts, keep, strict=True) if k)]


# ---------------------------------------------------------------------------------------------------------
# 2. The op
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DDCEpilogue:
    """What the DDC block does with the branch outputs ``t_k``:
    ``out = residual + Σ_k relu(conv1x1(t_k, weight, bias))`` (reference: :func:`ddc_project_sum_native`).

    ``weight`` is the 1×1 convolution's ``(CO, O, 1, 1)`` weight, ``residual`` is ``(N, CO, H, W)``, and
    ``keep`` says which ``t_k`` the caller still needs (default: none); the others are never written.
    """

    weight: Tensor
    bias: Tensor | None
    residual: Tensor
    keep: Sequence[bool] = ()


def dilated_branches(x: Tensor, weights: Sequence[Tensor], biases: Sequence[Tensor | None],
                     dilations: Sequence[int], *, epilogue: DDCEpilogue | None = None,
                     backend: str | None = None) -> list[Tensor]:
    """3×3 convolutions of ``x`` with each ``(weight, bias, dilation)`` (padding = dilation, stride 1),
    computed in one kernel that reads the input once for all branches.

    Returns the branch outputs, like :func:`dilated_branches_native`; with an ``epilogue``, returns
    ``[out, *(t_k for k where epilogue.keep[k])]`` instead.

    ``backend`` is ``"torch"`` (the reference), ``"triton"``, ``"cuda"`` or ``None`` for the fastest
    available on ``x``'s device (``medinfer.backends``; ``MEDINFER_OPS_BACKEND`` overrides). The fused
    kernels cover fp32/fp16/bf16 with branches of equal width; the reference runs instead — on any backend
    — for other dtypes, branches of different widths, calls traced by ``torch.compile``/``torch.export``,
    and while autograd records (the kernels are inference-only: run under ``torch.inference_mode()``).
    An epilogue projecting to more than :data:`MAX_PROJECT_WIDTH` channels runs the branches fused and
    the epilogue as the reference.
    """
    weights, biases, dilations = list(weights), list(biases), [int(d) for d in dilations]
    keep = validate(x, weights, biases, dilations, epilogue)
    covered, fused_epilogue = kernel_covers(weights, epilogue)
    if covered and ops_onnx.emitting_plugin_nodes(x):
        if epilogue is None or fused_epilogue:
            return _record_node(x, weights, biases, dilations, epilogue, keep)
        return _with_epilogue(_record_node(x, weights, biases, dilations, None, ()), epilogue, keep)
    tensors = [x, *weights, *biases]
    if epilogue is not None:
        tensors += [epilogue.weight, epilogue.bias, epilogue.residual]
    name = backend_for(tensors, backend, covered)
    if name == "torch":
        return _native(x, weights, biases, dilations, epilogue, keep)
    if fused_epilogue:
        return LAUNCHERS[name](x, weights, biases, dilations, epilogue, keep)
    ts = LAUNCHERS[name](x, weights, biases, dilations, None, ())
    return ts if epilogue is None else _with_epilogue(ts, epilogue, keep)


def planned_launch(x: Tensor, weights: Sequence[Tensor], biases: Sequence[Tensor | None], dilations: Sequence[int],
                   *, epilogue: DDCEpilogue | None = None):
    """The Triton launch a call with these arguments makes on a GPU (what the AOT report compiles), or
    ``None`` when the reference runs it; the same rules as :func:`dilated_branches`."""
    weights, biases, dilations = list(weights), list(biases), [int(d) for d in dilations]
    keep = validate(x, weights, biases, dilations, epilogue)
    covered, fused_epilogue = kernel_covers(weights, epilogue)
    if not covered:
        return None
    if fused_epilogue:
        return triton_launch(x, weights, biases, dilations, epilogue, keep)
    return triton_launch(x, weights, biases, dilations, None, ())


def kernel_covers(weights: Sequence[Tensor], epilogue: DDCEpilogue | None) -> tuple[bool, bool]:
    """Whether the fused kernels take a (validated) call — branches of one width — and whether they also
    fuse its epilogue (projections of at most :data:`MAX_PROJECT_WIDTH` channels)."""
    return (len({w.shape[0] for w in weights}) == 1,
            epilogue is not None and epilogue.weight.shape[0] <= MAX_PROJECT_WIDTH)


def validate(x: Tensor, weights: list[Tensor], biases: list[Tensor | None], dilations: list[int],
             epilogue: DDCEpilogue | None) -> tuple[bool, ...]:
    """Check the call; return the epilogue's ``keep`` flags, one per branch."""
    check_4d("x", x)
    if not weights or not len(weights) == len(biases) == len(dilations):
        raise InputError(f"dilated_branches needs one weight, bias and dilation per branch; got {len(weights)} "
                         f"weights, {len(biases)} biases, {len(dilations)} dilations")
    c = x.shape[1]
    for k, (w, b, d) in enumerate(zip(weights, biases, dilations, strict=True)):
        check_like(f"weights[{k}]", w, x, (None, c, 3, 3))
        check_like(f"biases[{k}]", b, x, (w.shape[0],))
        if d < 1:
            raise InputError(f"dilations[{k}] must be a positive integer, got {d}")
    if epilogue is None:
        return ()
    o = weights[0].shape[0]
    if any(w.shape[0] != o for w in weights):
        raise InputError(f"the DDC epilogue projects branches of one width; got {[w.shape[0] for w in weights]}")
    co = epilogue.weight.shape[0]
    check_like("epilogue.weight", epilogue.weight, x, (co, o, 1, 1))
    check_like("epilogue.bias", epilogue.bias, x, (co,))
    check_like("epilogue.residual", epilogue.residual, x, (x.shape[0], co, *x.shape[2:]))
    keep = tuple(bool(k) for k in epilogue.keep) or (False,) * len(weights)
    if len(keep) != len(weights):
        raise InputError(f"epilogue.keep has {len(keep)} flags for {len(weights)} branches")
    return keep


# ---------------------------------------------------------------------------------------------------------
# 3. Kernel launches
# ---------------------------------------------------------------------------------------------------------
@dataclass
class BranchBuffers:
    """What a kernel launch reads and writes, allocated and laid out on the host."""

    weights: list[Tensor]  # (O, C, 3, 3), all contiguous or all channels-last
    weights_channels_last: bool
    biases: list[Tensor | None]
    outputs: list[Tensor | None]  # per branch; None: not written (an epilogue that does not keep it)
    project_weight: Tensor | None  # contiguous (CO, O)
    project_bias: Tensor | None
    residual: Tensor | None
    out: Tensor | None  # (N, CO, H, W), with the epilogue

    def results(self) -> list[Tensor]:
        """The op's return value: branch outputs, or ``[out, *kept branches]``."""
        kept = [y for y in self.outputs if y is not None]
        return kept if self.out is None else [self.out, *kept]


def buffers(x: Tensor, weights: Sequence[Tensor], biases: Sequence[Tensor | None], epilogue: DDCEpilogue | None,
            keep: Sequence[bool]) -> BranchBuffers:
    """Buffers for a validated call whose epilogue (if any) the kernels fuse."""
    n, _, h, w = x.shape
    o = weights[0].shape[0]
    store = [bool(k) for k in keep] if epilogue is not None else [True] * len(weights)
    pw = epilogue.weight.reshape(epilogue.weight.shape[0], o).contiguous() if epilogue is not None else None
    laid_out, channels_last = weight_layout(weights)
    return BranchBuffers(
        weights=laid_out,
        weights_channels_last=channels_last,
        biases=[b.contiguous() if b is not None else None for b in biases],
        outputs=[empty_output(x, o, h, w) if s else None for s in store],
        project_weight=pw,
        project_bias=epilogue.bias.contiguous() if epilogue is not None and epilogue.bias is not None else None,
        residual=epilogue.residual if epilogue is not None else None,
        out=empty_output(x, pw.shape[0], h, w) if pw is not None else None,
    )


def triton_launch(x: Tensor, weights: Sequence[Tensor], biases: Sequence[Tensor | None], dilations: Sequence[int],
                  epilogue: DDCEpilogue | None, keep: Sequence[bool]):
    """The Triton kernel's planned launch (``medinfer.kernels.conv_common.Launch``) for a validated call
    whose epilogue (if any) it fuses; the AOT report compiles exactly this."""
    from medinfer.kernels import dilated_branches as kernel

    return kernel.plan(x, buffers(x, weights, biases, epilogue, keep), dilations, max_project_width=MAX_PROJECT_WIDTH)


def _run_triton(x, weights, biases, dilations, epilogue, keep) -> list[Tensor]:
    return triton_launch(x, weights, biases, dilations, epilogue, keep)()


def _run_cuda(x, weights, biases, dilations, epilogue, keep) -> list[Tensor]:
    from medinfer import _ext

    buf = buffers(x, weights, biases, epilogue, keep)
    n, _, h, w = x.shape
    absent = (0, (n, buf.weights[0].shape[0], h, w), (0, 0, 0, 0))  # a branch the epilogue does not keep
    with torch.cuda.device(x.device):
        _ext.require().cuda_dilated_branches(
            NATIVE_DTYPES[x.dtype], native_tensor(x), [native_ptr(t) for t in buf.weights], buf.weights_channels_last,
            [native_ptr(t) for t in buf.biases], [int(d) for d in dilations],
            [native_tensor(y) if y is not None else absent for y in buf.outputs],
            native_ptr(buf.project_weight), native_ptr(buf.project_bias), native_tensor(buf.residual),
            native_tensor(buf.out), torch.cuda.current_stream(x.device).cuda_stream)
    return buf.results()


#: backend -> launcher(x, weights, biases, dilations, fused epilogue or None, keep) -> the op's results
LAUNCHERS = {"triton": _run_triton, "cuda": _run_cuda}


# ---------------------------------------------------------------------------------------------------------
# 4. ONNX node medinfer::DilatedBranches (schema in medinfer.ops.onnx)
# ---------------------------------------------------------------------------------------------------------
@torch.library.custom_op("medinfer::dilated_branches", mutates_args=())
def _dilated_branches_op(x: Tensor, weights: list[Tensor], biases: list[Tensor | None], dilations: list[int],
                         project_weight: Tensor | None, project_bias: Tensor | None, residual: Tensor | None,
                         keep: list[bool]) -> list[Tensor]:
    # What torch.export records; the eager body (the reference) also evaluates the node in onnx.reference.
    ts = dilated_branches_native(x, weights, biases, dilations)
    if project_weight is None:
        return ts
    out = ddc_project_sum_native(residual, ts, project_weight, project_bias)
    return [out, *(t for t, k in zip(ts, keep, strict=True) if k)]


@_dilated_branches_op.register_fake
def _(x, weights, biases, dilations, project_weight, project_bias, residual, keep):
    n, _, h, w = x.shape
    ts = [x.new_empty(n, wt.shape[0], h, w) for wt in weights]
    if project_weight is None:
        return ts
    return [residual.new_empty(residual.shape), *(t for t, k in zip(ts, keep, strict=True) if k)]


def _record_node(x, weights, biases, dilations, epilogue: DDCEpilogue | None, keep) -> list[Tensor]:
    if epilogue is None:
        return _dilated_branches_op(x, weights, biases, dilations, None, None, None, [False] * len(weights))
    return _dilated_branches_op(x, weights, biases, dilations, epilogue.weight, epilogue.bias, epilogue.residual,
                                list(keep))


def translate(x, weights, biases, dilations, project_weight=None, project_bias=None, residual=None, keep=()):
    """The recorded custom op as one ``medinfer::DilatedBranches`` node (onnxscript)."""
    b = len(weights)
    biases = [bias if bias is not None else ops_onnx.zeros_like_bias(x, wt.shape[0])
              for bias, wt in zip(biases, weights, strict=True)]
    inputs, names = [x, *weights, *biases], ["X", *(f"W_{k}" for k in range(b)), *(f"B_{k}" for k in range(b))]
    if project_weight is None:
        outputs = [f"Y_{k}" for k in range(b)]
    else:
        if project_bias is None:
            project_bias = ops_onnx.zeros_like_bias(x, project_weight.shape[0])
        inputs, names = inputs + [project_weight, project_bias, residual], names + ["P", "PB", "R"]
        outputs = ["OUT", *(f"Y_{k}" for k in range(b) if keep[k])]
    return ops_onnx.node("DilatedBranches", inputs, names, outputs, dilations=[int(d) for d in dilations],
                         epilogue=int(project_weight is not None), keep=[int(k) for k in keep])


def evaluate_node(x: Tensor, params: list[Tensor], *, dilations, epilogue=0, keep=None) -> list[Tensor]:
    """The node's outputs for its inputs and attributes (``onnx.reference`` evaluation, via the reference)."""
    b = len(dilations)
    p = params[2 * b:] if epilogue else [None, None, None]
    return _dilated_branches_op(x, params[:b], params[b:2 * b], list(dilations), *p, [bool(k) for k in keep])


# ---------------------------------------------------------------------------------------------------------
# 5. TensorRT plugin: the op-specific half
# ---------------------------------------------------------------------------------------------------------
class TensorRTPlugin:
    """``medinfer::DilatedBranches`` in TensorRT: inputs X, W_k…, B_k… [, P, PB, R]; integer fields
    ``dilations``, ``epilogue``, ``keep``. Enqueues the CUDA kernel on TensorRT's pointers and stream."""

    NAME = "DilatedBranches"
    FIELDS = ("dilations", "epilogue", "keep")

    @staticmethod
    def output_count(fields: dict[str, list[int]]) -> int:
        if fields["epilogue"][0]:
            return 1 + sum(1 for k in fields["keep"] if k)
        return len(fields["dilations"])

    @staticmethod
    def output_shapes(fields: dict[str, list[int]], inputs: list[trt.DimsExprs],
                      expr_builder: trt.IExprBuilder) -> list[trt.DimsExprs]:
        import tensorrt as trt

        x, b = inputs[0], len(fields["dilations"])
        branch = trt.DimsExprs([x[0], inputs[1][0], x[2], x[3]])
        if not fields["epilogue"][0]:
            return [branch] * b
        out = trt.DimsExprs([x[0], inputs[1 + 2 * b][0], x[2], x[3]])
        return [out] + [branch for k in fields["keep"] if k]

    @staticmethod
    def enqueue(native: Any, fields: dict[str, list[int]], input_desc: list[trt.PluginTensorDesc],
                output_desc: list[trt.PluginTensorDesc], inputs: list[int], outputs: list[int], dtype: str,
                stream: int) -> None:
        b = len(fields["dilations"])
        x_dims, w_dims = input_desc[0].dims, input_desc[1].dims
        absent = linear_tensor(0, [x_dims[0], w_dims[0], x_dims[2], x_dims[3]])
        pw = pb = 0
        residual = out = None
        if fields["epilogue"][0]:
            pw, pb = inputs[1 + 2 * b], inputs[2 + 2 * b]
            residual = linear_tensor(inputs[3 + 2 * b], input_desc[3 + 2 * b].dims)
            out = linear_tensor(outputs[0], output_desc[0].dims)
            kept = iter(range(1, len(outputs)))
            ys = [linear_tensor(outputs[i], output_desc[i].dims) if k else absent
                  for k, i in ((k, next(kept) if k else -1) for k in fields["keep"])]
        else:
            ys = [linear_tensor(outputs[i], output_desc[i].dims) for i in range(b)]
        native.cuda_dilated_branches(dtype, linear_tensor(inputs[0], x_dims), list(inputs[1:1 + b]), False,
                                     list(inputs[1 + b:1 + 2 * b]), fields["dilations"], ys, pw, pb, residual, out,
                                     stream)
