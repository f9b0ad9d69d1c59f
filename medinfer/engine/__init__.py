"""Engines: ``Engine(path)`` over ONNX Runtime (``.onnx``), PyTorch (checkpoints) and TensorRT (``.plan``),
and ``build_engine`` for TensorRT plans. Each backend's module is imported only when it is chosen."""

from medinfer.engine.base import Engine, SeriesPrediction
from medinfer.engine.tensorrt_build import build_engine

__all__ = ["Engine", "SeriesPrediction", "build_engine"]
