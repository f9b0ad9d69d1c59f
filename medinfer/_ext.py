"""Probe of the compiled extension ``medinfer._C``.

The package works without it (pure Python/numpy fallbacks); this module says whether it loaded and, if
not, why, so ``medinfer info`` can report it and callers can choose a path without try/except.
"""

from __future__ import annotations

import importlib
from types import ModuleType

_module: ModuleType | None = None
_reason: str | None = None
_probed = False


def _probe() -> None:
    global _module, _reason, _probed
    if _probed:
        return
    _probed = True
    try:
        _module = importlib.import_module("medinfer._C")
    except ImportError as exc:  # not built, or built for another Python/ABI
        _reason = (
            f"medinfer._C could not be imported ({exc}); reinstall from source with a C++17 compiler "
            "and CMake to build it. Pure-Python fallbacks are used meanwhile."
        )


def native() -> ModuleType | None:
    """The extension module, or None when it is not available."""
    _probe()
    return _module


def require() -> ModuleType:
    """The extension, for callers whose backend choice already established it is there."""
    module = native()
    if module is None:
        from medinfer.errors import ExtensionUnavailable

        raise ExtensionUnavailable(unavailable_reason() or "medinfer._C is not available")
    return module


def unavailable_reason() -> str | None:
    """Why the extension is unavailable, or None when it loaded."""
    _probe()
    return _reason


def build_info() -> dict:
    """The extension's build description ({} without the extension)."""
    mod = native()
    return dict(mod.build_info()) if mod is not None else {}


def has_cuda() -> bool:
    """Whether the extension was compiled with its CUDA sources."""
    return bool(build_info().get("cuda"))
