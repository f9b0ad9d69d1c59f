"""The resumable state of a run, saved without pickle: tensors in safetensors, everything else in JSON.

``RUN/state/model.safetensors``, ``RUN/state/optimizer.safetensors`` (every tensor of the optimiser's
per-parameter state, named ``<param index>.<key>``) and ``RUN/state/state.json`` (epoch, history, the
optimiser's param groups and non-tensor state, the AMP grad scaler, the run's configuration). The random
state needs no saving: every epoch seeds its own generators from (seed, epoch).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from medinfer.errors import InputError
from medinfer.metadata import atomic_write, serialize_weights

STATE_VERSION = 1


def _optimizer_split(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for index, entries in state_dict["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value
            else:
                plain.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "plain": plain}


def _optimizer_join(tensors: dict[str, torch.Tensor], doc: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    for index, entries in doc["plain"].items():
        state.setdefault(int(index), {}).update(entries)
    return {"state": state, "param_groups": doc["param_groups"]}


def save_state(folder: Path, model: torch.nn.Module, optimizer, scaler, meta: dict) -> None:
    """Write the state after an epoch; each file is replaced atomically, ``state.json`` last."""
    folder.mkdir(parents=True, exist_ok=True)
    opt_tensors, opt_doc = _optimizer_split(optimizer.state_dict())
    atomic_write(folder / "model.safetensors", serialize_weights(model.state_dict()))
    atomic_write(folder / "optimizer.safetensors", serialize_weights(opt_tensors))
    doc = {"version": STATE_VERSION, **meta, "optimizer": opt_doc,
           "scaler": scaler.state_dict() if scaler is not None else None}
    atomic_write(folder / "state.json", (json.dumps(doc, indent=1) + "\n").encode())


def read_state(folder: Path) -> dict:
    """The JSON part of a saved state (raises InputError naming the file when absent or damaged)."""
    path = folder / "state.json"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{folder.parent}: nothing to resume (no {path.relative_to(folder.parent)}); "
                         "start the run without --resume") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: damaged resume state ({exc})") from None
    if doc.get("version") != STATE_VERSION:
        raise InputError(f"{path}: resume state version {doc.get('version')!r}, this medinfer reads {STATE_VERSION}")
    return doc


def load_state(folder: Path, doc: dict, model: torch.nn.Module, optimizer, scaler) -> None:
    """Load the tensors of a saved state into ``model``, ``optimizer`` and ``scaler``."""
    from safetensors.torch import load_file

    model.load_state_dict(load_file(folder / "model.safetensors"))
    optimizer.load_state_dict(_optimizer_join(load_file(folder / "optimizer.safetensors"), doc["optimizer"]))
    if scaler is not None and doc.get("scaler"):
        scaler.load_state_dict(doc["scaler"])
