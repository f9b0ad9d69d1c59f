"""Engines: ``Engine(path)`` over ONNX Runtime and OpenVINO (``.onnx``), PyTorch (checkpoints) and TensorRT
(``.plan``), and ``build_engine`` for TensorRT plans. Each backend's module is imported only when it is chosen."""

from typing import TYPE_CHECKING

from medinfer._lazy import lazy
from medinfer.engine.base import Engine, SeriesPrediction

if TYPE_CHECKING:
    from medinfer.engine.tensorrt_build import build_engine

__getattr__, __dir__ = lazy(__name__, globals(), {"build_engine": "medinfer.engine.tensorrt_build"})

__all__ = ["Engine", "SeriesPrediction", "build_engine"]
