"""Export the fused ops as custom ONNX nodes (domain ``medinfer``, opset version 1) for TensorRT plugins.

By default the ops export as standard ONNX operators (their references are traced). Inside
:func:`plugin_nodes`, ``torch.onnx.export(..., dynamo=True)`` records every call the fused kernels cover
as one custom node instead — provided the exporter also passes :func:`translation_table`::

    from medinfer.ops import onnx as ops_onnx
    with ops_onnx.plugin_nodes():
        torch.onnx.export(model, args, path, dynamo=True, custom_translation_table=ops_onnx.translation_table())

TensorRT then needs :func:`medinfer.ops.tensorrt_plugins.register_plugins` before parsing or
deserialising. Calls the kernels do not cover (see :func:`medinfer.ops.dilated_branches` and
:func:`medinfer.ops.octave_conv`) stay standard operators. :func:`reference_ops` evaluates the custom
nodes with ``onnx.reference.ReferenceEvaluator`` (through the PyTorch references), to check a plugin graph
without TensorRT.

Node schemas (T ∈ {float, float16, bfloat16}; every input and output has type T; NCHW layout):

``medinfer::DilatedBranches``
    inputs: ``X`` (N, C, H, W); ``W_0 … W_{B-1}`` (O, C, 3, 3); ``B_0 … B_{B-1}`` (O) — a branch without
    bias gets zeros; with ``epilogue = 1`` also ``P`` (CO, O, 1, 1), ``PB`` (CO) (zeros when absent) and
    ``R`` (N, CO, H, W).
    attributes: ``dilations`` (ints, B values ≥ 1; padding = dilation), ``epilogue`` (int 0/1),
    ``keep`` (ints, B flags; with the epilogue, which branch outputs are also returned).
    outputs: without the epilogue ``Y_0 … Y_{B-1}`` (N, O, H, W), the branch convolutions; with it
    ``OUT = R + Σ_k relu(conv1x1(Y_k, P, PB))`` (N, CO, H, W) followed by the ``Y_k`` with ``keep[k] = 1``.
    The fused epilogue is emitted for CO ≤ 256 only (``medinfer.ops.MAX_PROJECT_WIDTH``).

``medinfer::OctaveConv``
    inputs: ``X_h`` (N, Ch, H, W); ``X_l`` (N, Cl, ⌈H/2⌉, ⌈W/2⌉) if ``low_to_high`` or ``low_to_low``;
    ``W_hh`` (Oh, Ch, k, k); ``W_hl`` (Ol, Ch, k, k) if ``high_to_low``; ``W_lh`` (Oh, Cl, k, k) if
    ``low_to_high``; ``W_ll`` (Ol, Cl, k, k) if ``low_to_low``; k ∈ {1, 3}, 'same' padding.
    attributes: ``stride`` (int 1 or 2; 2 average-pools both inputs first), ``high_to_low``,
    ``low_to_high``, ``low_to_low`` (ints 0/1: which paths exist besides high-to-high).
    outputs: ``Y_h`` (N, Oh, H/stride, W/stride, rounded up), and ``Y_l`` (⌈·/2⌉ of that) if
    ``high_to_low`` — the semantics of :func:`medinfer.models.layers.octave_conv`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from medinfer.models import layers
from medinfer.ops._dispatch import FUSED_DTYPES

if TYPE_CHECKING:
    from medinfer.ops.dilated import DDCEpilogue

DOMAIN = "medinfer"
VERSION = 1
_ACTIVE = contextvars.ContextVar("medinfer_onnx_plugin_nodes", default=False)


@contextlib.contextmanager
def plugin_nodes() -> Iterator[None]:
    """Within this block, exported calls of the fused ops become ``medinfer::*`` custom nodes."""
    token = _ACTIVE.set(True)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def emitting_plugin_nodes(x: Tensor) -> bool:
    """Whether a call on ``x`` is being exported as a custom node right now."""
    return _ACTIVE.get() and torch.compiler.is_exporting() and x.dtype in FUSED_DTYPES


# ---------------------------------------------------------------------------------------------------------
# The custom ops torch.export records. Their eager bodies are the references, their fake bodies give shapes.
# ---------------------------------------------------------------------------------------------------------
@torch.library.custom_op("medinfer::dilated_branches", mutates_args=())
def _dilated_branches_op(x: Tensor, weights: list[Tensor], biases: list[Tensor | None], dilations: list[int],
                         project_weight: Tensor | None, project_bias: Tensor | None, residual: Tensor | None,
                         keep: list[bool]) -> list[Tensor]:
    ts = layers.dilated_branches(x, weights, biases, dilations)
    if project_weight is None:
        return ts
    out = layers.ddc_project_sum(residual, ts, project_weight, project_bias)
    return [out, *(t for t, k in zip(ts, keep, strict=True) if k)]


@_dilated_branches_op.register_fake
def _(x, weights, biases, dilations, project_weight, project_bias, residual, keep):
    n, _, h, w = x.shape
    ts = [x.new_empty(n, wt.shape[0], h, w) for wt in weights]
    if project_weight is None:
        return ts
    return [residual.new_empty(residual.shape), *(t for t, k in zip(ts, keep, strict=True) if k)]


@torch.library.custom_op("medinfer::octave_conv", mutates_args=())
def _octave_conv_op(x_h: Tensor, x_l: Tensor | None, w_hh: Tensor, w_hl: Tensor | None, w_lh: Tensor | None,
                    w_ll: Tensor | None, stride: int) -> list[Tensor]:
    y_h, y_l = layers.octave_conv(x_h, x_l, w_hh, w_hl, w_lh, w_ll, stride)
    return [y_h] if y_l is None else [y_h, y_l]


@_octave_conv_op.register_fake
def _(x_h, x_l, w_hh, w_hl, w_lh, w_ll, stride):
    n, _, h, w = x_h.shape
    if stride == 2:
        h, w = (h + 1) // 2, (w + 1) // 2
    y_h = x_h.new_empty(n, w_hh.shape[0], h, w)
    return [y_h] if w_hl is None else [y_h, x_h.new_empty(n, w_hl.shape[0], (h + 1) // 2, (w + 1) // 2)]


def dilated_branches_node(x: Tensor, weights: list[Tensor], biases: list[Tensor | None], dilations: list[int],
                          epilogue: DDCEpilogue | None = None, keep: Sequence[bool] = ()) -> list[Tensor]:
    """Record one ``medinfer::DilatedBranches`` call (used by :func:`medinfer.ops.dilated_branches`)."""
    if epilogue is None:
        return _dilated_branches_op(x, weights, biases, dilations, None, None, None, [False] * len(weights))
    return _dilated_branches_op(x, weights, biases, dilations, epilogue.weight, epilogue.bias, epilogue.residual,
                                list(keep))


def octave_conv_node(x_h: Tensor, x_l: Tensor | None, w_hh: Tensor, w_hl: Tensor | None, w_lh: Tensor | None,
                     w_ll: Tensor | None, stride: int) -> tuple[Tensor, Tensor | None]:
    """Record one ``medinfer::OctaveConv`` call (used by :func:`medinfer.ops.octave_conv`)."""
    out = _octave_conv_op(x_h, x_l, w_hh, w_hl, w_lh, w_ll, stride)
    return out[0], out[1] if len(out) > 1 else None


# ---------------------------------------------------------------------------------------------------------
# Translation to ONNX nodes (onnxscript, imported only when the exporter asks for the table)
# ---------------------------------------------------------------------------------------------------------
@functools.cache
def _schema(name: str, inputs: tuple[str, ...], outputs: tuple[str, ...], attributes: tuple[str, ...]):
    """An ONNX OpSchema for one arity of a variadic node; the exporter builds the node from it."""
    from onnx.defs import OpSchema

    types = ["tensor(float)", "tensor(float16)", "tensor(bfloat16)"]
    attr_type = {"dilations": OpSchema.AttrType.INTS, "keep": OpSchema.AttrType.INTS}
    return OpSchema(
        name, DOMAIN, VERSION, doc=f"medinfer's fused {name}; see medinfer.ops.onnx.",
        inputs=[OpSchema.FormalParameter(i, "T") for i in inputs],
        outputs=[OpSchema.FormalParameter(o, "T") for o in outputs],
        type_constraints=[("T", types, "fp32, fp16 or bf16")],
        attributes=[OpSchema.Attribute(a, attr_type.get(a, OpSchema.AttrType.INT), a) for a in attributes],
    )


def _node(name: str, inputs: list, input_names: Sequence[str], output_names: Sequence[str], **attributes) -> list:
    import onnxscript

    schema = _schema(name, tuple(input_names), tuple(output_names), tuple(attributes))
    out = onnxscript.values.Op(onnxscript.values.Opset(DOMAIN, VERSION), name, schema)(*inputs, **attributes)
    return list(out) if isinstance(out, Sequence) else [out]


def _zeros_like_bias(x, channels: int):
    """A zero bias of ``channels`` values in ``x``'s dtype (absent biases become explicit inputs)."""
    from onnxscript import opset18 as op

    return op.Expand(op.CastLike(op.Constant(value_float=0.0), x), op.Constant(value_ints=[channels]))


