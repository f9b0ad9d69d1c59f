"""The baselines medinfer is measured against, written once and imported by ``medinfer bench`` and by the
pytest-benchmark files in ``benchmarks/``.

* :func:`naive_series_probabilities` — what a user would write without medinfer: pydicom reads every file,
  numpy converts to HU and windows, PyTorch resizes and runs the model one slice at a time, the slice
  probabilities are averaged. Same arithmetic as medinfer's preprocessing, so the answers agree.
* :func:`onnxruntime_prebatched` — the model alone: ONNX Runtime's ``session.run`` over batches that are
  already preprocessed, the floor any runtime around it can approach.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medinfer.preprocess import Preprocess


def naive_series_probabilities(folder: str | Path, model: torch.nn.Module, preprocess: Preprocess) -> np.ndarray:
    """Mean class probabilities of the DICOM series in ``folder``, one slice at a time."""
    import pydicom

    slices = []
    for path in sorted(Path(folder).iterdir()):
        ds = pydicom.dcmread(path)
        hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        slices.append((float(ds.ImagePositionPatient[2]), hu))
    slices.sort(key=lambda s: s[0])
    lo, hi = preprocess.hu_range
    scale, offset = preprocess.affine()
    probs = []
    with torch.no_grad():
        for _, hu in slices:
            x = torch.from_numpy(np.clip(hu, lo, hi))[None, None]
            x = F.interpolate(x, size=preprocess.size, mode="bilinear", antialias=True, align_corners=False)
            x = (x * scale + offset).repeat(1, preprocess.channels, 1, 1)
            probs.append(torch.softmax(model(x), dim=1)[0].numpy())
    return np.mean(probs, axis=0)


def onnxruntime_prebatched(session, batches: list[np.ndarray]) -> list[np.ndarray]:
    """``session.run`` over each preprocessed batch, nothing else."""
    return [session.run(None, {"input": b})[0] for b in batches]
