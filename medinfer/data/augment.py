"""The papers' augmentations, on preprocessed batches in torch (the whole batch at once, on its device).

* ``ddc2021``, the DDC-ResNet paper's (shared/seeds/000, Sec. 4.1: "random flipping, filling, clipping
  and affine transformation"): horizontal and vertical flips (each p = 0.5); padding by up to 6 pixels
  (reflected) and a random crop back to the input size; an affine map with rotation ±15°, scale 0.9–1.1
  and shear ±8°. The paper gives no ranges; these keep a 64×64 lesion ROI inside the frame.
* ``resdense2021``, the Res-Dense Net paper's (shared/seeds/003, Sec. 2.5, Keras ``RandomFlip()`` and
  ``RandomRotation(0.2)``): horizontal and vertical flips, rotation by up to ±0.2 of a full turn (±72°),
  reflected fill (Keras' defaults).
* ``none``.

Randomness comes from the ``torch.Generator`` passed in, so a run is reproducible (and resumable) exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

AUGMENTATIONS = ("ddc2021", "resdense2021", "none")
PAD = 6
DDC_ROTATION, DDC_SCALE, DDC_SHEAR = 15.0, 0.1, 8.0
RESDENSE_ROTATION = 0.2 * 360.0


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _flips(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    h = (torch.rand(n, generator=gen) < 0.5).to(x.device)
    v = (torch.rand(n, generator=gen) < 0.5).to(x.device)
    x = torch.where(h[:, None, None, None], x.flip(-1), x)
    return torch.where(v[:, None, None, None], x.flip(-2), x)


def _pad_crop(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n, _, h, w = x.shape
    padded = F.pad(x, (PAD, PAD, PAD, PAD), mode="reflect")
    oy = torch.randint(0, 2 * PAD + 1, (n,), generator=gen).tolist()
    ox = torch.randint(0, 2 * PAD + 1, (n,), generator=gen).tolist()
    return torch.stack([padded[i, :, oy[i] : oy[i] + h, ox[i] : ox[i] + w] for i in range(n)])


def _affine(x: torch.Tensor, angle_deg: torch.Tensor, scale: torch.Tensor, shear_deg: torch.Tensor) -> torch.Tensor:
    """Rotate, scale and shear about the centre (output pixel → input pixel), reflected at the borders."""
    a, s = torch.deg2rad(angle_deg), torch.tan(torch.deg2rad(shear_deg))
    cos, sin = torch.cos(a) / scale, torch.sin(a) / scale
    theta = torch.zeros(x.shape[0], 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin + cos * s
    theta[:, 1, 0], theta[:, 1, 1] = sin, cos + sin * s
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def augment(x: torch.Tensor, kind: str, gen: torch.Generator) -> torch.Tensor:
    """Augment a batch ``(B, C, H, W)`` the way ``kind`` says (see the module docstring)."""
    if kind == "none":
        return x
    n = x.shape[0]
    if kind == "ddc2021":
        x = _pad_crop(_flips(x, gen), gen)
        return _affine(x, _uniform(n, -DDC_ROTATION, DDC_ROTATION, gen), _uniform(n, 1 - DDC_SCALE, 1 + DDC_SCALE, gen),
                       _uniform(n, -DDC_SHEAR, DDC_SHEAR, gen))
    if kind == "resdense2021":
        x = _flips(x, gen)
        return _affine(x, _uniform(n, -RESDENSE_ROTATION, RESDENSE_ROTATION, gen), torch.ones(n), torch.zeros(n))
    raise ValueError(f"unknown augmentation {kind!r}; expected one of {', '.join(AUGMENTATIONS)}")

