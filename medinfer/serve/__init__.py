"""Serving: a Triton Inference Server for an engine (``medinfer serve``), :class:`RemoteEngine` clients of it,
and Triton model repositories of engine files (``medinfer export-triton``)."""

from typing import TYPE_CHECKING

from medinfer._lazy import lazy

if TYPE_CHECKING:
    from medinfer.serve.remote import RemoteEngine

__getattr__, __dir__ = lazy(__name__, globals(), {"RemoteEngine": "medinfer.serve.remote"})

__all__ = ["RemoteEngine"]
