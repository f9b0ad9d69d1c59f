"""Octave convolution, all four paths in one launch (Triton kernel and launcher).

The op, its reference and its dispatch live in :mod:`medinfer.ops.octave`, which allocates the buffers and
hands them to :func:`plan`; this module imports nothing from medinfer.

    y_h = conv(x_h, w_hh) + up2(conv(x_l, w_lh))        (cropped to y_h's size)
    y_l = conv(pool2(x_h), w_hl) + conv(x_l, w_ll)      (stride 2: x_h, x_l pooled first)

Design
------
The launch's programs come in two kinds, told apart by program id (one launch, no intermediate tensor):

* **high** programs own ``BLOCK_Q`` low-resolution positions and produce the 2×2 quad of y_h pixels above
  each, ``M = 4·BLOCK_Q`` rows ordered quad-major. The H→H path is one implicit GEMM over those rows; the
  L→H path is a GEMM over the ``BLOCK_Q`` low positions only — each low value is computed once, not four
  times — and is broadcast over the quad in registers before the single store: the nearest upsampling
  lives in the store, and the crop is the store mask.
* **low** programs own ``4·BLOCK_Q`` low positions and accumulate the H→L path (x_h gathered through a
  2×2 average, :func:`conv_common.pooled_load`) and the L→L path into one accumulator.

Stride 2 raises every pooling level by one (x_h is read through one or two nested 2×2 averages, x_l
through one), so the strided layer needs no pooled copies either. Absent paths (``None`` weights, first
and last octave layers) are constexpr flags. Kernel sizes 1 and 3 share the code (``KS``).

Expected bottlenecks (not timed: no GPU where this was written): the model's octave groups are narrow
(12…96 high and 4…32 low channels), so K = 9·C is small and the GEMMs are memory- and latency-bound;
the pooled gathers read each x_h pixel up to four times per tap (L1 hits after the first), and the
smallest stages (2×2 maps) do not fill the GPU at batch 256.
"""

from __future__ import annotations

from typing import Any

import triton
import triton.language as tl
from torch import Tensor

from .conv_common import Launch, block, conv_accumulate, dot_precision


