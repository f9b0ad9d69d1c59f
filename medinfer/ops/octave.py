"""``medinfer.ops.octave_conv``: the four paths of an octave convolution (Chen et al., ICCV 2019) in one pass.

Everything about this op lives here, in the order a reader needs it:

1. the plain PyTorch reference (:func:`octave_conv_native`, with :func:`octave_pool` /
   :func:`octave_upsample`) — the contract, the CPU and training path, the test reference and the
   standard-operator export;
2. the public op: validation, and dispatch through the one backend registry;
3. the launches of the fused kernels: Triton (``medinfer.kernels.octave_conv``, which is handed the buffers
   allocated here) and CUDA (``medinfer._C``);
4. the ``medinfer::OctaveConv`` ONNX node: the custom op ``torch.export`` records, its translation to ONNX,
   and its ``onnx.reference`` evaluation (schemas in :mod:`medinfer.ops.onnx`);
5. the op-specific half of the TensorRT plugin (:mod:`medinfer.ops.tensorrt_plugins` wraps it).

Octave tensors travel as ``(high, low)`` pairs; ``low`` is ``None`` when a layer has no low-frequency
channels.
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

#: Kernel sizes the fused kernels implement ('same' padding k // 2).
FUSED_KERNEL_SIZES = (1, 3)


# ---------------------------------------------------------------------------------------------------------
# 1. Reference
# ---------------------------------------------------------------------------------------------------------
def octave_pool(x: Tensor) -> Tensor:
    """2×2 average pooling to the octave below; odd sizes round up (the last window averages what exists)."""
    return F.avg_pool2d(x, 2, 2, ceil_mode=True)


def octave_upsample(x: Tensor, size: Sequence[int]) -> Tensor:
    """2× nearest upsampling cropped to ``size``, the inverse geometry of :func:`octave_pool`."""
    return F.interpolate(x, scale_factor=2.0, mode="nearest")[..., : size[0], : size[1]]


def octave_conv_native(x_h: Tensor, x_l: Tensor | None, w_hh: Tensor, w_hl: Tensor | None, w_lh: Tensor | None,
                       w_ll: Tensor | None, stride: int = 1) -> tuple[Tensor, Tensor | None]:
    """Reference octave convolution, the contract of :func:`octave_conv`.

    ``y_h = conv(x_h, w_hh) + up(conv(x_l, w_lh))`` and ``y_l = conv(pool(x_h), w_hl) + conv(x_l, w_ll)``
    with 'same' padding, no bias. A path whose weight is ``None`` is absent (``alpha_in = 0`` or
    ``alpha_out = 0``). ``stride=2`` pools both inputs first, as in the authors' code, which keeps the
    two frequencies aligned; with no low-frequency side at all the layer is an ordinary convolution and
    strides as one, so ``alpha = 0`` reproduces the vanilla network exactly.
    """
    if stride not in (1, 2):
        raise ValueError(f"octave_conv supports stride 1 or 2, got {stride}")
    pad = w_hh.shape[-1] // 2
    if x_l is None and w_hl is None:
        return F.conv2d(x_h, w_hh, stride=stride, padding=pad), None
    if stride == 2:
        x_h = octave_pool(x_h)
        x_l = octave_pool(x_l) if x_l is not None else None
    y_h = F.conv2d(x_h, w_hh, padding=pad)
    if x_l is not None and w_lh is not None:
        y_h = y_h + octave_upsample(F.conv2d(x_l, w_lh, padding=pad), y_h.shape[-2:])
    y_l = None
    if w_hl is not None:
        y_l = F.conv2d(octave_pool(x_h), w_hl, padding=pad)
        if x_l is not None and w_ll is not None:
            y_l = y_l + F.conv2d(x_l, w_ll, padding=pad)
    return y_h, y_l


# ---------------------------------------------------------------------------------------------------------
# 2. The op
# ---------------------------------------------------------------------------------------------------------
def octave_conv(x_h: Tensor, x_l: Tensor | None, w_hh: Tensor, w_hl: Tensor | None, w_lh: Tensor | None,
                w_ll: Tensor | None, *, stride: int = 1, backend: str | None = None) -> tuple[Tensor, Tensor | None]:
    """Octave convolution (contract: :func:`octave_conv_native`)::

        y_h = conv(x_h, w_hh) + upsample2x_nearest(conv(x_l, w_lh))     (cropped to y_h's size)
        y_l = conv(avgpool2x(x_h), w_hl) + conv(x_l, w_ll)

    'same' padding, no bias; a ``None`` weight removes its path (first octave layer: no ``x_l``; last:
    no ``w_hl``, then ``y_l`` is ``None``); ``stride=2`` pools both inputs first; pooling rounds odd sizes
    up, averaging only existing pixels, and ``x_l`` must be ``(ceil(H/2), ceil(W/2))`` of ``x_h``.

    The fused kernels fold the pooling into the loads and the upsampling into the store (no intermediate
    tensor) for kernel sizes 1 and 3 in fp32/fp16/bf16. The reference runs instead — on any backend — when
    there is no low-frequency side at all (``x_l`` and ``w_hl`` both ``None``: an ordinary, possibly
    strided convolution, which cuDNN already does best), for other kernel sizes and dtypes, for calls
    traced by ``torch.compile``/``torch.export``, and while autograd records (inference-only kernels).
    ``backend`` as in :func:`medinfer.ops.dilated_branches`.
    """
    validate(x_h, x_l, w_hh, w_hl, w_lh, w_ll, stride)
    covered = kernel_covers(x_l, w_hh, w_hl)
    if covered and ops_onnx.emitting_plugin_nodes(x_h):
        out = _octave_conv_op(x_h, x_l, w_hh, w_hl, w_lh, w_ll, stride)
        return out[0], out[1] if len(out) > 1 else None
    name = backend_for((x_h, x_l, w_hh, w_hl, w_lh, w_ll), backend, covered)
    if name == "torch":
        return octave_conv_native(x_h, x_l, w_hh, w_hl, w_lh, w_ll, stride)
    return LAUNCHERS[name](x_h, x_l, w_hh, w_hl, w_lh, w_ll, stride)


def planned_launch(x_h: Tensor, x_l: Tensor | None, w_hh: Tensor, w_hl: Tensor | None, w_lh: Tensor | None,
                   w_ll: Tensor | None, *, stride: int = 1):
    """The Triton launch a call with these arguments makes on a GPU (what the AOT report compiles), or
    ``None`` when the reference runs it; the same rules as :func:`octave_conv`."""
    validate(x_h, x_l, w_hh, w_hl, w_lh, w_ll, stride)
    return triton_launch(x_h, x_l, w_hh, w_hl, w_lh, w_ll, stride) if kernel_covers(x_l, w_hh, w_hl) else None


def kernel_covers(x_l: Tensor | None, w_hh: Tensor, w_hl: Tensor | None) -> bool:
    """Whether the fused kernels take a (validated) call: a low-frequency side, kernel size 1 or 3."""
    return w_hh.shape[-1] in FUSED_KERNEL_SIZES and not (x_l is None and w_hl is None)


def validate(x_h: Tensor, x_l: Tensor | None, w_hh: Tensor, w_hl: Tensor | None, w_lh: Tensor | None,
             w_ll: Tensor | None, stride: int) -> None:
    check_4d("x_h", x_h)
    if stride not in (1, 2):
        raise InputError(f"octave_conv supports stride 1 or 2, got {stride}")
    n, ch, h, w = x_h.shape
    k = w_hh.shape[-1]
    if w_hh.dim() != 4 or k % 2 == 0:
        raise InputError(f"w_hh must be an (O, C, k, k) weight with odd k, got shape {tuple(w_hh.shape)}")
    check_like("w_hh", w_hh, x_h, (None, ch, k, k))
    oh, ol = w_hh.shape[0], w_hl.shape[0] if w_hl is not None else None
    check_like("w_hl", w_hl, x_h, (None, ch, k, k))
    cl = None
    if x_l is not None:
        cl = x_l.shape[1]
        check_like("x_l", x_l, x_h, (n, None, (h + 1) // 2, (w + 1) // 2))
    elif w_lh is not None or w_ll is not None:
        raise InputError("w_lh / w_ll need a low-frequency input x_l")
    if w_ll is not None and w_hl is None:
        raise InputError("w_ll needs w_hl: without a high-to-low path the layer has no low-frequency output")
    check_like("w_lh", w_lh, x_h, (oh, cl, k, k))
    check_like("w_ll", w_ll, x_h, (ol, cl, k, k))


# ---------------------------------------------------------------------------------------------------------
# 3. Kernel launches
# ---------------------------------------------------------------------------------------------------------
@dataclass
class OctaveBuffers:
    """What a kernel launch reads and writes; absent paths are ``None``."""

    w_hh: Tensor  # (O, C, k, k); the four all contiguous or all channels-last
    w_hl: Tensor | None
    w_lh: Tensor | None
    w_ll: Tensor | None
    weights_channels_last: bool
    y_h: Tensor
    y_l: Tensor | None


def buffers(x_h: Tensor, x_l: Tensor | None, w_hh: Tensor, w_hl: Tensor | None, w_lh: Tensor | None,
            w_ll: Tensor | None, stride: int) -> OctaveBuffers:
    """Buffers for the reference's semantics: L→H needs x_l and w_lh, H→L needs w_hl, L→L all three."""
    h, w = x_h.shape[2:]
    if stride == 2:
        h, w = (h + 1) // 2, (w + 1) // 2
    (w_hh, w_hl, w_lh, w_ll), channels_last = weight_layout(
        [w_hh, w_hl, w_lh if x_l is not None else None, w_ll if x_l is not None and w_hl is not None else None])
    return OctaveBuffers(
        w_hh=w_hh,
        w_hl=w_hl,
        w_lh=w_lh,
        w_ll=w_ll,
        weights_channels_last=channels_last,
        y_h=empty_output(x_h, w_hh.shape[0], h, w),
        y_l=empty_output(x_h, w_hl.shape[0], (h + 1) // 2, (w + 1) // 2) if w_hl is not None else None,
    )


def triton_launch(x_h: Tensor, x_l: Tensor | None, w_hh: Tensor, w_hl: Tensor | None, w_lh: Tensor | None,
                  w_ll: Tensor | None, stride: int):
    """The Triton kernel's planned launch (``medinfer.kernels.conv_common.Launch``) for a validated, covered
    call; the AOT report compiles exactly this."""
    from medinfer.kernels import octave_conv as kernel

    return kernel.plan(x_h, x_l, buffers(x_h, x_l, w_hh, w_hl, w_lh, w_ll, stride), stride)


def _run_triton(*args) -> tuple[Tensor, Tensor | None]:
    return triton_launch(*args)()


def _run_cuda(x_h: Tensor, x_l: Tensor | None, w_hh: Tensor, w_hl: Tensor | None, w_lh: Tensor | None,
              w_ll: Tensor | None, stride: int) -> tuple[Tensor, Tensor | None]:
    from medinfer import _ext

    buf = buffers(x_h, x_l, w_hh, w_hl, w_lh, w_ll, stride)
    uses_low = buf.w_lh is not None or buf.w_ll is not None
    with torch.cuda.device(x_h.device):
        _ext.require().cuda_octave_conv(
            NATIVE_DTYPES[x_h.dtype], native_tensor(x_h), native_tensor(x_l if uses_low else None),
            native_ptr(buf.w_hh), native_ptr(buf.w_hl), native_ptr(buf.w_lh), native_ptr(buf.w_ll),
            buf.weights_channels_last, w_hh.shape[-1], stride, native_tensor(buf.y_h), native_tensor(buf.y_l),
            torch.cuda.current_stream(x_h.device).cuda_stream)
    return buf.y_h, buf.y_l


#: backend -> launcher with :func:`octave_conv_native`'s arguments
LAUNCHERS = {"triton": _run_triton, "cuda": _run_cuda}


# ---------------------------------------------------------------------------------------------------------
# 4. ONNX node medinfer::OctaveConv (schema in medinfer.ops.onnx)
# ---------------------------------------------------------------------------------------------------------
@torch.library.custom_op("medinfer::octave_conv", mutates_args=())
def _octave_conv_op(x_h: Tensor, x_l: Tensor | None, w_hh: Tensor, w_hl: Tensor | None, w_lh: Tensor | None,
                    w_ll: Tensor | None, stride: int) -> list[Tensor]:
    # What torch.export records; the eager body (the reference) also evaluates the node in onnx.reference.
    y_h, y_l = octave_conv_native(x_h, x_l, w_hh, w_hl, w_lh, w_ll, stride)
    return [y_h] if y_l is None else [y_h, y_l]


@_octave_conv_op.register_fake
def _(x_h, x_l, w_hh, w_hl, w_lh, w_ll, stride):
    n, _, h, w = x_h.shape
    if stride == 2:
        h, w = (h + 1) // 2, (w + 1) // 2
    y_h = x_h.new_empty(n, w_hh.shape[0], h, w)
    return [y_h] if w_hl is None else [y_h, x_h.new_empty(n, w_hl.shape[0], (h + 1) // 2, (w + 1) // 2)]


def translate(x_h, x_l, w_hh, w_hl, w_lh, w_ll, stride):
    """The recorded custom op as one ``medinfer::OctaveConv`` node (onnxscript)."""
    hl, lh = w_hl is not None, x_l is not None and w_lh is not None
    ll = hl and x_l is not None and w_ll is not None
    present = [("X_h", x_h, True), ("X_l", x_l, lh or ll), ("W_hh", w_hh, True), ("W_hl", w_hl, hl),
               ("W_lh", w_lh, lh), ("W_ll", w_ll, ll)]
    used = [(name, t) for name, t, on in present if on]
    return ops_onnx.node("OctaveConv", [t for _, t in used], [name for name, _ in used],
                         ["Y_h", "Y_l"] if hl else ["Y_h"], stride=int(stride), high_to_low=int(hl),
                         low_to_high=int(lh), low_to_low=int(ll))


def evaluate_node(x_h: Tensor, params: list[Tensor], *, stride=1, high_to_low=0, low_to_high=0,
                  low_to_low=0) -> list[Tensor]:
    """The node's outputs for its inputs and attributes (``onnx.reference`` evaluation, via the reference)."""
    it = iter(params)
    x_l = next(it) if low_to_high or low_to_low else None
    w_hh = next(it)
    w_hl, w_lh, w_ll = (next(it) if on else None for on in (high_to_low, low_to_high, low_to_low))
    return _octave_conv_op(x_h, x_l, w_hh, w_hl, w_lh, w_ll, int(stride))


# ---------------------------------------------------------------------------------------------------------
# 5. TensorRT plugin: the op-specific half
# ---------------------------------------------------------------------------------------------------------
class TensorRTPlugin:
    """``medinfer::OctaveConv`` in TensorRT: inputs X_h [, X_l], W_hh [, W_hl] [, W_lh] [, W_ll]; integer
    fields ``stride``, ``high_to_low``, ``low_to_high``, ``low_to_low``. Enqueues the CUDA kernel on
    TensorRT's pointers and stream."""

    NAME = "OctaveConv"
    FIELDS = ("stride", "high_to_low", "low_to_high", "low_to_low")

    @staticmethod
    def output_count(fields: dict[str, list[int]]) -> int:
        return 2 if fields["high_to_low"][0] else 1

    @staticmethod
    def _layout(fields: dict[str, list[int]]) -> dict[str, int]:
        """Input index of each present tensor, in the node's order."""
        f = {k: v[0] for k, v in fields.items()}
        present = [("x_h", 1), ("x_l", f["low_to_high"] or f["low_to_low"]), ("w_hh", 1),
                   ("w_hl", f["high_to_low"]), ("w_lh", f["low_to_high"]), ("w_ll", f["low_to_low"])]
        names = [name for name, on in present if on]
        return {name: i for i, name in enumerate(names)}

    @staticmethod
    def output_shapes(fields: dict[str, list[int]], inputs: list[trt.DimsExprs],
                      expr_builder: trt.IExprBuilder) -> list[trt.DimsExprs]:
        import tensorrt as trt

        at = TensorRTPlugin._layout(fields)
        x = inputs[at["x_h"]]

        def half(e: trt.IDimensionExpr) -> trt.IDimensionExpr:
            return expr_builder.operation(trt.DimensionOperation.CEIL_DIV, e, expr_builder.constant(2))

        h, w = (half(x[2]), half(x[3])) if fields["stride"][0] == 2 else (x[2], x[3])
        shapes = [trt.DimsExprs([x[0], inputs[at["w_hh"]][0], h, w])]
        if "w_hl" in at:
            shapes.append(trt.DimsExprs([x[0], inputs[at["w_hl"]][0], half(h), half(w)]))
        return shapes

    @staticmethod
    def enqueue(native: Any, fields: dict[str, list[int]], input_desc: list[trt.PluginTensorDesc],
                output_desc: list[trt.PluginTensorDesc], inputs: list[int], outputs: list[int], dtype: str,
                stream: int) -> None:
        at = TensorRTPlugin._layout(fields)

        def tensor(name: str):
            return linear_tensor(inputs[at[name]], input_desc[at[name]].dims) if name in at else None

        def ptr(name: str) -> int:
            return inputs[at[name]] if name in at else 0

        y_l = linear_tensor(outputs[1], output_desc[1].dims) if len(outputs) > 1 else None
        native.cuda_octave_conv(dtype, tensor("x_h"), tensor("x_l"), ptr("w_hh"), ptr("w_hl"), ptr("w_lh"),
                                ptr("w_ll"), False, int(input_desc[at["w_hh"]].dims[3]), fields["stride"][0],
                                linear_tensor(outputs[0], output_desc[0].dims), y_l, stream)
