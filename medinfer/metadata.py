"""What every checkpoint, ONNX export and TensorRT plan carries besides weights: which model, its classes,
its preprocessing, the medinfer version that wrote it and a hash of its weights.

:class:`ModelMetadata` is written as JSON (checkpoint configs, ``.plan.json``) or as ONNX
``metadata_props``, and validated when read back: a file that lacks it or carries a damaged copy is refused
with a message naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medinfer import __version__
from medinfer.errors import EngineError, InputError
from medinfer.preprocess import Preprocess

FORMAT_VERSION = 1
# ONNX metadata_props keys; each value is JSON.
_PROP_KEYS = {
    "format_version": "medinfer.format_version",
    "medinfer_version": "medinfer.version",
    "model": "medinfer.model",
    "class_names": "medinfer.class_names",
    "preprocess": "medinfer.preprocess",
    "weights_sha256": "medinfer.weights_sha256",
}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ModelMetadata:
    model: dict  # the registry creation record: {"name", "num_classes", "in_chans", "overrides"}
    class_names: tuple[str, ...]
    preprocess: Preprocess
    weights_sha256: str
    medinfer_version: str = __version__
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        missing = {"name", "num_classes", "in_chans", "overrides"} - set(self.model)
        if missing:
            raise InputError(f"model record lacks {', '.join(sorted(missing))}")
        if not isinstance(self.model["name"], str):
            raise InputError(f"model.name must be a string, got {self.model['name']!r}")
        for name in ("num_classes", "in_chans"):
            value = self.model[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"model.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.model["overrides"], dict):
            raise InputError(f"model.overrides must be an object, got {self.model['overrides']!r}")
        if len(set(self.class_names)) != len(self.class_names):
            raise InputError(f"class_names repeats a name: {list(self.class_names)}")
        if len(self.class_names) != self.model["num_classes"]:
            raise InputError(f"{len(self.class_names)} class names for a model with "
                             f"{self.model['num_classes']} outputs: {list(self.class_names)}")
        if self.preprocess.channels != self.model["in_chans"]:
            raise InputError(f"preprocess makes {self.preprocess.channels}-channel input for a model with "
                             f"in_chans={self.model['in_chans']}")

    @property
    def name(self) -> str:
        return self.model["name"]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one input slice."""
        return (self.preprocess.channels, *self.preprocess.size)

    @classmethod
    def for_model(cls, model, *, class_names=None, preprocess: Preprocess | None = None,
                  weights_sha256: str | None = None) -> ModelMetadata:
        """Metadata of a model made by :func:`medinfer.models.create`; class names and preprocessing default
        to its registry entry's. ``weights_sha256`` spares hashing the weights again when known."""
        creation = getattr(model, "creation", None)
        if creation is None:
            raise InputError(f"{type(model).__name__} was not made by medinfer.models.create, so its name, classes "
                             "and preprocessing are unknown; build it with create() or load a checkpoint")
        spec = model.spec
        if preprocess is None:  # the registry's, for as many channels as the model was made with
            preprocess = dataclasses.replace(spec.preprocess, channels=creation["in_chans"])
        return cls(
            model=creation,
            class_names=tuple(class_names) if class_names is not None else spec.class_names,
            preprocess=preprocess,
            weights_sha256=weights_sha256 or model_weights_sha256(model),
        )

    # JSON ------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format_version": self.format_version,
            "medinfer_version": self.medinfer_version,
            "model": self.model,
            "class_names": list(self.class_names),
            "preprocess": self.preprocess.to_dict(),
            "weights_sha256": self.weights_sha256,
        }

    @classmethod
    def from_dict(cls, d: Any, source: str | Path) -> ModelMetadata:
        """Validate metadata read from ``source``; any problem is an :class:`EngineError` naming the file."""
        try:
            if not isinstance(d, Mapping):
                raise InputError(f"expected an object, got {type(d).__name__}")
            missing = [k for k in _PROP_KEYS if k not in d]
            if missing:
                raise InputError(f"missing field(s) {', '.join(missing)}")
            if d["format_version"] != FORMAT_VERSION:
                raise InputError(f"format_version {d['format_version']!r}; this medinfer {__version__} reads "
                                 f"version {FORMAT_VERSION} (use a matching medinfer, or re-export)")
            class_names = d["class_names"]
            if not isinstance(class_names, list) or not all(isinstance(c, str) for c in class_names):
                raise InputError(f"class_names must be a list of strings, got {class_names!r}")
            sha = d["weights_sha256"]
            if not isinstance(sha, str) or len(sha) != 64:
                raise InputError(f"weights_sha256 is not a SHA-256 hex digest: {sha!r}")
            if not isinstance(d["model"], dict):
                raise InputError(f"model must be an object, got {d['model']!r}")
            return cls(model=dict(d["model"]), class_names=tuple(class_names),
                       preprocess=Preprocess.from_dict(d["preprocess"]), weights_sha256=sha,
                       medinfer_version=str(d["medinfer_version"]), format_version=FORMAT_VERSION)
        except InputError as exc:
            raise EngineError(f"{source}: invalid medinfer metadata: {exc}") from None

    # ONNX metadata_props ---------------------------------------------------------------------------------
    def to_props(self) -> dict[str, str]:
        d = self.to_dict()
        return {prop: json.dumps(d[field]) for field, prop in _PROP_KEYS.items()}

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str | Path) -> ModelMetadata:
        if _PROP_KEYS["model"] not in props:
            raise EngineError(f"{source}: not a medinfer export (no medinfer metadata in the ONNX file); export "
                              "it with `medinfer export CHECKPOINT -o model.onnx` or medinfer.export_onnx()")
        try:
            d = {field: json.loads(props[prop]) for field, prop in _PROP_KEYS.items() if prop in props}
        except json.JSONDecodeError as exc:
            raise EngineError(f"{source}: damaged medinfer metadata ({exc})") from None
        return cls.from_dict(d, source)


def model_weights_sha256(model) -> str:
    """SHA-256 of the model's weights in their canonical safetensors serialisation (sorted names, no
    header metadata): the same bytes a checkpoint's ``.safetensors`` file holds."""
    return sha256_bytes(serialize_weights(model.state_dict()))


def serialize_weights(state_dict: Mapping) -> bytes:
    from safetensors.torch import save

    return save({k: v.detach().contiguous().cpu() for k, v in sorted(state_dict.items())})


def read_json_record(path: Path, fmt: str, what: str) -> dict:
    """A medinfer JSON file (checkpoint config, plan record): parsed and checked to be an object with
    ``"format": fmt``; errors name the file and say which ``what`` it failed to be."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EngineError(f"{path}: unreadable {what} ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise EngineError(f"{path}: not a medinfer {what} (no \"format\": \"{fmt}\")")
    return doc


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` beside ``path`` and rename it into place, so a crash never leaves a half-written
    checkpoint, export or plan behind. The file gets the permissions a plain ``open(path, "w")`` would
    (0666 less the umask), not ``mkstemp``'s 0600: other service accounts may need to read engines."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process's umask, read without changing it (Linux reports it in /proc; elsewhere it is set and
    restored at once)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
