"""``medinfer quantize``: a static INT8 export, calibrated on real series, that ONNX Runtime, OpenVINO and
TensorRT (explicit quantization) all run.

The graph is the fp32 export with QuantizeLinear/DequantizeLinear pairs (QDQ) on the inputs and weights of
its convolutions and classifier: weights per output channel, activations per tensor, both signed int8 and
symmetric (zero point 0) — the only form TensorRT's explicit quantization accepts, and one OpenVINO's low
precision transformations turn into int8 kernels. Biases stay fp32 (TensorRT reads no int32 DequantizeLinear).
Before quantizing, ONNX Runtime's pre-processing folds BatchNorm into the convolutions it follows, so that no
QDQ pair lands between them.

Why only convolutions and the classifier: quantizing every op ONNX Runtime can (its default) puts a
QuantizeLinear after each Add, Concat, pool and resize as well, and every fp32 op after them — the
BatchNorm of Res-Dense Net's pre-activation dense layers, DDC's resizes — then starts with a DequantizeLinear.
Measured on ONNX Runtime 1.32 (Res-Dense Net, batch 8, two EPYC cores): that graph kept 792
DequantizeLinear and 418 QuantizeLinear nodes unfused (35 % of the time), 190 layout Transposes around
its QLinearConvs, 39 convolutions in fp32 and 62 BatchNorms no longer fused — slower than fp32 (0.7×).

Calibration slices come from the series given, loaded and preprocessed by the C++ series batcher exactly as
at inference, spread evenly over each series. The result is checked against the fp32 export on every CPU
backend here (:mod:`medinfer.validation`) and the checks are stored in the file: int8 is never silent.
"""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medinfer import validation
from medinfer.errors import InputError
from medinfer.onnx_file import (
    CHECK_KEY,
    DIGEST_KEY,
    GRAPH_SHA_KEY,
    INPUT_NAME,
    QUANTIZATION_KEY,
    SIGNATURE_KEY,
    VALIDATION_KEY,
    plugin_ops,
    read_export,
    stored_precision,
    write_export,
)

METHODS = ("minmax", "percentile", "entropy")
QUANTIZED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
MAX_SLICES = 256
CALIBRATION_BATCH = 8
_NOT_CARRIED = (DIGEST_KEY, SIGNATURE_KEY, GRAPH_SHA_KEY, VALIDATION_KEY, CHECK_KEY)  # of the fp32 graph


@dataclass
class QuantizeReport:
    path: Path
    source: Path
    record: dict  # what is stored under medinfer.quantization
    validations: list[validation.Validation] = field(default_factory=list)
    skipped_backends: dict[str, str] = field(default_factory=dict)  # backend -> why it was not checked

    @property
    def passed(self) -> bool:
        return bool(self.validations) and all(v.passed for v in self.validations)


