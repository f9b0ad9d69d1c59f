"""Evaluation: ``evaluate`` (:mod:`medinfer.evaluation.evaluator`), the metrics of both papers
(``metrics``) and the figures (``plots``)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medinfer.evaluation.evaluator import evaluate

# Imported on first access: the metrics and plots (which the trainer uses) need none of the evaluator's readers.
_ATTRIBUTES = {"evaluate": "medinfer.evaluation.evaluator"}


def __getattr__(name: str):
    if name in _ATTRIBUTES:
        return getattr(importlib.import_module(_ATTRIBUTES[name]), name)
    raise AttributeError(f"module 'medinfer.evaluation' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_ATTRIBUTES])


__all__ = ["evaluate"]
