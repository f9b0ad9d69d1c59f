"""Shared pieces of the implicit-GEMM convolution kernels (``dilated_branches.py``, ``octave_conv.py``).

A 'same'-padded KS×KS convolution over NCHW (or any strided 4-D layout) is the GEMM

    out[m, o] = Σ_k A[m, k] · B[k, o],   m = output pixel, k = c·KS² + tap, o = output channel

with ``A`` gathered on the fly from the input (im2col without the copy) and ``B[k, o] = w[o, k]`` read
straight from PyTorch's contiguous ``(O, C, KS, KS)`` weight, whose rows are k-contiguous. Flattening
``k`` over channels *and* taps keeps the reduction a single loop for any C (no multiple of the block
needed) and makes the weight loads coalesced.

Octave convolution needs its inputs average-pooled once or twice (2×2, ceil mode, averaging only the
pixels that exist, as ``F.avg_pool2d(x, 2, 2, ceil_mode=True)``); :func:`pooled_load` folds that into
the gather, so no pooled tensor is ever written.

Everything here is host-agnostic Triton: it runs under ``TRITON_INTERPRET=1`` on the CPU and compiles
ahead of time for sm_90.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import torch
import triton
import triton.language as tl

# Triton's CPU interpreter (3.x) multiplies bf16 dot operands as their raw uint16 bits. Widening them to fp32
# first is exact (bf16 products fit fp32's mantissa), so interpreted results keep the tensor-core semantics.
_WIDEN_BF16_DOT = tl.constexpr(os.environ.get("TRITON_INTERPRET") == "1")


@triton.jit
def dot(a, b, acc, PRECISION: tl.constexpr):
    """``acc + a @ b`` with fp32 accumulation."""
    if _WIDEN_BF16_DOT and a.dtype == tl.bfloat16:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    return tl.dot(a, b, acc, input_precision=PRECISION)


@triton.jit
def _window(ptrs, h, w, sh, sw, H, W, rmask, cmask, NESTED: tl.constexpr):
    """fp32 sum and count over the 2×2 window at pooled position (h, w): of the source pixels inside (H, W),
    or (NESTED) of the one-round means of the window's cells inside the once-pooled grid.

    (h, w, rmask) are (1, M) pixel rows and ``cmask`` a (C, 1) channel column: the window bookkeeping stays
    per pixel, only the loads and sums are per element."""
    if NESTED:
        Hc = (H + 1) // 2
        Wc = (W + 1) // 2
    else:
        Hc = H
        Wc = W
    total = tl.zeros((cmask.shape[0], h.shape[1]), dtype=tl.float32)
    count = tl.zeros(h.shape, dtype=tl.float32)
    for a in tl.static_range(2):
        for b in tl.static_range(2):
            hh = 2 * h + a
            ww = 2 * w + b
            inside = rmask & (hh < Hc) & (ww < Wc)
            if NESTED:
                part, n = _window(ptrs, hh, ww, sh, sw, H, W, inside, cmask, False)
                total += part / tl.maximum(n, 1.0)
            else:
                total += tl.load(ptrs + hh * sh + ww * sw, mask=cmask & inside, other=0.0).to(tl.float32)
            count += inside.to(tl.float32)
    return total, count


@triton.jit
def pooled_load(ptrs, h, w, sh, sw, H, W, rmask, cmask, LEVEL: tl.constexpr):
    """The source at (h, w) after LEVEL ∈ {0, 1, 2} rounds of 2×2 ceil-mode average pooling, in the
    source dtype, as a (C, M) tile. (H, W) is the un-pooled source size; ``rmask`` already excludes
    positions outside the pooled grid (zero padding). Two rounds pool the pooled values, as the reference
    does, which differs from one 4×4 mean at odd edges."""
    if LEVEL == 0:
        value = tl.load(ptrs + h * sh + w * sw, mask=cmask & rmask, other=0.0)
    else:
        total, count = _window(ptrs, h, w, sh, sw, H, W, rmask, cmask, LEVEL == 2)
        value = (total / tl.maximum(count, 1.0)).to(ptrs.dtype.element_ty)
    return value


@triton.jit
def conv_accumulate(acc, x_ptr, pix, h, w, pmask, C, sc, sh, sw, H, W, w_ptr, o, O,
                    KS: tl.constexpr, DIL: tl.constexpr, LEVEL: tl.constexpr, W_CL: tl.constexpr,
                    BLOCK_C: tl.constexpr, PRECISION: tl.constexpr):
    """``acc[m, o] += Σ_{c, dy, dx} src[m, c, h_m + DIL·dy, w_m + DIL·dx] · w[o, c, dy, dx]``.

    ``src`` is the input at ``x_ptr`` (per-row batch offset ``pix``, strides sc/sh/sw, size H×W) pooled
    LEVEL times; rows with ``pmask`` false contribute nothing. Padding is KS//2·DIL on the pooled grid.
    ``w`` is an (O, C, KS, KS) weight, contiguous or (``W_CL``) channels-last.
    One runtime loop over (tap, channel block) pairs gives the software pipeliner enough iterations even
    when C fits one block. The A tile is gathered transposed, (channels, pixels), so that the per-pixel
    index math lives in 1-D vectors spread over the threads instead of being replicated in each of them.
    """
    KK: tl.constexpr = KS * KS
    Hp = (H + (1 << LEVEL) - 1) >> LEVEL  # ceil(H / 2^LEVEL): nested ceil halvings
    Wp = (W + (1 << LEVEL) - 1) >> LEVEL
    n_cblk = tl.cdiv(C, BLOCK_C)
    cc = tl.arange(0, BLOCK_C)
    omask = (o < O)[None, :]
    for step in range(0, KK * n_cblk):
        tap = step // n_cblk
        c = (step % n_cblk) * BLOCK_C + cc
        cmask = c < C
        hh = h + (tap // KS - KS // 2) * DIL
        ww = w + (tap % KS - KS // 2) * DIL
        inside = pmask & (hh >= 0) & (hh < Hp) & (ww >= 0) & (ww < Wp)
        a_t = pooled_load(x_ptr + pix[None, :] + (c * sc)[:, None], hh[None, :], ww[None, :], sh, sw, H, W,
                          inside[None, :], cmask[:, None], LEVEL)
        b_offsets = tap * C + c if W_CL else c * KK + tap  # channels-last: a tap's channels are contiguous
        b = tl.load(w_ptr + o[None, :] * (C * KK) + b_offsets[:, None], mask=cmask[:, None] & omask, other=0.0)
        acc = dot(tl.trans(a_t), b, acc, PRECISION)
    return acc


def dot_precision(dtype: torch.dtype) -> str:
    """TF32 for fp32 exactly when PyTorch's own convolutions may use it; irrelevant for 16-bit inputs."""
    return "tf32" if dtype == torch.float32 and torch.backends.cudnn.allow_tf32 else "ieee"


def block(size: int, cap: int) -> int:
    """Power-of-two block covering ``size`` up to ``cap``, at least 16 (``tl.dot``'s smallest operand)."""
    return min(max(triton.next_power_of_2(size), 16), cap)


class Launch(NamedTuple):
    """One kernel launch, planned on the host: calling it launches and returns the outputs. The AOT test
    compiles ``kernel`` for exactly these arguments, so the table it prints is what the launch runs."""

    kernel: Any  # a @triton.jit function
    grid: tuple[int, ...]
    args: tuple
    kwargs: dict  # constexprs and compile options
    outputs: Any

    def __call__(self) -> Any:
        self.kernel[self.grid](*self.args, **self.kwargs)
        return self.outputs
