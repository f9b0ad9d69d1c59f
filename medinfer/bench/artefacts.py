"""Full-size models for benchmarking, as checkpoint and ONNX export, made once and cached.

Exporting the full DDC-ResNet101 takes minutes on two cores, so each (model, medinfer, torch) combination is
exported once into ``<cache>/bench/`` and reused. The weights are untrained (seeded): speed does not depend
on them. Their BatchNorm statistics are those of real slices (the chest CT, through the model's own
preprocessing): with the initial statistics (mean 0, variance 1) a full-size untrained model's activations grow
layer after layer until its softmax saturates to exactly 0 and 1, and an accuracy comparison of reduced
precision against fp32 on it would measure nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medinfer import __version__


@dataclass(frozen=True)
class Artefacts:
    name: str
    checkpoint: Path
    onnx: Path
    made_seconds: float  # 0 when both came from the cache


def recalibrate_batchnorm(model: torch.nn.Module, slices: int = 32, batch: int = 8) -> None:
    """Set every BatchNorm's running statistics to their average over ``slices`` slices of the real chest CT,
    preprocessed as the model's metadata says (weights untouched); the model is left in eval mode."""
    from medinfer.io import load_series
    from medinfer.metadata import ModelMetadata
    from medinfer.runtime import SeriesBatcher
    from medinfer.samples import chest_ct

    series = load_series(chest_ct())
    preprocess = ModelMetadata.for_model(model, weights_sha256="-").preprocess
    with SeriesBatcher(preprocess, batch).run([series]) as run:
        data = np.concatenate([b.data[: b.count] for b in run])
    pick = data[np.linspace(0, len(data) - 1, slices).round().astype(int)]
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
    model.train()
    with torch.no_grad():
        for chunk in np.array_split(pick, max(1, slices // batch)):
            model(torch.from_numpy(chunk))
    for m in norms:
        m.momentum = 0.1
    model.eval()


def model_artefacts(name: str, *, progress: bool | None = None) -> Artefacts:
    from medinfer.checkpoint import save_checkpoint
    from medinfer.export import export_onnx
    from medinfer.models import create
    from medinfer.samples import cache_dir

    folder = cache_dir() / "bench" / f"{name}-medinfer{__version__}-torch{torch.__version__.split('+')[0]}-bn"
    checkpoint, onnx_path = folder / f"{name}.json", folder / f"{name}.onnx"
    if checkpoint.is_file() and onnx_path.is_file():
        return Artefacts(name, checkpoint, onnx_path, 0.0)
    start = time.perf_counter()
    torch.manual_seed(0)
    model = create(name)
    recalibrate_batchnorm(model)
    save_checkpoint(model, checkpoint)
    export_onnx(checkpoint, onnx_path, progress=progress)
    return Artefacts(name, checkpoint, onnx_path, time.perf_counter() - start)
