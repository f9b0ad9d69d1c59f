"""The CPU engines side by side (``benchmarks/bench_cpu_engines.py``), full-size models, one run.

Baseline: ONNX Runtime fp32, medinfer's CPU engine before OpenVINO. Candidates: eager PyTorch (the checkpoint),
OpenVINO fp32, OpenVINO bf16 (where the CPU runs it natively), and the int8 export of
:func:`medinfer.quantize.quantize` (calibrated on the real chest CT) on ONNX Runtime and on OpenVINO.

* latency: one slice through ``infer`` (OpenVINO's latency compilation);
* throughput: ``concurrency`` batches of the engine's batch size through ``submit`` at once (OpenVINO's
  throughput streams; the other engines run them one after the other);
* end to end: ``predict_many`` over DICOM series, loading and C++ batching included, and the naive per-slice
  PyTorch pipeline (pydicom + numpy + torch, one slice at a time) as a second baseline.

Each reduced-precision candidate's agreement with ONNX Runtime fp32 on the chest CT and a phantom series
(:func:`medinfer.validation.compare`) is measured beside its speed.
"""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from medinfer.bench.artefacts import Artefacts
from medinfer.bench.baselines import naive_series_probabilities
from medinfer.bench.cases import Comparison, Skipped

BASELINE = "onnxruntime fp32"
CANDIDATES = ("torch eager", "openvino fp32", "openvino bf16", "onnxruntime int8", "openvino int8")
CALIBRATION_SLICES = 64


def int8_export(art: Artefacts, calibration: Path) -> Path:
    """The int8 export of ``art``, quantized once and reused while its fp32 source is the same graph."""
    from medinfer.onnx_file import GRAPH_SHA_KEY, QUANTIZATION_KEY, read_export
    from medinfer.quantize import quantize

    path = art.onnx.with_name(f"{art.name}-int8.onnx")
    source_sha = {p.key: p.value for p in read_export(art.onnx)[1].metadata_props}[GRAPH_SHA_KEY]
    if path.is_file():
        props = {p.key: p.value for p in read_export(path)[1].metadata_props}
        if json.loads(props[QUANTIZATION_KEY])["source"]["graph_sha256"] == source_sha:
            return path
    return quantize(art.onnx, path, [calibration], max_slices=CALIBRATION_SLICES, progress=False).path


def open_engines(art: Artefacts, int8: Path) -> tuple[dict[str, object], list[Skipped]]:
    """Every engine of the comparison that can run here, and why the others cannot."""
    from medinfer import backends
    from medinfer.engine import Engine
    from medinfer.validation import ReducedPrecisionWarning

    makers: dict[str, Callable[[], object]] = {
        BASELINE: lambda: Engine(art.onnx, backend="onnxruntime", device="cpu"),
        "torch eager": lambda: Engine(art.checkpoint, device="cpu"),
        "openvino fp32": lambda: Engine(art.onnx, backend="openvino", precision="fp32"),
        "openvino bf16": lambda: Engine(art.onnx, backend="openvino", precision="bf16"),
        # Explicit int8: measured whatever its check says (its agreement is reported beside its speed).
        "onnxruntime int8": lambda: Engine(int8, backend="onnxruntime", device="cpu", precision="int8"),
        "openvino int8": lambda: Engine(int8, backend="openvino", precision="int8"),
    }
    engines, skipped = {}, []
    for label, make in makers.items():
        backend = label.split()[0]
        reason = backends.BACKENDS[backend].unavailable_reason("cpu")
        if reason is None:
            with warnings.catch_warnings():  # reduced precision is measured here, its accuracy beside it
                warnings.simplefilter("ignore", ReducedPrecisionWarning)
                try:
                    engines[label] = make()
                except Exception as exc:  # e.g. bf16 on a CPU without it: the row is skipped with the reason
                    reason = str(exc)
        if reason is not None:
            skipped.append(Skipped(f"{art.name} {label}", reason))
    return engines, skipped


def _throughput(engine, x: np.ndarray, requests: int) -> Callable[[], object]:
    def run():
        return [f.result() for f in [engine.submit(x) for _ in range(requests)]]

    return run


def model_comparisons(art: Artefacts, engines: dict, batch: int) -> list[Comparison]:
    """Latency (batch 1) and throughput (``batch``, as many requests as the most concurrent engine runs)."""
    base = engines[BASELINE]
    rng = np.random.default_rng(0)
    one = rng.standard_normal((1, *base.input_shape)).astype(np.float32)
    x = rng.standard_normal((batch, *base.input_shape)).astype(np.float32)
    requests = max(e.concurrency for e in engines.values())
    out = []
    for label, engine in engines.items():
        if label == BASELINE:
            continue
        out.append(Comparison(group=f"{art.name} CPU latency", model=art.name, batch=1, items=1,
                              baseline_label=BASELINE, baseline=lambda: base.infer(one),
                              candidate_label=label, candidate=lambda e=engine: e.infer(one)))
        out.append(Comparison(group=f"{art.name} CPU throughput, batch {batch}", model=art.name, batch=batch,
                              items=batch * requests, baseline_label=BASELINE,
                              baseline=_throughput(base, x, requests), candidate_label=label,
                              candidate=_throughput(engine, x, requests)))
    return out


def end_to_end_comparisons(art: Artefacts, engines: dict, folder: Path, copies: int = 2) -> list[Comparison]:
    """``predict_many`` over ``copies`` of a DICOM series: every engine against ONNX Runtime fp32, and against
    the naive per-slice PyTorch pipeline."""
    from medinfer.checkpoint import load_checkpoint

    base = engines[BASELINE]
    folders = [folder] * copies
    n = copies * sum(1 for _ in folder.iterdir())
    ckpt = load_checkpoint(art.checkpoint)
    out = []
    for label, engine in engines.items():
        run = functools.partial(engine.predict_many, folders, progress=False)
        if label != BASELINE:
            out.append(Comparison(group=f"end-to-end {art.name} CPU engines", model=art.name, items=n,
                                  baseline_label=f"{BASELINE} predict_many", baseline=lambda: base.predict_many(
                                      folders, progress=False), candidate_label=f"{label} predict_many",
                                  candidate=run))
        if label != "torch eager":
            out.append(Comparison(
                group=f"end-to-end {art.name} vs naive", model=art.name, items=n,
                baseline_label="pydicom + numpy + torch per slice",
                baseline=lambda: [naive_series_probabilities(f, ckpt.model, ckpt.metadata.preprocess)
                                  for f in folders],
                candidate_label=f"{label} predict_many", candidate=run))
    return out


def accuracy(engines: dict, series: list) -> dict[str, dict]:
    """Each engine's agreement with ONNX Runtime fp32 on ``series`` (slice and series labels, |Δp|)."""
    from medinfer.validation import compare

    reference = engines[BASELINE].predict_many(series, progress=False, errors="raise")
    return {label: compare(e.predict_many(series, progress=False, errors="raise"), reference)
            for label, e in engines.items() if label != BASELINE}
