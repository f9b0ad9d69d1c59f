"""Checkpoints: weights in safetensors, and a JSON config beside them that can rebuild the model.

``run/model.safetensors`` + ``run/model.json``. The JSON holds the :class:`~medinfer.metadata.ModelMetadata`
(model creation record, class names, preprocessing, weights SHA-256, medinfer version) and whatever the
writer adds under ``"training"`` (recipe, metric history). Nothing is unpickled: loading parses JSON,
checks the digest over the whole config (and, with an engine key configured, its signature: see
:mod:`medinfer.integrity`), checks the weights' hash, rebuilds the model from the registry and reads the
tensors with safetensors, after checking that every tensor has the shape the model needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medinfer import integrity
from medinfer.errors import EngineError, InputError
from medinfer.metadata import ModelMetadata, atomic_write, read_json_record, serialize_weights, sha256_bytes
from medinfer.preprocess import Preprocess

if TYPE_CHECKING:  # finding a checkpoint needs no PyTorch; loading or saving one does
    from torch import nn

CHECKPOINT_FORMAT = "medinfer-checkpoint"


@dataclass
class Checkpoint:
    model: nn.Module  # in eval mode, on the CPU
    metadata: ModelMetadata
    config_path: Path
    weights_path: Path
    training: dict = field(default_factory=dict)  # what the writer stored: recipe, history, metrics, ...
    validation: dict = field(default_factory=dict)  # checks of reduced precision against fp32 (medinfer.validation)


def save_checkpoint(model: nn.Module, path: str | Path, *, class_names=None, preprocess: Preprocess | None = None,
                    training: dict[str, Any] | None = None) -> Path:
    """Save ``model`` (made by :func:`medinfer.models.create`) as ``<path>.safetensors`` + ``<path>.json``.

    ``path`` may end in ``.safetensors`` or ``.json`` or have no suffix. Class names and preprocessing
    default to the model's registry entry. Returns the JSON config path.
    """
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    weights, config = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    stem.parent.mkdir(parents=True, exist_ok=True)
    data = serialize_weights(model.state_dict())
    meta = ModelMetadata.for_model(model, class_names=class_names, preprocess=preprocess,
                                   weights_sha256=sha256_bytes(data))
    doc = {"format": CHECKPOINT_FORMAT, **meta.to_dict(), "weights": weights.name, "training": training or {}}
    atomic_write(weights, data)
    _write_config(config, doc)
    return config


_UNSIGNED = ("digest", "signature")  # what the digest does not cover: itself and its signature
_FIX = "save the checkpoint again (medinfer.save_checkpoint, or re-run training)"


def _config_digest(doc: dict) -> str:
    return integrity.digest({k: v for k, v in doc.items() if k not in _UNSIGNED})


def _write_config(config: Path, doc: dict, signature: str | None = None) -> None:
    doc = {k: v for k, v in doc.items() if k not in _UNSIGNED}
    doc["digest"] = _config_digest(doc)
    if signature is not None:
        doc["signature"] = signature
    atomic_write(config, (json.dumps(doc, indent=2) + "\n").encode())


def sign_checkpoint(path: str | Path, key: bytes | None, *, rehash: bool = False) -> Path:
    """Sign a checkpoint's config in place (see :func:`medinfer.integrity.sign`); returns the config path."""
    config = find_config(path)
    doc = read_json_record(config, CHECKPOINT_FORMAT, "checkpoint config")
    if not rehash:
        integrity.check_digest(config, doc.get("digest"), _config_digest(doc), what="checkpoint config", fix=_FIX,
                               engine=config)
    _check_weights(config, doc, ModelMetadata.from_dict(doc, config))
    _write_config(config, doc, integrity.signature_or_none(_config_digest(doc), key))
    return config


def read_config(path: str | Path) -> dict:
    """A checkpoint's config, checked against its digest and (with an engine key configured) its signature."""
    config = find_config(path)
    doc = read_json_record(config, CHECKPOINT_FORMAT, "checkpoint config")
    computed = _config_digest(doc)
    integrity.check_digest(config, doc.get("digest"), computed, what="checkpoint config", fix=_FIX, engine=config)
    integrity.check_signature(config, computed, doc.get("signature"), what="checkpoint config", engine=config)
    return doc


