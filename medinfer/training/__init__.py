"""Training: ``train`` (:mod:`medinfer.training.trainer`), the papers' recipes (``recipes``), losses
(``losses``), resumable state (``state``) and torchrun support (``distributed``)."""

from __future__ import annotations


def train(*args, **kwargs):
    """See :func:`medinfer.training.trainer.train`."""
    from medinfer.training.trainer import train as run

    return run(*args, **kwargs)


def __getattr__(name: str):
    if name in ("TrainResult", "RECIPES", "Recipe"):
        from medinfer.training import recipes, trainer

        return getattr(trainer if name == "TrainResult" else recipes, name)
    raise AttributeError(f"module 'medinfer.training' has no attribute {name!r}")


__all__ = ["RECIPES", "Recipe", "TrainResult", "train"]
