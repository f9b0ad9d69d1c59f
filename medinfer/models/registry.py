"""Model registry: one small function per registered variant, each with its default configuration.

Like timm's default cfg, every entry carries what a deployment needs besides the weights: input size,
class names and the paper it comes from. ``create(name, num_classes=..., in_chans=..., **overrides)``
builds a model; overrides replace fields of the family's config dataclass (nested configs take dicts), so
tests build tiny variants of the very same code.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from medinfer.errors import InputError
from medinfer.preprocess import Preprocess


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about a variant before it is built."""

    name: str
    family: str
    builder: Callable[..., nn.Module]  # (cfg, num_classes, in_chans) -> model
    cfg: Any  # the family's config dataclass, defaults of this variant
    class_names: tuple[str, ...]
    preprocess: Preprocess  # how HU slices become this model's input (its size: the paper's); stored with engines
    in_chans: int = 1
    paper: str = ""  # where it comes from, e.g. "DDC-ResNet paper, Table 3"
    paper_params_m: float | None = None  # the paper's parameter count, when it reports one
    description: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_size(self) -> tuple[int, int]:
        """(H, W) the paper uses: what the registered Preprocess resizes to."""
        return self.preprocess.size


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is registered twice")
    if spec.preprocess.channels != spec.in_chans:
        raise ValueError(f"model {spec.name!r}: preprocess gives {spec.preprocess.channels} channels, the model "
                         f"takes {spec.in_chans}")
    _REGISTRY[spec.name] = spec
    return spec


def _ensure_loaded() -> None:
    # Family modules register their variants on import.
    from medinfer.models import ddc_resnet, densenet, res_dense, resnet  # noqa: F401


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style pattern, in registration order."""
    _ensure_loaded()
    return [n for n in _REGISTRY if fnmatch.fnmatch(n, pattern)]


def get_spec(name: str) -> ModelSpec:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown model {name!r}; registered: {', '.join(_REGISTRY)}") from None


def apply_overrides(cfg: Any, overrides: dict[str, Any], where: str = "") -> Any:
    """``dataclasses.replace`` that names unknown fields, converts JSON lists back to tuples and recurses
    into nested config dataclasses given as dicts."""
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    changes = {}
    for key, value in overrides.items():
        if key not in fields:
            raise InputError(f"{type(cfg).__name__}{where} has no field {key!r}; fields: {', '.join(fields)}")
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            value = apply_overrides(current, value, f"{where}.{key}")
        else:
            value = _typed_like(current, value, f"{type(cfg).__name__}{where}.{key}")
        changes[key] = value
    return dataclasses.replace(cfg, **changes)


def _typed_like(current: Any, value: Any, name: str) -> Any:
    """``value`` in the type of the field's default ``current`` (JSON lists become tuples), or an InputError
    naming the field: a config from a file must not smuggle a bool in for a width or a string for a list."""
    if current is None or value is None:  # optional fields: nothing to compare with
        return value
    if isinstance(current, tuple):
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{name} must be a list, got {value!r}")
        return tuple(_typed_like(current[0], v, f"{name}[{i}]") if current else v for i, v in enumerate(value))
    if isinstance(current, bool) or isinstance(value, bool):
        ok = isinstance(current, bool) and isinstance(value, bool)
    elif isinstance(current, (int, float)):
        ok = isinstance(value, (int, float)) and (isinstance(current, float) or isinstance(value, int))
    else:
        ok = isinstance(value, type(current))
    if not ok:
        raise InputError(f"{name} must be a {type(current).__name__} like its default {current!r}, got {value!r}")
    return value


def create(name: str, num_classes: int | None = None, in_chans: int | None = None, **overrides: Any) -> nn.Module:
    """Build a registered model.

    ``num_classes`` and ``in_chans`` default to the variant's (its class names; 1 channel for CT).
    Keyword overrides replace fields of the variant's config dataclass. The model records how it was made
    in ``model.creation`` (JSON-serialisable), so a checkpoint's config can rebuild it exactly.
    """
    spec = get_spec(name)
    cfg = apply_overrides(spec.cfg, overrides)
    num_classes = spec.num_classes if num_classes is None else int(num_classes)
    in_chans = spec.in_chans if in_chans is None else int(in_chans)
    if num_classes < 1 or in_chans < 1:
        raise InputError(f"num_classes and in_chans must be positive, got {num_classes}, {in_chans}")
    model = spec.builder(cfg, num_classes, in_chans)
    model.spec = spec
    model.cfg = cfg
    model.creation = {
        "name": name,
        "num_classes": num_classes,
        "in_chans": in_chans,
        "overrides": _jsonable(overrides),
    }
    return model


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def variant(family: str, builder: Callable[..., nn.Module], cfg: Any, *, class_names: tuple[str, ...],
            preprocess: Preprocess, paper: str = "",
            paper_params_m: float | None = None,
            description: str = "") -> Callable[[Callable[[], Any]], Callable[..., nn.Module]]:
    """Decorator for a variant function ``def name(): return cfg_changes`` — the function name is the
    registered name and its return value the fields that differ from ``cfg``."""

    def wrap(fn: Callable[[], dict[str, Any]]) -> Callable[..., nn.Module]:
        spec = register(ModelSpec(
            name=fn.__name__, family=family, builder=builder, cfg=apply_overrides(cfg, fn()),
            class_names=class_names, preprocess=preprocess, paper=paper,
            paper_params_m=paper_params_m,
            description=description or (fn.__doc__ or "").strip().splitlines()[0],
        ))

        def make(num_classes: int | None = None, in_chans: int | None = None, **overrides: Any) -> nn.Module:
            return create(spec.name, num_classes, in_chans, **overrides)

        make.__name__ = make.__qualname__ = fn.__name__
        make.__doc__ = fn.__doc__
        return make

    return wrap