def calibration_slices(sources: Sequence, preprocess, max_slices: int = MAX_SLICES,
                       progress: bool | None = None) -> tuple[np.ndarray, list[str]]:
    """Up to ``max_slices`` preprocessed slices ``(N, C, H, W)`` from every series under ``sources`` (series,
    studies, folders of them), spread evenly over each series, and the names of the series they came from."""
    from medinfer.io import load_study
    from medinfer.progress import progress_bar
    from medinfer.runtime import SeriesBatcher

    if not sources:
        raise InputError("no calibration series given")
    batcher = SeriesBatcher(preprocess, CALIBRATION_BATCH)
    chosen, names = [], []
    for src in progress_bar(sources, desc="calibration", unit="source", progress=progress):
        found = load_study(src)
        for series in found:
            with batcher.run([series]) as run:
                slices = np.concatenate([b.data[: b.count] for b in run])
            share = max(1, max_slices // (len(sources) * len(found)))
            keep = np.unique(np.linspace(0, len(slices) - 1, min(share, len(slices))).round().astype(int))
            chosen.append(slices[keep])
            names.append(series.uid or str(src))
    return np.concatenate(chosen)[:max_slices], names


class _Reader:
    """ONNX Runtime's CalibrationDataReader over an array of slices, a batch at a time."""

    def __init__(self, slices: np.ndarray):
        self._batches = iter(np.array_split(slices, max(1, len(slices) // CALIBRATION_BATCH)))

    def get_next(self):
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: np.ascontiguousarray(batch)}


def quantize(source: str | Path, output: str | Path, calibration: Sequence, *, validate_on: Sequence | None = None,
             method: str = "minmax", max_slices: int = MAX_SLICES, progress: bool | None = None) -> QuantizeReport:
    """Quantize the fp32 export ``source`` into ``output`` (see the module docstring), calibrated on the series
    ``calibration`` and checked against ``source`` on ``validate_on`` (default: the calibration series)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source, output = Path(source), Path(output)
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if output.resolve() == source.resolve():
        raise InputError(f"{output}: the quantized export must not replace its fp32 source")
    data, proto, meta = read_export(source)
    props = {p.key: p.value for p in proto.metadata_props}
    if stored_precision(props) != "fp32":
        raise InputError(f"{source}: already quantized; quantize the fp32 export it was made from")
    if plugin_ops(proto):
        raise InputError(f"{source}: the graph holds TensorRT plugin nodes; quantize an export made without --plugins")
    slices, names = calibration_slices(calibration, meta.preprocess, max_slices, progress)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="medinfer-quantize-") as tmp:
        fp32, pre, int8 = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        fp32.write_bytes(data)
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre), str(int8), _Reader(slices), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, op_types_to_quantize=list(QUANTIZED_OPS),
            calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                              "entropy": CalibrationMethod.Entropy}[method],
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False})
        quantized = onnx.load(str(int8))
    nodes = [n.op_type for n in quantized.graph.node]
    record = {
        "format": "QDQ", "weights": "int8, symmetric, per output channel", "activations": "int8, symmetric, per tensor",
        "ops": list(QUANTIZED_OPS), "method": method, "calibration": {"series": names, "slices": int(len(slices))},
        "source": {"file": source.name, "graph_sha256": props.get(GRAPH_SHA_KEY)},
        "quantized_nodes": nodes.count("QuantizeLinear"), "seconds": round(time.perf_counter() - started, 1),
    }
    carried = {k: v for k, v in props.items() if k.startswith("medinfer.") and k not in _NOT_CARRIED}
    output.parent.mkdir(parents=True, exist_ok=True)
    write_export(output, quantized, {**carried, QUANTIZATION_KEY: json.dumps(record, sort_keys=True)})
    report = QuantizeReport(output, source, record)
    check(report, validate_on if validate_on is not None else calibration,
          data="the calibration series" if validate_on is None else f"{len(validate_on)} series")
    return report


def openvino_crash(path: Path) -> str | None:
    """Compile ``path`` with OpenVINO in a child process first: OpenVINO has crashed (SIGSEGV) compiling QDQ
    graphs made by ONNX Runtime's default quantizer on one AMX Xeon, and a crash must not take this process
    with it. ``None`` when it compiled, else what happened."""
    import subprocess
    import sys

    code = ("import io, sys, openvino as ov; c = ov.Core(); "
            "c.compile_model(c.read_model(io.BytesIO(open(sys.argv[1], 'rb').read())), 'CPU')")
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    if result.returncode == 0:
        return None
    how = f"was killed by signal {-result.returncode}" if result.returncode < 0 else "failed"
    detail = result.stderr.strip().splitlines()[-1:] or [""]
    return f"OpenVINO {how} compiling this graph on this CPU {detail[0]}".strip()


def check(report: QuantizeReport, series_sources: Sequence, *, data: str) -> None:
    """Check the int8 export against its fp32 source on every CPU backend that runs here; store each result."""
    from medinfer import backends
    from medinfer.engine import Engine
    from medinfer.io import load_study

    series = [s for src in series_sources for s in load_study(src)]
    reference = Engine(report.source, backend="onnxruntime", device="cpu", precision="fp32")
    for name in ("onnxruntime", "openvino"):
        reason = backends.BACKENDS[name].unavailable_reason("cpu")
        if reason is None and name == "openvino":
            reason = openvino_crash(report.path)
        if reason is not None:
            report.skipped_backends[name] = reason
            continue
        with warnings.catch_warnings():  # unchecked until this check: that is what it is for
            warnings.simplefilter("ignore", validation.ReducedPrecisionWarning)
            engine = Engine(report.path, backend=name, device="cpu", precision="int8")
        result = validation.validate(engine, reference, series, data=data)
        validation.store(report.path, result)
        report.validations.append(result)
