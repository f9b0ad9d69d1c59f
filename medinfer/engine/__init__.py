"""Engines: ``Engine(path)`` over ONNX Runtime (``.onnx``), PyTorch (checkpoints) and TensorRT (``.plan``),
and ``build_engine`` for TensorRT plans."""

from medinfer.engine.base import Engine, SeriesPrediction


def build_engine(*args, **kwargs):
    """Build a TensorRT plan from a medinfer ONNX export; see :func:`medinfer.engine.tensorrt_build.build_engine`."""
    from medinfer.engine.tensorrt_build import build_engine as build

    return build(*args, **kwargs)


__all__ = ["Engine", "SeriesPrediction", "build_engine"]
