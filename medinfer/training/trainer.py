"""``train``: one run of a registered model on a labelled data set, following one of the papers' recipes
(:mod:`medinfer.training.recipes`).

A run folder ``RUN`` holds:

* ``best.safetensors`` + ``best.json`` — the weights with the lowest validation loss (the checkpoint the
  Res-Dense Net paper keeps; the DDC-ResNet paper does not say, so both recipes keep it), and ``final.*`` —
  the weights after the last epoch. Both are medinfer checkpoints (``medinfer.Engine``,
  ``medinfer export``); their JSON holds under ``"training"`` the recipe, the loss, the data, the metric
  history and the selection rule.
* ``curves.png`` — loss, accuracy and macro F1 per epoch.
* ``run.json`` — the run's configuration, data summary and every data file that was not used.
* ``state/`` — what ``resume=True`` continues from (see :mod:`medinfer.training.state`).

Reproducibility: every epoch seeds its own generators (shuffling, augmentation, dropout) from
``(seed, epoch)``, so an interrupted run resumed from ``state/`` ends with the same weights as an
uninterrupted one on the same hardware (tested on the CPU). On a GPU, mixed precision (``amp``: bf16
where supported, else fp16 with a gradient scaler) is on by default; cuDNN's nondeterministic kernels
make GPU runs close, not bitwise equal.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from medinfer.data.augment import augment
from medinfer.data.dataset import discover
from medinfer.data.slices import LabelledSlices, holdout, load_split
from medinfer.errors import InputError
from medinfer.evaluation.metrics import classification_metrics, group_mean
from medinfer.training import distributed
from medinfer.training.losses import LOSSES, make_loss
from medinfer.training.recipes import Recipe, default_recipe, get_recipe, make_optimizer, with_current_names
from medinfer.training.state import load_state, read_state, save_state

if TYPE_CHECKING:
    from medinfer.data.dataset import DataSource

AMP_MODES = ("auto", "bf16", "fp16", "off")


@dataclass(kw_only=True)
class TrainResult:
    checkpoint: Path  # best.json: the lowest validation loss
    final_checkpoint: Path  # final.json: after the last epoch
    history: list[dict]  # one entry per epoch
    curve_png: Path
    run_dir: Path
    best_epoch: int
    class_names: tuple[str, ...]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # data files that were not used


def _class_names(labels: list[str], model: str) -> tuple[str, ...]:
    """The model's own class order when the data has exactly its classes, else sorted labels."""
    from medinfer.models import get_spec

    spec_names = get_spec(model).class_names
    return tuple(spec_names) if set(labels) == set(spec_names) else tuple(sorted(labels))


def _head_and_backbone(model: nn.Module) -> tuple[list[nn.Module], list[nn.Module]]:
    heads = model.head_modules() if hasattr(model, "head_modules") else [model.head]
    ids = {id(m) for m in heads}
    return heads, [m for m in model.children() if id(m) not in ids]


def _set_phase(model: nn.Module, phase: int) -> list[nn.Parameter]:
    """Mark what trains in ``phase`` (1: heads only, 2: everything); returns the trainable parameters."""
    heads, _ = _head_and_backbone(model)
    for p in model.parameters():
        p.requires_grad_(phase == 2)
    for m in heads:
        for p in m.parameters():
            p.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def _train_mode(model: nn.Module, phase: int) -> None:
    model.train()
    if phase == 1:  # frozen backbones keep their BatchNorm statistics
        for m in _head_and_backbone(model)[1]:
            m.eval()


def _amp_dtype(amp: str, device: str) -> torch.dtype | None:
    if amp not in AMP_MODES:
        raise InputError(f"amp must be one of {', '.join(AMP_MODES)}, got {amp!r}")
    if not device.startswith("cuda") or amp == "off":
        if amp in ("bf16", "fp16") and not device.startswith("cuda"):
            raise InputError(f"amp={amp!r} needs a CUDA device; on {device} training runs in fp32")
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


