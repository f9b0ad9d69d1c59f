"""The two papers' training recipes: ``ddc2021`` from the DDC-ResNet paper (shared/seeds/000) and
``resdense2021`` from the Res-Dense Net paper (shared/seeds/003).

================  ==================================================  ===========================================
                  ``ddc2021`` (DDC-ResNet101, Sec. 4.1)               ``resdense2021`` (Res-Dense Net, Sec. 2.4–2.6)
================  ==================================================  ===========================================
optimiser         Adam, lr 0.002                                      RMSprop, lr 1e-4 (Keras' ρ = 0.9, ε = 1e-7)
schedule          ×0.98 per epoch (exponential decay, period 1)       constant
batch             16                                                  32
loss              cross-entropy, or Dice (eq. 9) with ``--loss dice``  (sparse categorical) cross-entropy
augmentation      flips, padding + cropping, affine                   flips, rotation 0.2 (±72°)
validation        the data set's ``val`` split, else 10 % of train    the ``val`` split, else 25 % of train
                  held out (the paper only has 80/20 train/test)      (the paper's 0.75 : 0.25)
phases            one                                                 two: backbones frozen, then all trainable
checkpoints       ``best`` (lowest validation loss) and ``final``     ``best`` (lowest validation loss) and ``final``
================  ==================================================  ===========================================

The Res-Dense Net paper writes "the checkpoint that has the highest validation loss"; we read it as the
best checkpoint by validation loss, i.e. the lowest. Its two phases: phase 1 trains only ``head_modules()``
(for the two-pipe models: the 1×1 alignment conv and the classifier; for other models their ``head``), with
the frozen backbones' BatchNorm layers in eval mode (running statistics fixed, as Keras does for frozen
layers); phase 2 trains everything with a fresh optimiser. ``frozen_epochs`` (default: a quarter of the
epochs, at least one when there are two or more) says how many epochs phase 1 takes. Training from scratch
— no ImageNet weights can be fetched here — a frozen random backbone teaches the head little, so
``frozen_epochs=0`` is a sensible choice then; the default keeps the paper's procedure.

Runs made before the recipes had these names say ``seed000`` and ``seed003``; :func:`get_recipe` and
:func:`with_current_names` still read them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from medinfer.errors import InputError


@dataclass(frozen=True, kw_only=True)
class Recipe:
    name: str
    optimizer: str  # "adam" | "rmsprop"
    lr: float
    lr_decay: float  # multiplied in once per epoch; 1.0 = constant
    batch_size: int
    augment: str  # see medinfer.data.augment
    val_fraction: float  # held out of train when the data set has no val split
    two_phase: bool
    losses: tuple[str, ...]  # the losses the recipe allows

    def lr_at(self, epoch: int) -> float:
        return self.lr * self.lr_decay**epoch

    def frozen_epochs(self, epochs: int, requested: int | None = None) -> int:
        if not self.two_phase:
            if requested:
                raise InputError(f"recipe {self.name!r} has one phase; frozen epochs apply to 'resdense2021'")
            return 0
        if requested is None:
            return max(1, epochs // 4) if epochs >= 2 else 0
        if not 0 <= requested <= epochs:
            raise InputError(f"frozen_epochs must be in 0..{epochs} (the epochs), got {requested}")
        return requested

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


RECIPES = {r.name: r for r in (
    Recipe(name="ddc2021", optimizer="adam", lr=0.002, lr_decay=0.98, batch_size=16, augment="ddc2021",
           val_fraction=0.1, two_phase=False, losses=("ce", "dice")),
    Recipe(name="resdense2021", optimizer="rmsprop", lr=1e-4, lr_decay=1.0, batch_size=32, augment="resdense2021",
           val_fraction=0.25, two_phase=True, losses=("ce",)),
)}
# The first names of the recipes and of their augmentations, still found in older run folders and scripts.
OLD_NAMES = {"seed000": "ddc2021", "seed003": "resdense2021"}


def default_recipe(model: str) -> str:
    """``resdense2021`` for the Res-Dense Net paper's two-pipe models, ``ddc2021`` for everything else."""
    from medinfer.models import get_spec

    return "resdense2021" if get_spec(model).family == "dual_pipe" else "ddc2021"


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name`` (or an old name of it, see :data:`OLD_NAMES`)."""
    try:
        return RECIPES[OLD_NAMES.get(name, name)]
    except KeyError:
        raise InputError(f"unknown recipe {name!r}; expected one of {', '.join(RECIPES)}") from None


def with_current_names(stored: dict) -> dict:
    """A stored :meth:`Recipe.to_dict` with old recipe and augmentation names replaced by the current ones."""
    return {**stored, **{k: OLD_NAMES[stored[k]] for k in ("name", "augment") if stored.get(k) in OLD_NAMES}}


def make_optimizer(recipe: Recipe, params):
    import torch

    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr)
    # Keras' RMSprop defaults (the Res-Dense Net paper trained in TensorFlow): rho 0.9, epsilon 1e-7.
    return torch.optim.RMSprop(params, lr=recipe.lr, alpha=0.9, eps=1e-7)
