"""Evaluation: ``evaluate`` (:mod:`medinfer.evaluation.evaluator`), the metrics of both papers
(``metrics``) and the figures (``plots``)."""

from __future__ import annotations


def evaluate(*args, **kwargs):
    """See :func:`medinfer.evaluation.evaluator.evaluate`."""
    from medinfer.evaluation.evaluator import evaluate as run

    return run(*args, **kwargs)


__all__ = ["evaluate"]
