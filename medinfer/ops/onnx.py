"""Export the fused ops as custom ONNX nodes (domain ``medinfer``, opset version 1) for TensorRT plugins.

What every node shares lives here (the export switch, the node builder, the tables the exporter and
``onnx.reference`` take); each op's own custom op, translation and evaluation live with the op
(:mod:`medinfer.ops.dilated`, :mod:`medinfer.ops.octave`).

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
    ``high_to_low`` — the semantics of :func:`medinfer.ops.octave.octave_conv_native`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from medinfer.onnx_file import PLUGIN_DOMAIN as DOMAIN
from medinfer.ops.dispatch import FUSED_DTYPES

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
# Building nodes (onnxscript, imported only when the exporter translates)
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


def node(name: str, inputs: list, input_names: Sequence[str], output_names: Sequence[str], **attributes) -> list:
    """One ``medinfer::<name>`` node with these inputs, outputs and integer(-list) attributes."""
    import onnxscript

    schema = _schema(name, tuple(input_names), tuple(output_names), tuple(attributes))
    out = onnxscript.values.Op(onnxscript.values.Opset(DOMAIN, VERSION), name, schema)(*inputs, **attributes)
    return list(out) if isinstance(out, Sequence) else [out]


def zeros_like_bias(x, channels: int):
    """A zero bias of ``channels`` values in ``x``'s dtype (absent biases become explicit inputs)."""
    from onnxscript import opset18 as op

    return op.Expand(op.CastLike(op.Constant(value_float=0.0), x), op.Constant(value_ints=[channels]))


def translation_table() -> dict[Any, Callable]:
    """What ``torch.onnx.export(..., dynamo=True, custom_translation_table=...)`` needs for the nodes."""
    from medinfer.ops import dilated, octave

    return {torch.ops.medinfer.dilated_branches.default: dilated.translate,
            torch.ops.medinfer.octave_conv.default: octave.translate}


# ---------------------------------------------------------------------------------------------------------
# Evaluating the custom nodes without TensorRT: onnx.reference ops backed by the PyTorch references
# ---------------------------------------------------------------------------------------------------------
def reference_ops() -> list[type]:
    """``onnx.reference`` implementations of both nodes, for
    ``ReferenceEvaluator(model, new_ops=reference_ops())`` (float32/float16 graphs; numpy has no bf16)."""
    from onnx.reference.op_run import OpRun

    from medinfer.ops import dilated, octave

    def op_run(name: str, evaluate: Callable) -> type:
        def _run(self, x, *params, **attributes):
            out = evaluate(torch.from_numpy(x.copy()), [torch.from_numpy(p.copy()) for p in params], **attributes)
            return tuple(o.numpy() for o in out)

        return type(name, (OpRun,), {"op_domain": DOMAIN, "_run": _run})

    return [op_run("DilatedBranches", dilated.evaluate_node), op_run("OctaveConv", octave.evaluate_node)]
