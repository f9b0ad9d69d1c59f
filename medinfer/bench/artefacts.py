"""Full-size models for benchmarking, as checkpoint and ONNX export, made once and cached.

Exporting the full DDC-ResNet101 takes minutes on two cores, so each (model, medinfer, torch) combination is
exported once into ``<cache>/bench/`` and reused. The weights are untrained (seeded): speed does not depend
on them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from medinfer import __version__


@dataclass(frozen=True)
class Artefacts:
    name: str
    checkpoint: Path
    onnx: Path
    made_seconds: float  # 0 when both came from the cache


def model_artefacts(name: str, *, progress: bool | None = None) -> Artefacts:
    from medinfer.checkpoint import save_checkpoint
    from medinfer.export import export_onnx
    from medinfer.models import create
    from medinfer.samples import cache_dir

    folder = cache_dir() / "bench" / f"{name}-medinfer{__version__}-torch{torch.__version__.split('+')[0]}"
    checkpoint, onnx_path = folder / f"{name}.json", folder / f"{name}.onnx"
    if checkpoint.is_file() and onnx_path.is_file():
        return Artefacts(name, checkpoint, onnx_path, 0.0)
    start = time.perf_counter()
    torch.manual_seed(0)
    save_checkpoint(create(name), checkpoint)
    export_onnx(checkpoint, onnx_path, progress=progress)
    return Artefacts(name, checkpoint, onnx_path, time.perf_counter() - start)
