"""Evaluation: ``evaluate`` (:mod:`medinfer.evaluation.evaluator`), the metrics of both papers
(``metrics``) and the figures (``plots``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from medinfer._lazy import lazy

if TYPE_CHECKING:
    from medinfer.evaluation.evaluator import evaluate

# Imported on first access: the metrics and plots (which the trainer uses) need none of the evaluator's readers.
_ATTRIBUTES = {"evaluate": "medinfer.evaluation.evaluator"}


__getattr__, __dir__ = lazy(__name__, globals(), _ATTRIBUTES)

__all__ = ["evaluate"]
