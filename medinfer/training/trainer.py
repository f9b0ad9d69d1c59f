"""``train``: one run of a registered model on a labelled data set, following one of the papers' recipes.

A run folder ``RUN`` holds:

* ``best.safetensors`` + ``best.json`` — the weights with the lowest validation loss (the checkpoint
  seed 003 keeps; seed 000 does not say, so both recipes keep it), and ``final.*`` — the weights after the
  last epoch. Both are medinfer checkpoints (``medinfer.Engine``, ``medinfer export``); their JSON holds
  under ``"training"`` the recipe, the loss, the data, the metric history and the selection rule.
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
from medinfer.training.recipes import Recipe, default_recipe, get_recipe, make_optimizer
from medinfer.training.state import load_state, read_state, save_state

AMP_MODES = ("auto", "bf16", "fp16", "off")


@dataclass
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


def _evaluate(model: nn.Module, data: LabelledSlices, loss_fn: nn.Module, device: str, batch: int,
              amp_dtype: torch.dtype | None) -> dict:
    model.eval()
    losses, probs = [], []
    with torch.no_grad():
        for start in range(0, len(data), batch):
            x = torch.from_numpy(data.x[start : start + batch]).to(device, torch.float32)
            y = torch.from_numpy(data.y[start : start + batch]).to(device)
            with torch.autocast(device.split(":")[0], dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
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


def _config(model, data, recipe: Recipe, loss, batch_size, seed, frozen, overrides, input_size) -> dict:
    return {"model": model, "overrides": overrides, "recipe": recipe.to_dict(), "loss": loss,
            "batch_size": batch_size, "seed": seed, "frozen_epochs": frozen, "data": str(Path(data).resolve()),
            "input_size": list(input_size) if input_size else None}


def _check_resume(run_dir: Path, config: dict) -> None:
    saved = json.loads((run_dir / "run.json").read_text())["config"]
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

    ``recipe``: ``"seed000"`` or ``"seed003"`` (default: the model's paper, :func:`default_recipe`);
    ``batch_size`` defaults to the recipe's (the global batch under ``torchrun``). ``loss``: ``"ce"`` or
    ``"dice"`` (seed 000's eq. 9). ``overrides``: model config overrides for :func:`medinfer.models.create`,
    stored in the checkpoints. ``frozen_epochs``: seed 003's phase-1 length. ``input_size``: train at another
    (H, W) than the model's default (stored in the checkpoints' Preprocess, so engines resize to it).
    ``resume``: continue the run in ``out`` from its last completed epoch up to ``epochs``. ``progress``:
    tqdm bars (None: on a terminal only).
    """
    from medinfer.checkpoint import save_checkpoint
    from medinfer.evaluation.plots import plot_history
    from medinfer.models import create, get_spec
    from medinfer.progress import progress_bar

    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise InputError(f"epochs must be a positive integer, got {epochs!r}")
    spec = get_spec(model)
    rec = get_recipe(recipe or default_recipe(model))
    if loss not in LOSSES:
        raise InputError(f"unknown loss {loss!r}; expected one of {', '.join(LOSSES)}")
    if loss not in rec.losses:
        raise InputError(f"recipe {rec.name!r} trains with {' or '.join(rec.losses)}, not {loss!r}")
    batch_size = batch_size or rec.batch_size
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    frozen = rec.frozen_epochs(epochs, frozen_epochs)
    overrides = dict(overrides or {})
    run_dir = Path(out)
    dist, device = distributed.setup(device)
    try:
        source = discover(data)
        class_names = _class_names(source.labels, model)
        torch.manual_seed(seed)  # the initial weights, like everything after them, follow from the seed
        net = create(model, num_classes=len(class_names), **overrides)
        preprocess = dataclasses.replace(spec.preprocess, channels=net.creation["in_chans"],
                                         size=tuple(input_size) if input_size else spec.preprocess.size)
        config = _config(model, data, rec, loss, batch_size, seed, frozen, net.creation["overrides"], input_size)
        history: list[dict] = []
        start_epoch, best_loss, best_epoch = 0, float("inf"), -1
        state = None
        if resume:
            _check_resume(run_dir, config)
            state = read_state(run_dir / "state")
            start_epoch, history = state["epoch"], state["history"]
            best_loss, best_epoch = state["best_val_loss"], state["best_epoch"]
            if start_epoch >= epochs:
                raise InputError(f"{run_dir}: already trained for {start_epoch} epoch(s); ask for more to resume")
        elif (run_dir / "state").exists():
            raise InputError(f"{run_dir} already holds a run; pass resume=True (--resume) to continue it, or choose "
                             "another folder")
        amp_dtype = _amp_dtype(amp, device)  # refuses an impossible choice before any data is read
        shown = progress if dist.main else False
        train_set = load_split(source, "train", preprocess, class_names, progress=shown)
        skipped = [*source.skipped, *train_set.skipped]
        if source.has("val"):
            val_set = load_split(source, "val", preprocess, class_names, progress=shown)
            skipped += val_set.skipped
            val_from = "val split"
        else:
            train_set, val_set = holdout(train_set, rec.val_fraction, seed)
            val_from = f"{rec.val_fraction:.0%} of the train split's items, held out (stratified, seed {seed})"
        summary = {"kind": source.kind, "class_names": list(class_names), "train_items": len(train_set.items),
                   "train_slices": len(train_set), "val_items": len(val_set.items), "val_slices": len(val_set),
                   "validation": val_from}

        scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
        net.to(device)
        loss_fn = make_loss(loss)
        phase = 1 if start_epoch < frozen else 2
        optimizer = make_optimizer(rec, _set_phase(net, phase))
        if state is not None:
            load_state(run_dir / "state", state, net, optimizer, scaler)
        if dist.main:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "run.json").write_text(json.dumps({
                "config": config, "epochs": epochs, "data": summary, "world_size": dist.world, "device": device,
                "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else "off",
                "skipped": [{"path": p, "reason": r} for p, r in skipped]}, indent=2) + "\n")

        def save(name: str) -> Path:
            training = {
                "recipe": rec.to_dict(), "loss": loss, "epochs": len(history), "batch_size": batch_size, "seed": seed,
                "frozen_epochs": frozen, "world_size": dist.world, "data": {"path": config["data"], **summary},
                "history": history, "best_epoch": best_epoch, "best_val_loss": best_loss,
                "selection": "best.json: lowest validation loss; final.json: last epoch"}
            return save_checkpoint(net, run_dir / name, class_names=class_names, preprocess=preprocess,
                                   training=training)

        epoch_bar = progress_bar(range(start_epoch, epochs), desc=f"train {model}", unit="epoch",
                                 initial=start_epoch, total=epochs, progress=shown)
        wrapped = _wrap(net, dist, device)
        for epoch in epoch_bar:
            new_phase = 1 if epoch < frozen else 2
            if new_phase != phase:
                phase = new_phase
                optimizer = make_optimizer(rec, _set_phase(net, phase))
                wrapped = _wrap(net, dist, device)  # DDP registers the parameters that train at construction
            for group in optimizer.param_groups:
                group["lr"] = rec.lr_at(epoch)
            gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
            torch.manual_seed(seed * 100_003 + epoch + 1)
            _train_mode(net, phase)
            perm = torch.randperm(len(train_set), generator=gen)
            t0, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0
            batches = range(0, len(perm), batch_size)
            for start in progress_bar(batches, desc=f"epoch {epoch + 1}", unit="batch", leave=False, progress=shown):
                global_batch = perm[start : start + batch_size]
                idx = dist.shard(global_batch)
                aug_gen = torch.Generator().manual_seed(int(seed * 1_000_003 + epoch * 10_007 + start))
                if len(idx) == 0:
                    continue
                rows = idx.numpy()
                # Augmented on the training device; its random draws come from the CPU generator either way.
                x = augment(torch.from_numpy(train_set.x[rows]).to(device, torch.float32), rec.augment, aug_gen)
                y = torch.from_numpy(train_set.y[rows]).to(device)
                with torch.autocast(device.split(":")[0], dtype=amp_dtype or torch.float32,
                                    enabled=amp_dtype is not None):
                    logits = wrapped(x)
                    batch_loss = loss_fn(logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(batch_loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    batch_loss.backward()
                    optimizer.step()
                seen += len(idx)
                loss_sum += float(batch_loss.detach()) * len(idx)
                correct += int((logits.argmax(1) == y).sum())
            totals = torch.tensor([seen, loss_sum, correct], dtype=torch.float64)
            if dist.enabled:
                torch.distributed.all_reduce(totals)
            entry = {"epoch": epoch + 1, "phase": phase, "lr": rec.lr_at(epoch), "samples": int(totals[0]),
                     "train_loss": float(totals[1] / totals[0]), "train_accuracy": float(totals[2] / totals[0])}
            if dist.main:
                entry.update(_evaluate(net, val_set, loss_fn, device, 2 * batch_size, amp_dtype))
                entry["seconds"] = time.perf_counter() - t0
                history.append(entry)
                if entry["val_loss"] < best_loss:
                    best_loss, best_epoch = entry["val_loss"], epoch + 1
                    save("best")
                save_state(run_dir / "state", net, optimizer, scaler, {
                    "epoch": epoch + 1, "history": history, "best_val_loss": best_loss, "best_epoch": best_epoch})
                epoch_bar.set_postfix(loss=f"{entry['train_loss']:.3f}", val=f"{entry['val_loss']:.3f}",
                                      acc=f"{entry['val_accuracy']:.3f}")
            dist.barrier()
        if dist.main:
            save("final")
            plot_history(history, run_dir / "curves.png", title=f"{model} ({rec.name}, {loss})")
        dist.barrier()
        return TrainResult(checkpoint=run_dir / "best.json", final_checkpoint=run_dir / "final.json",
                           history=history if dist.main else [], curve_png=run_dir / "curves.png", run_dir=run_dir,
                           best_epoch=best_epoch, class_names=class_names, skipped=skipped)
    finally:
        distributed.teardown(dist)

