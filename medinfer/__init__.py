"""medinfer: CT image classification from PyTorch training to TensorRT / ONNX Runtime inference.

Importing medinfer needs neither the compiled extension, a GPU, Triton nor TensorRT: each is probed when
first used, and ``medinfer info`` says which are missing and why. Subpackages load on first access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from medinfer._version import __version__

_SUBMODULES = ("backends", "errors", "hu", "info", "kernels", "models", "ops")

if TYPE_CHECKING:
    from medinfer import backends, errors, hu, info, kernels, models, ops  # noqa: F401


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"medinfer.{name}")
    raise AttributeError(f"module 'medinfer' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_SUBMODULES])


__all__ = ["__version__", *_SUBMODULES]
