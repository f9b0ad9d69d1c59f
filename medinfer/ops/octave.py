"""``medinfer.ops.octave_conv``: the four paths of an octave convolution in one pass."""

from __future__ import annotations

from torch import Tensor

from medinfer.errors import InputError
from medinfer.models import layers
from medinfer.ops._dispatch import backend_for, check_4d, check_like, launcher

#: Kernel sizes the fused kernels implement ('same' padding k // 2).
FUSED_KERNEL_SIZES = (1, 3)


def octave_conv(x_h: Tensor, x_l: Tensor | None, w_hh: Tensor, w_hl: Tensor | None, w_lh: Tensor | None,
                w_ll: Tensor | None, *, stride: int = 1, backend: str | None = None) -> tuple[Tensor, Tensor | None]:
    """Octave convolution (contract: :func:`medinfer.models.layers.octave_conv`)::

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
    _validate(x_h, x_l, w_hh, w_hl, w_lh, w_ll, stride)
    from medinfer.ops import onnx as _onnx

    covered = kernel_covers(x_l, w_hh, w_hl)
    if covered and _onnx.emitting_plugin_nodes(x_h):
        return _onnx.octave_conv_node(x_h, x_l, w_hh, w_hl, w_lh, w_ll, stride)
    name = backend_for((x_h, x_l, w_hh, w_hl, w_lh, w_ll), backend, covered)
    if name == "torch":
        return layers.octave_conv(x_h, x_l, w_hh, w_hl, w_lh, w_ll, stride)
    return launcher(name).octave_conv(x_h, x_l, w_hh, w_hl, w_lh, w_ll, stride)


def kernel_covers(x_l: Tensor | None, w_hh: Tensor, w_hl: Tensor | None) -> bool:
    """Whether the fused kernels take a (validated) call: a low-frequency side, kernel size 1 or 3."""
    return w_hh.shape[-1] in FUSED_KERNEL_SIZES and not (x_l is None and w_hl is None)


def _validate(x_h: Tensor, x_l: Tensor | None, w_hh: Tensor, w_hl: Tensor | None, w_lh: Tensor | None,
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
