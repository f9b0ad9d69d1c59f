"""Training losses: cross-entropy, and the DDC-ResNet paper's Dice loss (shared/seeds/000, eq. 9) for
classification."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LOSSES = ("ce", "dice")


class DiceLoss(nn.Module):
    """The DDC-ResNet paper's eq. 9: ``1 - 2 Σ p·g / (Σ p² + Σ g²)``.

    For classification the sums run over every (sample, class) pair of the batch: ``p`` is the softmax
    probability of the class, ``g`` its one-hot target. One Dice coefficient for the whole batch (not one
    per class or per sample, which the paper's pixel formulation does not have). ``Σ g² = B`` is never
    zero, so no smoothing term is needed.
    """

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        p = torch.softmax(logits.float(), dim=1)
        g = F.one_hot(target, p.shape[1]).to(p.dtype)
        return 1 - 2 * (p * g).sum() / ((p * p).sum() + (g * g).sum())


def make_loss(name: str) -> nn.Module:
    if name == "ce":
        return nn.CrossEntropyLoss()
    if name == "dice":
        return DiceLoss()
    raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(LOSSES)}")
