"""medinfer: CT image classification from PyTorch training to TensorRT / ONNX Runtime inference.

Importing medinfer needs neither the compiled extension, a GPU, Triton nor TensorRT: each is probed when
first used, and ``medinfer info`` says which are missing and why. Subpackages load on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medinfer._lazy import lazy
from medinfer._version import __version__

_SUBMODULES = ("backends", "checkpoint", "data", "engine", "errors", "evaluation", "export", "extras", "hu", "info",
               "integrity", "io", "kernels", "listen", "models", "onnx_file", "ops", "phantom", "preprocess", "resize",
               "runtime", "samples", "serve", "tasks", "training")
# Names re-exported at the top level, loaded with their module on first access.
_ATTRIBUTES = {
    "load_series": "medinfer.io",
    "load_study": "medinfer.io",
    "Series": "medinfer.io",
    "Preprocess": "medinfer.preprocess",
    "SeriesBatcher": "medinfer.runtime",
    "Engine": "medinfer.engine",
    "RemoteEngine": "medinfer.serve",
    "SeriesPrediction": "medinfer.engine",
    "build_engine": "medinfer.engine",
    "export_onnx": "medinfer.export",
    "load_checkpoint": "medinfer.checkpoint",
    "save_checkpoint": "medinfer.checkpoint",
    "train": "medinfer.training",
    "evaluate": "medinfer.evaluation",
    "sign": "medinfer.integrity",
}

if TYPE_CHECKING:
    from medinfer import (  # noqa: F401
        backends,
        checkpoint,
        data,
        engine,
        errors,
        evaluation,
        export,
        extras,
        hu,
        info,
        integrity,
        io,
        kernels,
        listen,
        models,
        onnx_file,
        ops,
        phantom,
        preprocess,
        resize,
        runtime,
        samples,
        serve,
        tasks,
        training,
    )
    from medinfer.checkpoint import load_checkpoint, save_checkpoint  # noqa: F401
    from medinfer.engine import Engine, SeriesPrediction, build_engine  # noqa: F401
    from medinfer.evaluation import evaluate  # noqa: F401
    from medinfer.export import export_onnx  # noqa: F401
    from medinfer.integrity import sign  # noqa: F401
    from medinfer.io import Series, load_series, load_study  # noqa: F401
    from medinfer.preprocess import Preprocess  # noqa: F401
    from medinfer.runtime import SeriesBatcher  # noqa: F401
    from medinfer.serve import RemoteEngine  # noqa: F401
    from medinfer.training import train  # noqa: F401


__getattr__, __dir__ = lazy(__name__, globals(), _ATTRIBUTES, _SUBMODULES)

__all__ = ["__version__", *_SUBMODULES, *_ATTRIBUTES]
