"""Fused multi-branch dilated 3×3 convolution with the DDC epilogue (Triton kernel and launcher).

The op, its reference and its dispatch live in :mod:`medinfer.ops.dilated`, which allocates the buffers and
hands them to :func:`plan`; this module imports nothing from medinfer.

Design
------
One program owns ``BLOCK_P`` output pixels (flattened over N·H·W, any N/H/W) and computes every branch for
them, as an implicit GEMM (:func:`conv_common.conv_accumulate`): M = pixels, N = a block of output
channels, K = (tap, channel block) so any C works, ``tl.dot`` (wgmma on sm_90) with fp32 accumulation
(fp32 inputs use TF32 exactly when ``torch.backends.cudnn.allow_tf32`` lets PyTorch's own convolutions do
so). All branches of a program gather the same input rows (with a halo of the largest dilation): the first
branch brings them into L1/L2 and the others should hit the cache, so DRAM sees the input about once
instead of once per branch.

The optional epilogue is the rest of the DDC block, ``out = residual + Σ_k relu(P·t_k + p)``:

* each branch's output channels are produced in ``BLOCK_O`` chunks; every chunk, rounded to the input
  dtype as the reference rounds ``t_k``, is stored only if the caller keeps ``t_k`` and is immediately
  multiplied into ``z_k += t_chunk · Pᵀ[chunk]`` — the 1×1 projection as a second ``tl.dot`` on the tile
  in registers, so ``t_k`` never makes a round trip through memory just to be projected;
* after the last chunk, ``relu(z_k + p)`` is added to the fp32 running sum, seeded with the residual; one
  store at the end. The program therefore holds the full projection width (``BLOCK_CO`` ≤ 256, the
  model's widest DDC) — the dispatcher leaves wider projections' epilogue to the reference.

Expected bottlenecks (nothing could be timed where this was written): at the model's shapes K = 9·C is
288…2304 and the GEMMs are small, so the kernel should be latency- and L2-bound rather than
tensor-core-bound; the gathers are coalesced along pixels for NCHW inputs but each A tile is a masked
gather (no TMA), and the deepest stage (2×2 maps, 1024 pixels at batch 256) launches too few programs to
fill 132 SMs. Two fp32 ``BLOCK_P × BLOCK_CO`` tiles live through the epilogue, which is why
:func:`config` takes fewer pixels for wide projections; ptxas then uses up to ~255 registers per thread at
8 warps (one program per SM), without spills (``python -m medinfer.bench.aot``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import triton
import triton.language as tl
from torch import Tensor

from .conv_common import Launch, block, conv_accumulate, dot, dot_precision


@triton.jit
def _dilated_branches_kernel(
    x_ptr, w_ptrs, b_ptrs, y_ptrs, pw_ptr, pb_ptr, r_ptr, out_ptr,
    N, C, H, W, O, CO,
    sxn, sxc, sxh, sxw, syn, syc, syh, syw, srn, src, srh, srw, son, soc, soh, sow,
    DILATIONS: tl.constexpr, HAS_BIAS: tl.constexpr, STORE: tl.constexpr, EPILOGUE: tl.constexpr,
    HAS_PBIAS: tl.constexpr, W_CL: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr,
    BLOCK_CO: tl.constexpr, PRECISION: tl.constexpr,
):
    dtype = x_ptr.dtype.element_ty
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = p < N * H * W
    n = (p // (H * W)).to(tl.int64)
    h = (p // W) % H
    w = p % W
    x_pix = n * sxn
    y_pix = n * syn + h * syh + w * syw
    if EPILOGUE:
        # One program covers every output channel of the branches: the projection needs all of them.
        o_start = 0
        o_stop = O
        co = tl.arange(0, BLOCK_CO)
        co_mask = pmask[:, None] & (co < CO)[None, :]
        total = tl.load(r_ptr + (n * srn + h * srh + w * srw)[:, None] + co[None, :] * src, mask=co_mask,
                        other=0.0).to(tl.float32)
        if HAS_PBIAS:
            pbias = tl.load(pb_ptr + co, mask=co < CO, other=0.0).to(tl.float32)
    else:
        o_start = tl.program_id(1) * BLOCK_O
        o_stop = o_start + BLOCK_O
    for i in tl.static_range(len(DILATIONS)):
        if EPILOGUE:
            z = tl.zeros((BLOCK_P, BLOCK_CO), dtype=tl.float32)
        for o0 in range(o_start, o_stop, BLOCK_O):
            o = o0 + tl.arange(0, BLOCK_O)
            t = conv_accumulate(tl.zeros((BLOCK_P, BLOCK_O), dtype=tl.float32), x_ptr, x_pix, h, w, pmask, C,
                                sxc, sxh, sxw, H, W, w_ptrs[i], o, O, 3, DILATIONS[i], 0, W_CL, BLOCK_C,
                                PRECISION)
            if HAS_BIAS[i]:
                t += tl.load(b_ptrs[i] + o, mask=o < O, other=0.0).to(tl.float32)[None, :]
            t = t.to(dtype)
            if STORE[i]:
                tl.store(y_ptrs[i] + y_pix[:, None] + o[None, :] * syc, t,
                         mask=pmask[:, None] & (o < O)[None, :])
            if EPILOGUE:
                # P is stored (CO, O), o-contiguous: load it that way (vectorised) and transpose in registers.
                pw = tl.load(pw_ptr + co[:, None] * O + o[None, :], mask=(co < CO)[:, None] & (o < O)[None, :],
                             other=0.0)
                z = dot(t, tl.trans(pw), z, PRECISION)
        if EPILOGUE:
            if HAS_PBIAS:
                z += pbias[None, :]
            total += tl.maximum(z, 0.0)
    if EPILOGUE:
        tl.store(out_ptr + (n * son + h * soh + w * sow)[:, None] + co[None, :] * soc, total.to(dtype),
                 mask=co_mask)


def config(in_channels: int, out_channels: int, project_width: int | None, itemsize: int,
           max_project_width: int) -> dict:
    """Block sizes and launch shape for one call.

    Chosen from the sm_90 compiler's resource report (``tests/test_kernels_aot.py``), not from timings (no
    GPU where this was written): the largest tiles that compile without spills. The epilogue keeps a
    ``BLOCK_P × BLOCK_CO`` fp32 tile for the projection and one for the running sum, and transposes a
    ``BLOCK_CO × BLOCK_O`` weight tile per chunk, so wide projections (and fp32) take fewer pixels; the
    caller fuses projections of at most ``max_project_width`` channels.
    """
    cfg = {"BLOCK_P": 64, "BLOCK_O": block(out_channels, 64), "BLOCK_C": block(in_channels, 32), "BLOCK_CO": 16,
           "num_warps": 8, "num_stages": 2}
    if project_width is not None:
        cfg["BLOCK_CO"] = block(project_width, max_project_width)
        cfg["BLOCK_O"] = block(out_channels, 32)
        cfg["BLOCK_P"] = 64 if cfg["BLOCK_CO"] <= 32 else 16 if itemsize == 4 and cfg["BLOCK_CO"] >= 256 else 32
    return cfg


def plan(x: Tensor, buf: Any, dilations: Sequence[int], *, max_project_width: int) -> Launch:
    """The launch for a validated call on ``x`` whose buffers ``buf`` the caller allocated
    (:class:`medinfer.ops.dilated.BranchBuffers`: laid-out weights and biases, the branch outputs to store,
    and with an epilogue its projection, residual and ``out``); its outputs are ``buf.results()``."""
    n, c, h, w = x.shape
    o = buf.weights[0].shape[0]
    epilogue = buf.out is not None
    co = buf.out.shape[1] if epilogue else 0
    cfg = config(c, o, co if epilogue else None, x.element_size(), max_project_width)
    # Absent tensors still need a pointer of the right dtype; the constexpr flags keep them unread.
    ys = tuple(y if y is not None else x for y in buf.outputs)
    bs = tuple(b if b is not None else wt for b, wt in zip(buf.biases, buf.weights, strict=True))
    out = buf.out if epilogue else x
    r = buf.residual if epilogue else x
    pw = buf.project_weight if epilogue else x
    pb = buf.project_bias if buf.project_bias is not None else pw
    grid = (triton.cdiv(n * h * w, cfg["BLOCK_P"]), 1 if epilogue else triton.cdiv(o, cfg["BLOCK_O"]))
    return Launch(_dilated_branches_kernel, grid, (
        x, tuple(buf.weights), bs, ys, pw, pb, r, out,
        n, c, h, w, o, co, *x.stride(), *next(y for y in (*buf.outputs, x) if y is not None).stride(),
        *r.stride(), *out.stride()), dict(
        DILATIONS=tuple(int(d) for d in dilations), HAS_BIAS=tuple(b is not None for b in buf.biases),
        STORE=tuple(y is not None for y in buf.outputs), EPILOGUE=epilogue, HAS_PBIAS=buf.project_bias is not None,
        W_CL=buf.weights_channels_last,
        PRECISION=dot_precision(x.dtype), enable_fp_fusion=True, **cfg), buf.results())