@triton.jit
def _octave_high(pid, xh_ptr, xl_ptr, whh_ptr, wlh_ptr, yh_ptr, N, CH, CL, OH, HI, WI, HLI, WLI, H, W, HL, WL,
                 sxhn, sxhc, sxhh, sxhw, sxln, sxlc, sxlh, sxlw, syn, syc, syh, syw, n_oblk,
                 HAS_LH: tl.constexpr, POOL: tl.constexpr, KS: tl.constexpr, W_CL: tl.constexpr, BLOCK_Q: tl.constexpr,
                 BLOCK_O: tl.constexpr, BLOCK_CH: tl.constexpr, BLOCK_CL: tl.constexpr, PRECISION: tl.constexpr):
    tile = pid // n_oblk
    o = (pid % n_oblk) * BLOCK_O + tl.arange(0, BLOCK_O)
    nq = N * HL * WL
    # Rows m = quad·BLOCK_Q + q: the quad-major order lets the L→H tile broadcast with a reshape.
    m = tl.arange(0, 4 * BLOCK_Q)
    quad = m // BLOCK_Q
    q = tile * BLOCK_Q + m % BLOCK_Q
    n = (q // (HL * WL)).to(tl.int64)
    i = 2 * ((q // WL) % HL) + quad // 2
    j = 2 * (q % WL) + quad % 2
    pmask = (q < nq) & (i < H) & (j < W)
    acc = conv_accumulate(tl.zeros((4 * BLOCK_Q, BLOCK_O), dtype=tl.float32), xh_ptr, n * sxhn, i, j, pmask, CH,
                          sxhc, sxhh, sxhw, HI, WI, whh_ptr, o, OH, KS, 1, POOL, W_CL, BLOCK_CH, PRECISION)
    if HAS_LH:
        ql = tile * BLOCK_Q + tl.arange(0, BLOCK_Q)
        low = conv_accumulate(tl.zeros((BLOCK_Q, BLOCK_O), dtype=tl.float32), xl_ptr,
                              (ql // (HL * WL)).to(tl.int64) * sxln, (ql // WL) % HL, ql % WL, ql < nq, CL,
                              sxlc, sxlh, sxlw, HLI, WLI, wlh_ptr, o, OH, KS, 1, POOL, W_CL, BLOCK_CL, PRECISION)
        acc = tl.reshape(tl.reshape(acc, (4, BLOCK_Q, BLOCK_O)) + low[None, :, :], (4 * BLOCK_Q, BLOCK_O))
    tl.store(yh_ptr + (n * syn + i * syh + j * syw)[:, None] + o[None, :] * syc, acc.to(yh_ptr.dtype.element_ty),
             mask=pmask[:, None] & (o < OH)[None, :])


@triton.jit
def _octave_low(pid, xh_ptr, xl_ptr, whl_ptr, wll_ptr, yl_ptr, N, CH, CL, OL, HI, WI, HLI, WLI, HL, WL,
                sxhn, sxhc, sxhh, sxhw, sxln, sxlc, sxlh, sxlw, syn, syc, syh, syw, n_oblk,
                HAS_LL: tl.constexpr, POOL: tl.constexpr, KS: tl.constexpr, W_CL: tl.constexpr, BLOCK_M: tl.constexpr,
                BLOCK_O: tl.constexpr, BLOCK_CH: tl.constexpr, BLOCK_CL: tl.constexpr, PRECISION: tl.constexpr):
    tile = pid // n_oblk
    o = (pid % n_oblk) * BLOCK_O + tl.arange(0, BLOCK_O)
    p = tile * BLOCK_M + tl.arange(0, BLOCK_M)
    pmask = p < N * HL * WL
    n = (p // (HL * WL)).to(tl.int64)
    i = (p // WL) % HL
    j = p % WL
    acc = conv_accumulate(tl.zeros((BLOCK_M, BLOCK_O), dtype=tl.float32), xh_ptr, n * sxhn, i, j, pmask, CH,
                          sxhc, sxhh, sxhw, HI, WI, whl_ptr, o, OL, KS, 1, POOL + 1, W_CL, BLOCK_CH, PRECISION)
    if HAS_LL:
        acc = conv_accumulate(acc, xl_ptr, n * sxln, i, j, pmask, CL, sxlc, sxlh, sxlw, HLI, WLI, wll_ptr, o, OL,
                              KS, 1, POOL, W_CL, BLOCK_CL, PRECISION)
    tl.store(yl_ptr + (n * syn + i * syh + j * syw)[:, None] + o[None, :] * syc, acc.to(yl_ptr.dtype.element_ty),
             mask=pmask[:, None] & (o < OL)[None, :])


@triton.jit
def _octave_conv_kernel(
    xh_ptr, xl_ptr, whh_ptr, whl_ptr, wlh_ptr, wll_ptr, yh_ptr, yl_ptr,
    N, CH, CL, OH, OL, HI, WI, HLI, WLI, H, W, HL, WL,
    sxhn, sxhc, sxhh, sxhw, sxln, sxlc, sxlh, sxlw, syhn, syhc, syhh, syhw, syln, sylc, sylh, sylw,
    n_high, n_oblk_h, n_oblk_l,
    HAS_HL: tl.constexpr, HAS_LH: tl.constexpr, HAS_LL: tl.constexpr, POOL: tl.constexpr, KS: tl.constexpr,
    W_CL: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_CH: tl.constexpr, BLOCK_CL: tl.constexpr,
    PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    if pid < n_high:
        _octave_high(pid, xh_ptr, xl_ptr, whh_ptr, wlh_ptr, yh_ptr, N, CH, CL, OH, HI, WI, HLI, WLI, H, W, HL, WL,
                     sxhn, sxhc, sxhh, sxhw, sxln, sxlc, sxlh, sxlw, syhn, syhc, syhh, syhw, n_oblk_h,
                     HAS_LH, POOL, KS, W_CL, BLOCK_Q, BLOCK_O, BLOCK_CH, BLOCK_CL, PRECISION)
    elif HAS_HL:
        _octave_low(pid - n_high, xh_ptr, xl_ptr, whl_ptr, wll_ptr, yl_ptr, N, CH, CL, OL, HI, WI, HLI, WLI, HL,
                    WL, sxhn, sxhc, sxhh, sxhw, sxln, sxlc, sxlh, sxlw, syln, sylc, sylh, sylw, n_oblk_l,
                    HAS_LL, POOL, KS, W_CL, 4 * BLOCK_Q, BLOCK_O, BLOCK_CH, BLOCK_CL, PRECISION)


def config(high_in: int, low_in: int, out_channels: int, stride: int) -> dict:
    """Block sizes for one call, from the sm_90 compiler's resource report rather than timings (no GPU
    where this was written). Stride 2 reads x_h through nested 2×2 averages (up to 16 gathers per element),
    which the software pipeliner would buffer in shared memory beyond the SM's capacity: one stage then."""
    return {"BLOCK_Q": 16, "BLOCK_O": block(out_channels, 64), "BLOCK_CH": block(high_in, 32),
            "BLOCK_CL": block(low_in, 32), "num_warps": 8, "num_stages": 1 if stride == 2 else 2}


def plan(x_h: Tensor, x_l: Tensor | None, buf: Any, stride: int) -> Launch:
    """The launch for a validated call on ``x_h``, ``x_l`` whose buffers ``buf`` the caller allocated
    (:class:`medinfer.ops.octave.OctaveBuffers`: laid-out weights, ``None`` for absent paths, and the
    outputs); its outputs are ``(buf.y_h, buf.y_l)``."""
    n, ch, hi, wi = x_h.shape
    oh, h, w = buf.y_h.shape[1:]
    hl, wl = (h + 1) // 2, (w + 1) // 2
    ol = buf.y_l.shape[1] if buf.y_l is not None else 0
    cl, hli, wli = x_l.shape[1:] if x_l is not None else (0, hl, wl)
    cfg = config(ch, cl, max(oh, ol), stride)
    # Absent tensors still need a pointer of the right dtype; the constexpr flags keep them unread.
    xl, yl = (x_l if x_l is not None else x_h), (buf.y_l if buf.y_l is not None else buf.y_h)
    weights = [t if t is not None else buf.w_hh for t in (buf.w_hl, buf.w_lh, buf.w_ll)]
    nq = n * hl * wl
    n_oblk_h, n_oblk_l = triton.cdiv(oh, cfg["BLOCK_O"]), triton.cdiv(ol, cfg["BLOCK_O"])
    n_high = triton.cdiv(nq, cfg["BLOCK_Q"]) * n_oblk_h
    n_low = triton.cdiv(nq, 4 * cfg["BLOCK_Q"]) * n_oblk_l
    return Launch(_octave_conv_kernel, (n_high + n_low,), (
        x_h, xl, buf.w_hh, *weights, buf.y_h, yl,
        n, ch, cl, oh, ol, hi, wi, hli, wli, h, w, hl, wl,
        *x_h.stride(), *xl.stride(), *buf.y_h.stride(), *yl.stride(), n_high, n_oblk_h, n_oblk_l), dict(
        HAS_HL=buf.w_hl is not None, HAS_LH=buf.w_lh is not None, HAS_LL=buf.w_ll is not None, POOL=int(stride == 2),
        KS=buf.w_hh.shape[-1], W_CL=buf.weights_channels_last, PRECISION=dot_precision(x_h.dtype),
        enable_fp_fusion=True, **cfg), (buf.y_h, buf.y_l))
