"""``evaluate``: a trained model (run folder, checkpoint or engine file) on a labelled split, through the
deployment path.

Every item goes through :meth:`medinfer.Engine.predict_many` — the engine the file calls for (PyTorch for a
checkpoint, ONNX Runtime for ``.onnx``, TensorRT for ``.plan``), fed by the C++ series batcher with the
model's stored ``Preprocess`` — so the figures are those of the artefact that would be deployed. An ROI
is a one-slice series. For series data the slice probabilities are averaged per series (as in the
Res-Dense Net paper) and the series-level metrics are the headline; slice-level metrics (each slice with
its series' label) come beside them.

Writes ``metrics.json`` (metrics, per-item predictions, every file that was not used), ``roc.png`` and
``confusion.png`` into ``out``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medinfer.checkpoint import find_config
from medinfer.data.dataset import discover
from medinfer.data.slices import read_split
from medinfer.evaluation.metrics import classification_metrics
from medinfer.evaluation.plots import plot_confusion, plot_roc

if TYPE_CHECKING:
    from medinfer.engine import Engine


def evaluate(run_or_checkpoint: str | Path | Engine, data: str | Path, out: str | Path, *, split: str = "test",
             progress: bool | None = None, aggregate: str = "mean", backend: str | None = None,
             device: str | None = None) -> dict:
    """Metrics of a model on ``split`` of ``data``; see the module docstring. ``run_or_checkpoint`` may also
    be an :class:`~medinfer.engine.Engine` already loaded (``backend`` and ``device`` are then its own).
    Returns what ``metrics.json`` holds (without the per-item ROC points)."""
    from medinfer.engine import Engine

    if isinstance(run_or_checkpoint, Engine):
        engine = run_or_checkpoint
    else:
        model_path = Path(run_or_checkpoint)
        if model_path.is_dir():  # a checkpoint's folder, or a run folder: its best checkpoint
            model_path = find_config(model_path)
        engine = Engine(model_path, backend=backend, device=device)
    names = tuple(engine.class_names)
    source = discover(data)
    items, labels, series, used, skipped = read_split(source, split, names, progress)
    skipped = [*source.skipped, *skipped]
    y = labels[used]
    preds = engine.predict_many(series, aggregate=aggregate, progress=progress, errors="raise")
    probs = np.stack([[p.probabilities[c] for c in names] for p in preds])
    headline = classification_metrics(y, probs, names)
    level = "series" if source.kind == "series" else "roi"
    result = {"model": str(engine.path), "engine": engine.backend, "device": engine.device, "data": str(source.root),
              "split": split, "kind": source.kind, "level": level, "class_names": list(names), **headline}
    if source.kind == "series":
        slice_probs = np.concatenate([p.slice_probabilities for p in preds])
        slice_y = np.repeat(y, [len(p.slice_probabilities) for p in preds])
        result["aggregate"] = aggregate
        result["slice_level"] = {k: v for k, v in classification_metrics(slice_y, slice_probs, names).items()
                                 if k != "roc"}
    result["predictions"] = [
        {"path": str(items[i].path), "label": items[i].label, "predicted": p.label,
         "probabilities": {c: round(v, 6) for c, v in p.probabilities.items()}, "slices": len(p.slice_probabilities)}
        for i, p in zip(used, preds, strict=True)]
    result["skipped"] = [{"path": p, "reason": r} for p, r in skipped]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    title = f"{engine.metadata.name} on {Path(source.root).name}/{split} ({level} level, n={headline['n']})"
    plot_roc(headline, out / "roc.png", title=f"ROC — {title}")
    plot_confusion(headline, names, out / "confusion.png", title=f"accuracy {headline['accuracy']:.3f} — {title}")
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return {k: v for k, v in result.items() if k != "roc"}