def update_config(path: str | Path, fields: dict) -> Path:
    """Set top-level fields of a checked config in place, digest recomputed and, with an engine key configured,
    signature renewed (a signed config is refused without the key rather than left unsigned)."""
    config = find_config(path)
    doc = read_config(config)
    key = integrity.key_to_resign(config, bool(doc.get("signature")))
    doc.update(fields)
    _write_config(config, doc, integrity.signature_or_none(_config_digest(doc), key))
    return config


def find_config(path: str | Path) -> Path:
    """The JSON config of a checkpoint given as its ``.json``, its ``.safetensors``, its folder, or the run
    folder ``medinfer train`` wrote (its best checkpoint)."""
    path = Path(path)
    if path.is_dir():
        if (path / "run.json").is_file() and (path / "best.json").is_file():
            return path / "best.json"
        candidates = [p for p in sorted(path.glob("*.json")) if _is_checkpoint_config(p)]
        if len(candidates) != 1:
            found = ", ".join(p.name for p in candidates) or "none"
            raise InputError(f"{path}: expected one medinfer checkpoint config (*.json) in the folder, found {found}")
        return candidates[0]
    if path.suffix == ".safetensors":
        config = path.with_suffix(".json")
        if not config.exists():
            raise InputError(f"{path}: its config {config.name} is missing; a checkpoint is a .safetensors file "
                             "plus the .json written beside it by medinfer")
        return config
    if path.suffix == ".json":
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such checkpoint config")
        return path
    raise InputError(f"{path}: not a checkpoint (expected a .json config, a .safetensors file or their folder)")


def _is_checkpoint_config(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("format") == CHECKPOINT_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def is_checkpoint(path: str | Path) -> bool:
    path = Path(path)
    return path.suffix in (".safetensors", ".json") or (path.is_dir() and any(
        _is_checkpoint_config(p) for p in path.glob("*.json")))


def _check_weights(config: Path, doc: dict, meta: ModelMetadata) -> tuple[Path, bytes]:
    """The weights file named by the config and its bytes, once they hash to the recorded SHA-256."""
    name = doc.get("weights")
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise EngineError(f"{config}: field weights must name a file beside the config, got {name!r}")
    weights = config.parent / name
    if not weights.is_file():
        raise EngineError(f"{config}: its weights file {weights.name!r} is missing")
    data = weights.read_bytes()
    if sha256_bytes(data) != meta.weights_sha256:
        raise EngineError(f"{weights}: SHA-256 differs from the one recorded in {config.name}: the weights are "
                          "damaged or were replaced; restore them or save the checkpoint again")
    return weights, data


def _check_tensors(weights: Path, state: dict, expected: dict, model: str) -> None:
    """Every tensor the model needs is present with its shape and dtype kind, and nothing else is."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise EngineError(f"{weights}: weights do not fit model {model!r}: missing {missing[:5]}, unexpected "
                          f"{unexpected[:5]}")
    wrong = [f"{k} is {tuple(state[k].shape)}, the model needs {tuple(v.shape)}"
             for k, v in expected.items() if state[k].shape != v.shape]
    wrong += [f"{k} is {state[k].dtype}, the model needs {v.dtype}" for k, v in expected.items()
              if state[k].shape == v.shape and state[k].dtype.is_floating_point != v.dtype.is_floating_point]
    if wrong:
        raise EngineError(f"{weights}: {len(wrong)} tensor(s) do not fit model {model!r}: " + "; ".join(wrong[:5]))


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Rebuild the model of a checkpoint and load its weights, after checking format, version and hash."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    from medinfer.models import create

    config = find_config(path)
    doc = read_config(config)
    meta = ModelMetadata.from_dict(doc, config)
    weights, data = _check_weights(config, doc, meta)
    m = meta.model
    try:
        model = create(m["name"], m["num_classes"], m["in_chans"], **m["overrides"])
    except Exception as exc:  # the registry's InputError, or whatever a builder raises on a bad config
        raise EngineError(f"{config}: field model.overrides cannot rebuild model {m['name']!r}: "
                          f"{type(exc).__name__}: {exc}") from None
    try:
        state = load(data)
    except SafetensorError as exc:
        raise EngineError(f"{weights}: not a readable safetensors file ({exc})") from None
    _check_tensors(weights, state, model.state_dict(), m["name"])
    model.load_state_dict(state)
    return Checkpoint(model=model.eval(), metadata=meta, config_path=config, weights_path=weights,
                      training=doc.get("training") or {}, validation=doc.get("validation") or {})
