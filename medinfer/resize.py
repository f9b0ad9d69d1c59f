"""Separable triangle-filter resampling: the reference that defines how medinfer resizes slices.

The semantics are those of ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``
(and Pillow's ``BILINEAR``): pixel centres sit at ``i + 0.5``; output pixel ``i`` samples the input at
``(i + 0.5) * scale`` with ``scale = in / out``. With ``antialias=True`` a downscale widens the triangle
to ``scale`` input pixels on each side, so every input pixel contributes (an area-like average, no
aliasing); upscaling, or ``antialias=False``, is plain bilinear interpolation. Taps falling outside the
image are dropped and the remaining weights renormalised, which equals clamping at the border.

The native batcher (``csrc/resize.cpp``) computes the same taps and weights; both are tested against
PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ResizeTaps:
    """For each output index ``i``: input indices ``index[i]`` with weights ``weight[i]`` (rows padded
    with index 0 and weight 0 to a common tap count)."""

    index: np.ndarray  # (out, taps) int64
    weight: np.ndarray  # (out, taps) float64, each row sums to 1


def resize_taps(in_size: int, out_size: int, antialias: bool = True) -> ResizeTaps:
    """Taps and weights of one axis, computed as PyTorch's ``_compute_weights_aa`` does."""
    if in_size < 1 or out_size < 1:
        raise ValueError(f"resize sizes must be positive, got {in_size} -> {out_size}")
    scale = in_size / out_size
    # Downscaling with antialias stretches the unit triangle over `scale` input pixels.
    stretch = scale if (antialias and scale > 1.0) else 1.0
    support = stretch
    rows: list[tuple[list[int], list[float]]] = []
    for i in range(out_size):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        idx, w = [], []
        for j in range(lo, hi):
            x = abs((j - center + 0.5) / stretch)
            if x < 1.0:
                idx.append(j)
                w.append(1.0 - x)
        total = sum(w)
        rows.append((idx, [v / total for v in w]))
    taps = max(len(idx) for idx, _ in rows)
    index = np.zeros((out_size, taps), np.int64)
    weight = np.zeros((out_size, taps), np.float64)
    for i, (idx, w) in enumerate(rows):
        index[i, : len(idx)] = idx
        weight[i, : len(w)] = w
    return ResizeTaps(index, weight)


def resize(images: np.ndarray, size: tuple[int, int], antialias: bool = True) -> np.ndarray:
    """Resize ``(N, H, W)`` images to ``(N, *size)`` in float64 (rows first, then columns)."""
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 3:
        raise ValueError(f"images must be (N, H, W), got shape {images.shape}")
    out_h, out_w = size
    n, in_h, in_w = images.shape
    if (in_h, in_w) == (out_h, out_w):
        return images.copy()
    th, tw = resize_taps(in_h, out_h, antialias), resize_taps(in_w, out_w, antialias)
    out = np.empty((n, out_h, out_w), np.float64)
    for k in range(n):  # per slice: the gathered (rows, out, taps) intermediate stays a few MB
        cols = np.einsum("hot,ot->ho", images[k][:, tw.index], tw.weight)
        out[k] = np.einsum("otw,ot->ow", cols[th.index], th.weight)
    return out