def _translate_dilated_branches(x, weights, biases, dilations, project_weight=None, project_bias=None,
                                residual=None, keep=()):
    b = len(weights)
    biases = [bias if bias is not None else _zeros_like_bias(x, wt.shape[0])
              for bias, wt in zip(biases, weights, strict=True)]
    inputs, names = [x, *weights, *biases], ["X", *(f"W_{k}" for k in range(b)), *(f"B_{k}" for k in range(b))]
    if project_weight is None:
        outputs = [f"Y_{k}" for k in range(b)]
    else:
        if project_bias is None:
            project_bias = _zeros_like_bias(x, project_weight.shape[0])
        inputs, names = inputs + [project_weight, project_bias, residual], names + ["P", "PB", "R"]
        outputs = ["OUT", *(f"Y_{k}" for k in range(b) if keep[k])]
    return _node("DilatedBranches", inputs, names, outputs, dilations=[int(d) for d in dilations],
                 epilogue=int(project_weight is not None), keep=[int(k) for k in keep])


def _translate_octave_conv(x_h, x_l, w_hh, w_hl, w_lh, w_ll, stride):
    hl, lh = w_hl is not None, x_l is not None and w_lh is not None
    ll = hl and x_l is not None and w_ll is not None
    present = [("X_h", x_h, True), ("X_l", x_l, lh or ll), ("W_hh", w_hh, True), ("W_hl", w_hl, hl),
               ("W_lh", w_lh, lh), ("W_ll", w_ll, ll)]
    used = [(name, t) for name, t, on in present if on]
    return _node("OctaveConv", [t for _, t in used], [name for name, _ in used], ["Y_h", "Y_l"] if hl else ["Y_h"],
                 stride=int(stride), high_to_low=int(hl), low_to_high=int(lh), low_to_low=int(ll))