def _autocast(device: str, amp_dtype: torch.dtype | None):
    return torch.autocast(device.split(":")[0], dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None)


def _evaluate(model: nn.Module, data: LabelledSlices, loss_fn: nn.Module, device: str, batch: int,
              amp_dtype: torch.dtype | None) -> dict:
    model.eval()
    losses, probs = [], []
    with torch.no_grad():
        for start in range(0, len(data), batch):
            x = torch.from_numpy(data.x[start : start + batch]).to(device, torch.float32)
            y = torch.from_numpy(data.y[start : start + batch]).to(device)
            with _autocast(device, amp_dtype):
                logits = model(x)
            losses.append(float(loss_fn(logits.float(), y)) * len(y))
            probs.append(torch.softmax(logits.float(), 1).cpu().numpy())
    p = np.concatenate(probs)
    m = classification_metrics(data.y, p, data.class_names)
    out = {"val_loss": sum(losses) / len(data), "val_accuracy": m["accuracy"], "val_macro_f1": m["macro"]["f1"],
           "val_macro_auc": m["macro"]["auc"]}
    if data.kind == "series":
        series = classification_metrics(data.item_labels(), group_mean(p, data.group, len(data.items)),
                                        data.class_names)
        out["val_series_macro_f1"] = series["macro"]["f1"]
    return out


def _wrap(net: nn.Module, dist: distributed.Dist, device: str) -> nn.Module:
    if not dist.enabled:
        return net
    ids = [dist.local_rank] if device.startswith("cuda") else None
    return torch.nn.parallel.DistributedDataParallel(net, device_ids=ids)


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return value


def _check_arguments(model: str, epochs: int, loss: str, recipe: str | None, batch_size: int | None,
                     frozen_epochs: int | None) -> tuple[Recipe, int, int]:
    """The run's recipe, batch size and frozen (phase-1) epochs, once the arguments that fix them are checked."""
    from medinfer.models import get_spec

    _positive_int("epochs", epochs)
    get_spec(model)  # an unknown model is named before anything else
    rec = get_recipe(recipe or default_recipe(model))
    if loss not in LOSSES:
        raise InputError(f"unknown loss {loss!r}; expected one of {', '.join(LOSSES)}")
    if loss not in rec.losses:
        raise InputError(f"recipe {rec.name!r} trains with {' or '.join(rec.losses)}, not {loss!r}")
    return rec, _positive_int("batch_size", batch_size or rec.batch_size), rec.frozen_epochs(epochs, frozen_epochs)


def _check_resume(run_dir: Path, config: dict) -> None:
    saved = json.loads((run_dir / "run.json").read_text())["config"]
    if "recipe" in saved:  # run folders from before the recipes were renamed say seed000 / seed003
        saved["recipe"] = with_current_names(saved["recipe"])
    for key in config:  # everything the run's configuration fixes
        if saved.get(key) != config.get(key):
            raise InputError(f"{run_dir}: cannot resume with a different {key} ({saved.get(key)!r} in the run, "
                             f"{config.get(key)!r} now); start a new run folder instead")


