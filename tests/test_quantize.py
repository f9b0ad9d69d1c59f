"""``medinfer quantize``: a QDQ graph TensorRT's explicit quantization accepts, calibrated on batcher-preprocessed
real slices, run by ONNX Runtime and OpenVINO, and checked against fp32 with the checks stored in the file."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from medinfer import backends, validation
from medinfer.cli import main
from medinfer.engine import Engine
from medinfer.errors import InputError
from medinfer.onnx_file import QUANTIZATION_KEY, read_export
from medinfer.quantize import calibration_slices, quantize

MODELS = ("ddc_resnet101", "resdense_net")
HAVE_OPENVINO = backends.BACKENDS["openvino"].is_available("cpu")


@pytest.fixture(scope="module")
def quantized(tiny_exports, chest_ct, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8")
    return {m: quantize(tiny_exports(m)["onnx"], out / f"{m}-int8.onnx", [chest_ct], max_slices=48, progress=False)
            for m in MODELS}


@pytest.mark.parametrize("model", MODELS)
def test_the_graph_is_symmetric_int8_qdq_as_tensorrt_requires(quantized, model):
    proto = read_export(quantized[model].path)[1]
    init = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    nodes = proto.graph.node
    q = [n for n in nodes if n.op_type == "QuantizeLinear"]
    dq = [n for n in nodes if n.op_type == "DequantizeLinear"]
    assert q and dq
    for n in q + dq:  # signed int8, zero point 0: TensorRT's explicit quantization
        zero = init[n.input[2]]
        assert zero.dtype == np.int8 and not zero.any()
    convs = [n for n in nodes if n.op_type == "Conv"]
    producers = {o: n for n in nodes for o in n.output}
    for conv in convs:  # input and weight dequantized; the bias stays fp32
        assert producers[conv.input[0]].op_type == "DequantizeLinear"
        weight_dq = producers[conv.input[1]]
        assert weight_dq.op_type == "DequantizeLinear"
        scale = init[weight_dq.input[1]]
        assert scale.ndim == 1 and scale.size == init[weight_dq.input[0]].shape[0]  # per output channel
        assert len(conv.input) < 3 or conv.input[2] in init and init[conv.input[2]].dtype == np.float32
    assert not [n for n in nodes if n.op_type == "BatchNormalization" and producers.get(n.input[0]) in convs]


@pytest.mark.parametrize("model", MODELS)
def test_both_cpu_backends_run_it_and_its_checks_are_stored(quantized, model, chest_ct, tiny_exports):
    report = quantized[model]
    expected = {"onnxruntime", *(["openvino"] if HAVE_OPENVINO else [])}
    assert {v.backend for v in report.validations} == expected and report.passed
    stored = validation.recorded(report.path)
    assert {k for k in stored} == {f"{b}/int8" for b in expected}
    fp32 = Engine(tiny_exports(model)["onnx"], backend="onnxruntime").predict(chest_ct)
    for backend in expected:
        engine = Engine(report.path, backend=backend)
        assert engine.precision == "int8" and "passed" in engine.precision_reason
        got = engine.predict(chest_ct)
        assert got.label == fp32.label
        assert np.abs(got.slice_probabilities - fp32.slice_probabilities).max() < 0.05
    record = json.loads({p.key: p.value for p in read_export(report.path)[1].metadata_props}[QUANTIZATION_KEY])
    assert record["calibration"]["slices"] == 48 and record["activations"].startswith("int8, symmetric")
    assert read_export(report.path)[2].weights_sha256 == read_export(tiny_exports(model)["onnx"])[2].weights_sha256


@pytest.mark.skipif(not HAVE_OPENVINO, reason="OpenVINO is not installed")
def test_openvino_runs_the_convolutions_in_int8(quantized):
    counts = Engine(quantized["resdense_net"].path, backend="openvino").runtime_precisions()
    int8 = counts.get("i8", 0) + counts.get("u8", 0)
    assert int8 >= 0.9 * sum(counts.values()), counts


@pytest.mark.skipif(not HAVE_OPENVINO, reason="OpenVINO is not installed")
def test_the_registry_runs_a_checked_int8_export_on_openvino(quantized):
    from medinfer import cpu

    engine = Engine(quantized["ddc_resnet101"].path)
    assert engine.backend == ("openvino" if cpu.native_int8() else "onnxruntime")


def test_calibration_slices_are_the_batchers_spread_over_the_series(tiny_exports, chest_ct):
    from medinfer.io import load_series
    from medinfer.runtime import SeriesBatcher

    meta = read_export(tiny_exports("ddc_resnet101")["onnx"])[2]
    slices, names = calibration_slices([chest_ct], meta.preprocess, max_slices=9, progress=False)
    with SeriesBatcher(meta.preprocess, 64).run([load_series(chest_ct)]) as run:
        every = np.concatenate([b.data[: b.count] for b in run])
    picked = np.linspace(0, len(every) - 1, 9).round().astype(int)
    np.testing.assert_array_equal(slices, every[picked])
    assert len(names) == 1


def test_quantize_refuses_what_it_cannot_quantize(quantized, tiny_exports, tmp_path):
    with pytest.raises(InputError, match="already quantized"):
        quantize(quantized["ddc_resnet101"].path, tmp_path / "again.onnx", [tmp_path])
    source = tiny_exports("ddc_resnet101")["onnx"]
    with pytest.raises(InputError, match="must not replace its fp32 source"):
        quantize(source, source, [tmp_path])
    with pytest.raises(InputError, match="method must be one of"):
        quantize(source, tmp_path / "x.onnx", [tmp_path], method="magic")


def test_the_cli_reports_and_exits_by_the_checks(tiny_exports, chest_ct, tmp_path, capsys):
    out = tmp_path / "q.onnx"
    code = main(["quantize", str(tiny_exports("resdense_net")["onnx"]), "--calibration", str(chest_ct),
                 "-o", str(out), "--max-slices", "16", "--method", "percentile", "--json", str(tmp_path / "q.json")])
    text = capsys.readouterr().out
    assert code == 0 and "calibrated on 16 slices of 1 series (percentile)" in text and "passed" in text
    doc = json.loads((tmp_path / "q.json").read_text())
    assert doc["passed"] and onnx.load(str(out)).graph.node


@pytest.mark.skipif(not HAVE_OPENVINO, reason="OpenVINO is not installed")
def test_openvino_compiles_in_a_child_first(quantized, tmp_path):
    from medinfer.quantize import openvino_crash

    assert openvino_crash(quantized["ddc_resnet101"].path) is None
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07 not a graph")
    assert openvino_crash(garbage).startswith("OpenVINO failed compiling this graph on this CPU")
