"""Names a package re-exports but imports only on first access (PEP 562), so that importing the package stays
light: ``__getattr__, __dir__ = lazy(__name__, globals(), {"name": "module.path", ...})``."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable


def lazy(package: str, namespace: dict, attributes: dict[str, str],
         submodules: Iterable[str] = ()) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: each name of ``attributes`` comes from its module,
    each of ``submodules`` is ``package.<name>``, both imported when first asked for."""
    submodules = tuple(submodules)

    def __getattr__(name: str):
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        if name in attributes:
            return getattr(importlib.import_module(attributes[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted([*namespace, *submodules, *attributes])

    return __getattr__, __dir__
