"""The CUDA backend's launchers: ``medinfer._C``'s kernels on raw device pointers and PyTorch's current
stream (the extension itself never links against PyTorch)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from medinfer import _ext
from medinfer.ops._dispatch import branch_buffers, octave_buffers

_DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


def _tensor(t: Tensor | None):
    """How a tensor crosses into ``_C``: (data_ptr, shape, strides); ``None`` stays ``None``."""
    return None if t is None else (t.data_ptr(), tuple(t.shape), tuple(t.stride()))


def _ptr(t: Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()


def dilated_branches(x: Tensor, weights: Sequence[Tensor], biases: Sequence[Tensor | None], dilations: Sequence[int],
                     project_weight: Tensor | None = None, project_bias: Tensor | None = None,
                     residual: Tensor | None = None, keep: Sequence[bool] | None = None) -> list[Tensor]:
    """Same contract as :func:`medinfer.kernels.dilated_branches.dilated_branches`."""
    buf = branch_buffers(x, weights, biases, project_weight, project_bias, keep)
    n, _, h, w = x.shape
    absent = (0, (n, buf.weights[0].shape[0], h, w), (0, 0, 0, 0))  # a branch the epilogue does not keep
    with torch.cuda.device(x.device):
        _ext.native().cuda_dilated_branches(
            _DTYPE_NAMES[x.dtype], _tensor(x), [_ptr(t) for t in buf.weights], buf.weights_channels_last,
            [_ptr(t) for t in buf.biases],
            [int(d) for d in dilations], [_tensor(y) if y is not None else absent for y in buf.outputs],
            _ptr(buf.project_weight), _ptr(buf.project_bias), _tensor(residual), _tensor(buf.out),
            torch.cuda.current_stream(x.device).cuda_stream)
    return buf.results()


def octave_conv(x_h: Tensor, x_l: Tensor | None, w_hh: Tensor, w_hl: Tensor | None, w_lh: Tensor | None,
                w_ll: Tensor | None, stride: int) -> tuple[Tensor, Tensor | None]:
    """Same contract as :func:`medinfer.kernels.octave_conv.octave_conv`."""
    buf = octave_buffers(x_h, x_l, w_hh, w_hl, w_lh, w_ll, stride)
    uses_low = buf.w_lh is not None or buf.w_ll is not None
    with torch.cuda.device(x_h.device):
        _ext.native().cuda_octave_conv(
            _DTYPE_NAMES[x_h.dtype], _tensor(x_h), _tensor(x_l if uses_low else None), _ptr(buf.w_hh),
            _ptr(buf.w_hl), _ptr(buf.w_lh), _ptr(buf.w_ll), buf.weights_channels_last, w_hh.shape[-1], stride,
            _tensor(buf.y_h),
            _tensor(buf.y_l), torch.cuda.current_stream(x_h.device).cuda_stream)
    return buf.y_h, buf.y_l