def train(model: str, data: str | Path, out: str | Path, *, epochs: int, batch_size: int | None = None,
          loss: str = "ce", recipe: str | None = None, overrides: dict | None = None, device: str | None = None,
          resume: bool = False, progress: bool | None = None, seed: int = 0, frozen_epochs: int | None = None,
          amp: str = "auto", input_size: tuple[int, int] | None = None) -> TrainResult:
    """Train registered model ``model`` on the data set ``data`` (see :mod:`medinfer.data.dataset`), writing the
    run folder ``out``.

    ``recipe``: ``"ddc2021"`` or ``"resdense2021"`` (their old names ``"seed000"`` and ``"seed003"`` are
    accepted too; default: the model's paper, :func:`default_recipe`); ``batch_size`` defaults to the
    recipe's (the global batch under ``torchrun``). ``loss``: ``"ce"`` or ``"dice"`` (the DDC-ResNet
    paper's eq. 9). ``overrides``: model config overrides for :func:`medinfer.models.create`, stored in the
    checkpoints. ``frozen_epochs``: the phase-1 length of ``resdense2021``. ``input_size``: train at another
    (H, W) than the model's default (stored in the checkpoints' Preprocess, so engines resize to it).
    ``resume``: continue the run in ``out`` from its last completed epoch up to ``epochs``. ``progress``:
    tqdm bars (None: on a terminal only).
    """
    rec, batch_size, frozen = _check_arguments(model, epochs, loss, recipe, batch_size, frozen_epochs)
    dist, device = distributed.setup(device)
    try:
        run = _Run(model=model, recipe=rec, loss=loss, epochs=epochs, batch_size=batch_size, frozen=frozen, seed=seed,
                   run_dir=Path(out), dist=dist, device=device, progress=progress)
        source = discover(data)
        run.build_model(source.labels, data, dict(overrides or {}), input_size)
        state = run.restore(resume)
        amp_dtype = _amp_dtype(amp, device)  # refuses an impossible choice before any data is read
        run.load_data(source)
        run.prepare_optimisation(amp_dtype, state)
        run.write_run_json()
        run.train_epochs()
        return run.finish()
    finally:
        distributed.teardown(dist)