def translation_table() -> dict[Any, Callable]:
    """What ``torch.onnx.export(..., dynamo=True, custom_translation_table=...)`` needs for the nodes."""
    return {torch.ops.medinfer.dilated_branches.default: _translate_dilated_branches,
            torch.ops.medinfer.octave_conv.default: _translate_octave_conv}


# ---------------------------------------------------------------------------------------------------------
# Evaluating the custom nodes without TensorRT: onnx.reference ops backed by the PyTorch references
# ---------------------------------------------------------------------------------------------------------
def reference_ops() -> list[type]:
    """``onnx.reference`` implementations of both nodes, for
    ``ReferenceEvaluator(model, new_ops=reference_ops())`` (float32/float16 graphs; numpy has no bf16)."""
    from onnx.reference.op_run import OpRun

    def t(a):
        return torch.from_numpy(a.copy())

    class DilatedBranches(OpRun):
        op_domain = DOMAIN

        def _run(self, x, *params, dilations=None, epilogue=0, keep=None):
            b = len(dilations)
            ws, bs = [t(p) for p in params[:b]], [t(p) for p in params[b:2 * b]]
            p = [t(a) for a in params[2 * b:]] if epilogue else [None, None, None]
            out = _dilated_branches_op(t(x), ws, bs, list(dilations), *p, [bool(k) for k in keep])
            return tuple(o.numpy() for o in out)

    class OctaveConv(OpRun):
        op_domain = DOMAIN

        def _run(self, x_h, *params, stride=1, high_to_low=0, low_to_high=0, low_to_low=0):
            it = iter(t(p) for p in params)
            x_l = next(it) if low_to_high or low_to_low else None
            w_hh = next(it)
            w_hl, w_lh, w_ll = (next(it) if on else None for on in (high_to_low, low_to_high, low_to_low))
            out = _octave_conv_op(t(x_h), x_l, w_hh, w_hl, w_lh, w_ll, int(stride))
            return tuple(o.numpy() for o in out)

    return [DilatedBranches, OctaveConv]
