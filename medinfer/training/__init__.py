"""Training: ``train`` (:mod:`medinfer.training.trainer`), the papers' recipes (``recipes``), losses
(``losses``), resumable state (``state``) and torchrun support (``distributed``)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

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


def __getattr__(name: str):
    if name in _ATTRIBUTES:
        return getattr(importlib.import_module(_ATTRIBUTES[name]), name)
    raise AttributeError(f"module 'medinfer.training' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_ATTRIBUTES])


__all__ = ["RECIPES", "Recipe", "TrainResult", "train"]