class _Run:
    """One :func:`train` call: its checked settings, and the steps ``train`` takes in turn, each setting up
    what the next ones use (the model, the data, the optimiser) or advancing the run (history, best epoch)."""

    def __init__(self, *, model: str, recipe: Recipe, loss: str, epochs: int, batch_size: int, frozen: int,
                 seed: int, run_dir: Path, dist: distributed.Dist, device: str, progress: bool | None) -> None:
        self.model, self.recipe, self.loss, self.epochs = model, recipe, loss, epochs
        self.batch_size, self.frozen, self.seed = batch_size, frozen, seed
        self.run_dir, self.dist, self.device = run_dir, dist, device
        self.progress = progress if dist.main else False  # only rank 0 shows bars
        # Where the run stands: nothing done yet, unless restore() reads otherwise.
        self.start_epoch = 0
        self.history: list[dict] = []
        self.best_loss, self.best_epoch = float("inf"), -1

    def build_model(self, labels: list[str], data: str | Path, overrides: dict,
                    input_size: tuple[int, int] | None) -> None:
        """The model with its initial weights, its class names and input, and the configuration run.json
        records (and a resumed run must match)."""
        from medinfer.models import create, get_spec

        self.class_names = _class_names(labels, self.model)
        torch.manual_seed(self.seed)  # the initial weights, like everything after them, follow from the seed
        self.net = create(self.model, num_classes=len(self.class_names), **overrides)
        registered = get_spec(self.model).preprocess
        self.preprocess = dataclasses.replace(registered, channels=self.net.creation["in_chans"],
                                              size=tuple(input_size) if input_size else registered.size)
        self.config = {"model": self.model, "overrides": self.net.creation["overrides"],
                       "recipe": self.recipe.to_dict(), "loss": self.loss, "batch_size": self.batch_size,
                       "seed": self.seed, "frozen_epochs": self.frozen, "data": str(Path(data).resolve()),
                       "input_size": list(input_size) if input_size else None}

    def restore(self, resume: bool) -> dict | None:
        """With ``resume``: the saved state of the run in ``run_dir``, checked to be this run, which now stands
        where that state left it. Without: None, once ``run_dir`` is known to hold no run."""
        if not resume:
            if (self.run_dir / "state").exists():
                raise InputError(f"{self.run_dir} already holds a run; pass resume=True (--resume) to continue it, "
                                 "or choose another folder")
            return None
        _check_resume(self.run_dir, self.config)
        state = read_state(self.run_dir / "state")
        self.start_epoch, self.history = state["epoch"], state["history"]
        self.best_loss, self.best_epoch = state["best_val_loss"], state["best_epoch"]
        if self.start_epoch >= self.epochs:
            raise InputError(f"{self.run_dir}: already trained for {self.start_epoch} epoch(s); ask for more to "
                             "resume")
        return state

    def load_data(self, source: DataSource) -> None:
        """The training and validation slices (the ``val`` split, else a hold-out of train), the files that
        were not used, and the summary that run.json and the checkpoints record."""
        train_set = load_split(source, "train", self.preprocess, self.class_names, progress=self.progress)
        self.skipped = [*source.skipped, *train_set.skipped]
        if source.has("val"):
            val_set = load_split(source, "val", self.preprocess, self.class_names, progress=self.progress)
            self.skipped += val_set.skipped
            val_from = "val split"
        else:
            fraction = self.recipe.val_fraction
            train_set, val_set = holdout(train_set, fraction, self.seed)
            val_from = f"{fraction:.0%} of the train split's items, held out (stratified, seed {self.seed})"
        self.train_set, self.val_set = train_set, val_set
        self.summary = {"kind": source.kind, "class_names": list(self.class_names),
                        "train_items": len(train_set.items), "train_slices": len(train_set),
                        "val_items": len(val_set.items), "val_slices": len(val_set), "validation": val_from}

    def prepare_optimisation(self, amp_dtype: torch.dtype | None, state: dict | None) -> None:
        """The model on its device, the loss, the grad scaler (fp16 only) and the optimiser of the first
        phase to train, restored from ``state`` when resuming."""
        self.amp_dtype = amp_dtype
        self.scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
        self.net.to(self.device)
        self.loss_fn = make_loss(self.loss)
        self._start_phase(self._phase_of(self.start_epoch))
        if state is not None:
            load_state(self.run_dir / "state", state, self.net, self.optimizer, self.scaler)

    def _phase_of(self, epoch: int) -> int:
        return 1 if epoch < self.frozen else 2

    def _start_phase(self, phase: int) -> None:
        """Each phase trains other parameters, with a fresh optimiser."""
        self.phase = phase
        self.optimizer = make_optimizer(self.recipe, _set_phase(self.net, phase))

    def write_run_json(self) -> None:
        if not self.dist.main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        amp = str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "off"
        (self.run_dir / "run.json").write_text(json.dumps({
            "config": self.config, "epochs": self.epochs, "data": self.summary, "world_size": self.dist.world,
            "device": self.device, "amp": amp,
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped]}, indent=2) + "\n")

    def train_epochs(self) -> None:
        """The epochs from ``start_epoch`` on; after each, rank 0 validates and saves while the others wait."""
        from medinfer.progress import progress_bar

        bar = progress_bar(range(self.start_epoch, self.epochs), desc=f"train {self.model}", unit="epoch",
                           initial=self.start_epoch, total=self.epochs, progress=self.progress)
        wrapped = _wrap(self.net, self.dist, self.device)
        for epoch in bar:
            if self._phase_of(epoch) != self.phase:
                self._start_phase(self._phase_of(epoch))
                # DDP registers the parameters that train when it is built.
                wrapped = _wrap(self.net, self.dist, self.device)
            t0 = time.perf_counter()
            entry = self._train_epoch(wrapped, epoch)
            if self.dist.main:
                self._validate_and_save(entry, t0)
                bar.set_postfix(loss=f"{entry['train_loss']:.3f}", val=f"{entry['val_loss']:.3f}",
                                acc=f"{entry['val_accuracy']:.3f}")
            self.dist.barrier()

    def _train_epoch(self, model: nn.Module, epoch: int) -> dict:
        """One pass over the training slices; returns the epoch's history entry with its training figures,
        summed over the ranks."""
        from medinfer.progress import progress_bar

        for group in self.optimizer.param_groups:
            group["lr"] = self.recipe.lr_at(epoch)
        # The epoch's shuffling, dropout and augmentation follow from (seed, epoch): a resumed run repeats them.
        order = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        torch.manual_seed(self.seed * 100_003 + epoch + 1)
        _train_mode(self.net, self.phase)
        perm = torch.randperm(len(self.train_set), generator=order)
        seen, loss_sum, correct = 0, 0.0, 0
        starts = range(0, len(perm), self.batch_size)
        for start in progress_bar(starts, desc=f"epoch {epoch + 1}", unit="batch", leave=False,
                                  progress=self.progress):
            rows = self.dist.shard(perm[start : start + self.batch_size]).numpy()
            if len(rows) == 0:
                continue
            aug_gen = torch.Generator().manual_seed(int(self.seed * 1_000_003 + epoch * 10_007 + start))
            # Augmented on the training device; its random draws come from the CPU generator either way.
            x = augment(torch.from_numpy(self.train_set.x[rows]).to(self.device, torch.float32), self.recipe.augment,
                        aug_gen)
            y = torch.from_numpy(self.train_set.y[rows]).to(self.device)
            logits, batch_loss = self._step(model, x, y)
            seen += len(rows)
            loss_sum += float(batch_loss.detach()) * len(rows)
            correct += int((logits.argmax(1) == y).sum())
        totals = torch.tensor([seen, loss_sum, correct], dtype=torch.float64)
        if self.dist.enabled:
            torch.distributed.all_reduce(totals)
        return {"epoch": epoch + 1, "phase": self.phase, "lr": self.recipe.lr_at(epoch), "samples": int(totals[0]),
                "train_loss": float(totals[1] / totals[0]), "train_accuracy": float(totals[2] / totals[0])}

    def _step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward (under autocast with AMP), backward and one optimiser step; returns the logits and the loss."""
        with _autocast(self.device, self.amp_dtype):
            logits = model(x)
            loss = self.loss_fn(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:  # fp16: scaled so that small gradients do not underflow
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return logits, loss

    def _validate_and_save(self, entry: dict, t0: float) -> None:
        """Rank 0, after an epoch: validation figures into ``entry``, the best checkpoint when the validation
        loss improved, and the state a resumed run continues from."""
        entry.update(_evaluate(self.net, self.val_set, self.loss_fn, self.device, 2 * self.batch_size,
                               self.amp_dtype))
        entry["seconds"] = time.perf_counter() - t0
        self.history.append(entry)
        if entry["val_loss"] < self.best_loss:
            self.best_loss, self.best_epoch = entry["val_loss"], entry["epoch"]
            self._save_checkpoint("best")
        save_state(self.run_dir / "state", self.net, self.optimizer, self.scaler, {
            "epoch": entry["epoch"], "history": self.history, "best_val_loss": self.best_loss,
            "best_epoch": self.best_epoch})

    def _save_checkpoint(self, name: str) -> None:
        from medinfer.checkpoint import save_checkpoint

        training = {
            "recipe": self.recipe.to_dict(), "loss": self.loss, "epochs": len(self.history),
            "batch_size": self.batch_size, "seed": self.seed, "frozen_epochs": self.frozen,
            "world_size": self.dist.world, "data": {"path": self.config["data"], **self.summary},
            "history": self.history, "best_epoch": self.best_epoch, "best_val_loss": self.best_loss,
            "selection": "best.json: lowest validation loss; final.json: last epoch"}
        save_checkpoint(self.net, self.run_dir / name, class_names=self.class_names, preprocess=self.preprocess,
                        training=training)

    def finish(self) -> TrainResult:
        """Rank 0 saves the final checkpoint and the curves; every rank returns the result."""
        from medinfer.evaluation.plots import plot_history

        if self.dist.main:
            self._save_checkpoint("final")
            plot_history(self.history, self.run_dir / "curves.png",
                         title=f"{self.model} ({self.recipe.name}, {self.loss})")
        self.dist.barrier()
        return TrainResult(checkpoint=self.run_dir / "best.json", final_checkpoint=self.run_dir / "final.json",
                           history=self.history if self.dist.main else [], curve_png=self.run_dir / "curves.png",
                           run_dir=self.run_dir, best_epoch=self.best_epoch, class_names=self.class_names,
                           skipped=self.skipped)
