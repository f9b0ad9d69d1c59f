"""Training: ``train`` (:mod:`medinfer.training.trainer`), the papers' recipes (``recipes``), losses
(``losses``), resumable state (``state``) and torchrun support (``distributed``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from medinfer._lazy import lazy

if TYPE_CHECKING:
    from medinfer.training.recipes import RECIPES, Recipe
    from medinfer.training.trainer import TrainResult, train

# Imported on first access: the trainer needs PyTorch, which the recipes (and so the CLI) do not.
_ATTRIBUTES = {
    "train": "medinfer.training.trainer",
    "TrainResult": "medinfer.training.trainer",
    "RECIPES": "medinfer.training.recipes",
    "Recipe": "medinfer.training.recipes",
}


__getattr__, __dir__ = lazy(__name__, globals(), _ATTRIBUTES)

__all__ = ["RECIPES", "Recipe", "TrainResult", "train"]
