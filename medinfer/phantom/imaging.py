"""The image operations the phantoms need, in numpy (medinfer does not depend on SciPy).

Filters work on the last two axes of an array, so a volume ``(N, H, W)`` is filtered slice by slice; the
connected-component labelling is 2-D or 3-D as the array is.
"""

from __future__ import annotations

import numpy as np


def gaussian_filter(x: np.ndarray, sigma: float | tuple[float, float]) -> np.ndarray:
    """Separable Gaussian blur of the last two axes (float64, reflected borders, kernel cut at 3σ)."""
    sy, sx = (sigma, sigma) if np.isscalar(sigma) else sigma
    out = np.asarray(x, np.float64)
    for axis, s in ((-2, sy), (-1, sx)):
        if s <= 0:
            continue
        r = max(int(np.ceil(3 * s)), 1)
        taps = np.exp(-0.5 * (np.arange(-r, r + 1) / s) ** 2)
        taps /= taps.sum()
        pad = [(0, 0)] * out.ndim
        pad[axis] = (r, r)
        padded = np.pad(out, pad, mode="reflect" if out.shape[axis] > r else "edge")
        n = out.shape[axis]
        acc = np.zeros_like(out)
        for k, t in enumerate(taps):
            acc += t * np.take(padded, np.arange(k, k + n), axis=axis)
        out = acc
    return out


def box_sum(mask: np.ndarray, r: int) -> np.ndarray:
    """Sum over the (2r+1)² square around each pixel of the last two axes (zeros outside), by integral image."""
    x = np.asarray(mask, np.float64)
    lead = [(0, 0)] * (x.ndim - 2)
    c = np.pad(x, [*lead, (r + 1, r), (r + 1, r)]).cumsum(-2).cumsum(-1)
    k = 2 * r + 1
    return c[..., k:, k:] - c[..., :-k, k:] - c[..., k:, :-k] + c[..., :-k, :-k]


def erode(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary erosion by a (2r+1)² square; outside the image counts as background."""
    return box_sum(mask, r) >= (2 * r + 1) ** 2 - 0.5 if r > 0 else np.asarray(mask, bool)


def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation by a (2r+1)² square."""
    return box_sum(mask, r) > 0.5 if r > 0 else np.asarray(mask, bool)


def label_components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Face-connected components of a 2-D or 3-D boolean mask: ``(labels, sizes)`` with labels 1..K (0 is
    background) and ``sizes[k - 1]`` the voxel count of component k.

    Label propagation: every voxel starts with its own index and repeatedly takes the largest index among
    its face neighbours inside the mask, until nothing changes. It converges in as many rounds as the
    longest geodesic path, which on the coarse masks the phantoms label is a few hundred at most.
    """
    mask = np.asarray(mask, bool)
    lab = np.where(mask, np.arange(1, mask.size + 1).reshape(mask.shape), 0)
    while True:
        prev = lab
        grown = lab.copy()
        for axis in range(mask.ndim):
            for shift in (1, -1):
                grown = np.maximum(grown, _shifted(lab, shift, axis))
        lab = np.where(mask, grown, 0)
        if np.array_equal(lab, prev):
            break
    ids, inverse, sizes = np.unique(lab, return_inverse=True, return_counts=True)
    if ids[0] == 0:
        return inverse.reshape(mask.shape), sizes[1:]
    return inverse.reshape(mask.shape) + 1, sizes


def _shifted(a: np.ndarray, shift: int, axis: int) -> np.ndarray:
    out = np.zeros_like(a)
    src = [slice(None)] * a.ndim
    dst = [slice(None)] * a.ndim
    if shift > 0:
        src[axis], dst[axis] = slice(None, -shift), slice(shift, None)
    else:
        src[axis], dst[axis] = slice(-shift, None), slice(None, shift)
    out[tuple(dst)] = a[tuple(src)]
    return out


def noise_sigma(image: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Robust estimate of the pixel noise standard deviation of a CT slice (HU).

    The high-pass residual ``x - mean3x3(x)`` of white noise of deviation σ has deviation σ·√(8/9); its
    median absolute deviation (× 1.4826 for a Gaussian) ignores the few pixels on edges. Restricting it
    to ``mask`` (e.g. homogeneous soft tissue) keeps anatomy out of the estimate.
    """
    x = np.asarray(image, np.float64)
    residual = x - box_sum(x, 1) / 9.0
    core = np.ones(x.shape, bool)
    core[..., :1, :] = core[..., -1:, :] = core[..., :, :1] = core[..., :, -1:] = False  # zero-padded border
    values = residual[core & (np.asarray(mask, bool) if mask is not None else True)]
    if values.size < 16:
        raise ValueError(f"noise_sigma: {values.size} pixels are too few to estimate noise")
    mad = np.median(np.abs(values - np.median(values)))
    return float(1.4826 * mad / np.sqrt(8.0 / 9.0))


def correlated_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float, correlation: float) -> np.ndarray:
    """Gaussian noise of standard deviation ``sigma`` whose in-plane correlation is that of white noise
    blurred by a Gaussian of ``correlation`` pixels (CT noise is not white: the reconstruction kernel
    smooths it)."""
    white = rng.standard_normal(shape)
    if correlation <= 0:
        return sigma * white
    smooth = gaussian_filter(white, correlation)
    return smooth * (sigma / max(float(smooth.std()), 1e-12))
