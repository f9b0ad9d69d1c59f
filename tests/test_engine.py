"""Engines: backend choice, file checks, infer / predict / predict_many, threads, and the TensorRT record."""

from __future__ import annotations

import dataclasses
import json
import threading

import numpy as np
import onnx
import pytest
import torch
from tiny import tiny_model

from medinfer import backends
from medinfer.checkpoint import save_checkpoint
from medinfer.engine import Engine, SeriesPrediction
from medinfer.engine.base import cpu_batch, resolve
from medinfer.engine.onnxruntime_backend import OnnxRuntimeEngine
from medinfer.engine.tensorrt_backend import PlanRecord, TensorRTEngine, sidecar_path
from medinfer.engine.tensorrt_build import parse_batch_range
from medinfer.engine.torch_backend import TorchEngine
from medinfer.errors import EngineError, InputError
from medinfer.export.onnx import export_onnx
from medinfer.onnx_file import read_export


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory):
    """A tiny DDC-ResNet101 as a checkpoint and as its ONNX export."""
    out = tmp_path_factory.mktemp("engine")
    model = tiny_model("ddc_resnet101")
    config = save_checkpoint(model, out / "ddc")
    onnx_path = export_onnx(config, out / "ddc.onnx", progress=False)
    return {"model": model, "checkpoint": config, "onnx": onnx_path, "dir": out}


def _hu_series(rng, n, size=(70, 58)):
    return rng.uniform(-1000, 1000, (n, *size)).astype(np.float32)


def test_backend_follows_the_file(artefacts):
    assert isinstance(Engine(artefacts["onnx"]), OnnxRuntimeEngine)
    assert isinstance(Engine(artefacts["checkpoint"]), TorchEngine)
    assert isinstance(Engine(artefacts["checkpoint"].with_suffix(".safetensors")), TorchEngine)


def test_infer_agrees_across_backends_and_with_pytorch(artefacts, rng):
    x = rng.standard_normal((7, 1, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = torch.softmax(artefacts["model"](torch.from_numpy(x)), 1).numpy()
    for path in (artefacts["onnx"], artefacts["checkpoint"]):
        got = Engine(path).infer(x)
        assert got.shape == (7, 4) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_infer_names_the_expected_shape(artefacts):
    engine = Engine(artefacts["onnx"])
    with pytest.raises(InputError, match=r"ddc.onnx: expected a batch of shape \(B, 1, 64, 64\), "
                                         r"got \(2, 1, 32, 32\)"):
        engine.infer(np.zeros((2, 1, 32, 32), np.float32))
    assert engine.infer(np.zeros((0, 1, 64, 64), np.float32)).shape == (0, 4)


@pytest.mark.parametrize(("shape", "batch"), [((1, 64, 64), 64), ((3, 256, 256), 4), ((1, 97, 131), 20),
                                              ((1, 1024, 1024), 1), ((1, 8, 8), 64)])
def test_cpu_batch_holds_a_fixed_number_of_pixels(shape, batch):
    assert cpu_batch(shape) == batch


def test_predict_on_an_hu_array(artefacts, rng):
    engine = Engine(artefacts["onnx"])
    hu = _hu_series(rng, 9)
    pred = engine.predict(hu)
    assert isinstance(pred, SeriesPrediction)
    assert pred.slice_probabilities.shape == (9, 4)
    assert set(pred.probabilities) == set(engine.class_names)
    assert pred.label == max(pred.probabilities, key=pred.probabilities.get)
    np.testing.assert_allclose(list(pred.probabilities.values()), pred.slice_probabilities.mean(0), atol=1e-6)
    expected = engine.infer(engine.preprocess.apply(hu))
    np.testing.assert_allclose(pred.slice_probabilities, expected, atol=1e-5)
    assert set(pred.timings) == {"load", "preprocess", "infer", "total"} and pred.skipped == []
    json.dumps(pred.to_dict())


@pytest.mark.parametrize("aggregate", ["mean", "max", "topk"])
def test_predict_many_batches_across_series_without_mixing_them(artefacts, rng, aggregate):
    engine = Engine(artefacts["onnx"])
    assert engine.preferred_batch == 64  # a 64×64 model on the CPU
    series = [_hu_series(rng, n) for n in (5, 70, 1, 63)]  # crosses two batch boundaries
    k = 3 if aggregate == "topk" else None
    many = engine.predict_many(series, aggregate=aggregate, k=k)
    for hu, pred in zip(series, many, strict=True):
        alone = engine.predict(hu, aggregate=aggregate, k=k)
        np.testing.assert_allclose(pred.slice_probabilities, alone.slice_probabilities, atol=1e-6)
        assert pred.probabilities == pytest.approx(alone.probabilities, abs=1e-6)
    top = np.sort(many[1].slice_probabilities, axis=0)[-3:].mean(0) if aggregate == "topk" else None
    if top is not None:
        np.testing.assert_allclose(list(many[1].probabilities.values()), top, atol=1e-6)


def test_engines_are_safe_to_share_between_threads(artefacts, rng):
    engine = Engine(artefacts["onnx"])
    inputs = [_hu_series(rng, n) for n in (12, 7, 20, 3)]
    expected = [engine.predict(x).slice_probabilities for x in inputs]
    results: dict[int, np.ndarray] = {}

    def work(i):
        for _ in range(3):
            results[i] = engine.predict(inputs[i]).slice_probabilities

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, e in enumerate(expected):
        np.testing.assert_array_equal(results[i], e)


# --- damaged, foreign and mismatched files -------------------------------------------------------------------
def test_truncated_onnx(artefacts, tmp_path):
    bad = tmp_path / "cut.onnx"
    bad.write_bytes(artefacts["onnx"].read_bytes()[:5000])
    with pytest.raises(EngineError, match="cut.onnx: not a valid ONNX file"):
        Engine(bad)


def test_foreign_file(tmp_path):
    bad = tmp_path / "photo.onnx"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 10)
    with pytest.raises(EngineError, match="photo.onnx: not a valid ONNX file"):
        Engine(bad)


def test_onnx_without_medinfer_metadata(tmp_path):
    x = onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 1])
    y = onnx.helper.make_tensor_value_info("probabilities", onnx.TensorProto.FLOAT, [1, 1])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["input"], ["probabilities"])], "g", [x], [y])
    path = tmp_path / "plain.onnx"
    onnx.save(onnx.helper.make_model(graph), path)
    with pytest.raises(EngineError, match="plain.onnx: not a medinfer export"):
        Engine(path)


def test_edited_graph_is_refused_unless_told(artefacts, tmp_path):
    proto = onnx.load(artefacts["onnx"])
    init = proto.graph.initializer[0]
    arr = onnx.numpy_helper.to_array(init).copy()
    arr.flat[0] += 1
    init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
    path = tmp_path / "edited.onnx"
    onnx.save(proto, path)
    with pytest.raises(EngineError, match="edited.onnx: the graph's SHA-256 does not match"):
        Engine(path)
    assert Engine(path, verify=False).metadata.name == "ddc_resnet101"


def test_unknown_suffix_and_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such engine file"):
        Engine(tmp_path / "nope.onnx")
    other = tmp_path / "model.pt"
    other.write_bytes(b"\x80\x04pickle")
    with pytest.raises(EngineError, match="model.pt: not an engine medinfer knows"):
        Engine(other)


def test_forced_backend_must_fit_the_file(artefacts, monkeypatch):
    with pytest.raises(EngineError, match=r"the torch backend cannot run this file \(an ONNX export\); it runs on "
                                          "onnxruntime or openvino"):
        Engine(artefacts["onnx"], backend="torch")
    monkeypatch.setenv("MEDINFER_ENGINE_BACKEND", "tensorrt")
    with pytest.raises(EngineError, match="tensorrt backend cannot run this file"):
        Engine(artefacts["onnx"])


def test_cpu_torch_engine_refuses_half_precision(artefacts):
    with pytest.raises(InputError, match="fp16 on torch cannot run here: it runs on a GPU only"):
        Engine(artefacts["checkpoint"], precision="fp16")


# --- TensorRT: what can be checked without TensorRT ------------------------------------------------------------
def test_plan_needs_tensorrt_here(tmp_path):
    plan = tmp_path / "ddc.plan"
    plan.write_bytes(b"not really a plan")
    with pytest.raises(backends.BackendUnavailable, match="tensorrt"):
        Engine(plan)


def _record(artefacts, plan) -> PlanRecord:
    _, _, meta = read_export(artefacts["onnx"])
    import hashlib

    return PlanRecord(tensorrt_version="10.13.0", gpu={"name": "NVIDIA H100 80GB HBM3", "compute_capability": [9, 0]},
                      precision="fp16", profile={"min": 1, "opt": 32, "max": 128},
                      onnx={"file": "ddc.onnx", "sha256": "0" * 64, "graph_sha256": "0" * 64},
                      plan_sha256=hashlib.sha256(plan.read_bytes()).hexdigest(), metadata=meta,
                      build={"command": "medinfer build ddc.onnx -o ddc.plan --precision fp16 --batch 1:32:128"})


def test_plan_record_round_trip_and_machine_checks(artefacts, tmp_path):
    plan = tmp_path / "ddc.plan"
    plan.write_bytes(b"plan bytes")
    record = _record(artefacts, plan)
    record.write(plan)
    assert sidecar_path(plan).name == "ddc.plan.json"
    assert PlanRecord.read(plan) == record
    h100 = {"name": "NVIDIA H100 80GB HBM3", "compute_capability": [9, 0]}
    record.check_machine(plan, "10.13.0", h100)
    with pytest.raises(EngineError, match=r"built with TensorRT 10.13.0, this machine has TensorRT 10.15.1.*"
                                          r"`medinfer build ddc.onnx -o ddc.plan --precision fp16"):
        record.check_machine(plan, "10.15.1", h100)
    with pytest.raises(EngineError, match=r"built for NVIDIA H100 80GB HBM3 \(sm_90\), this machine has "
                                          r"NVIDIA A100-SXM4-40GB \(sm_80\): rebuild"):
        record.check_machine(plan, "10.13.0", {"name": "NVIDIA A100-SXM4-40GB", "compute_capability": [8, 0]})


def test_plan_files_are_checked_before_tensorrt_is_needed(artefacts, tmp_path):
    plan = tmp_path / "ddc.plan"
    plan.write_bytes(b"plan bytes")
    with pytest.raises(EngineError, match="ddc.plan.json is missing.*medinfer build"):
        TensorRTEngine(plan)
    _record(artefacts, plan).write(plan)
    plan.write_bytes(b"plan bytes, damaged")
    with pytest.raises(EngineError, match="ddc.plan: SHA-256 differs from ddc.plan.json.*rebuild it"):
        TensorRTEngine(plan)
    sidecar_path(plan).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(EngineError, match="not a medinfer plan record"):
        TensorRTEngine(plan)


@pytest.mark.parametrize(("text", "expected"), [("1:32:128", (1, 32, 128)), ("8", (8, 8, 8))])
def test_batch_range(text, expected):
    assert parse_batch_range(text) == expected


@pytest.mark.parametrize("text", ["0:1:2", "4:2:8", "1:2", "a:b:c"])
def test_bad_batch_range(text):
    with pytest.raises(InputError, match="--batch"):
        parse_batch_range(text)


@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_plan_matches_onnxruntime(artefacts, tmp_path, rng, precision):
    from medinfer.engine import build_engine

    plan = build_engine(artefacts["onnx"], tmp_path / f"ddc-{precision}.plan", precision=precision, batch=(1, 8, 16),
                        progress=False)
    trt_engine, ort_engine = Engine(plan), Engine(artefacts["onnx"])
    x = rng.standard_normal((21, 1, 64, 64)).astype(np.float32)  # more than the profile's max: chunked
    tol = 1e-4 if precision == "fp32" else 2e-2
    np.testing.assert_allclose(trt_engine.infer(x), ort_engine.infer(x), atol=tol, rtol=0)
    assert PlanRecord.read(plan).precision == precision


# --- the device an engine runs on -------------------------------------------------------------------------------
def _gpu_probe(real: backends.Backend):
    return lambda device: None if device == "cuda" else real.probe(device)


@pytest.fixture
def gpu_everywhere(monkeypatch):
    """Every engine backend's probe reports a usable GPU, as on a GPU server."""
    for name in ("onnxruntime", "torch", "tensorrt"):
        real = backends.BACKENDS[name]
        monkeypatch.setitem(backends.BACKENDS, name, dataclasses.replace(real, probe=_gpu_probe(real)))


def test_engines_take_the_gpu_their_backend_can_use(artefacts, gpu_everywhere):
    # The resolved device reaches the engine (it once fell back to the CPU in the backends' __init__).
    plan = artefacts["dir"] / "resolve.plan"
    plan.touch()
    assert [resolve(p) for p in (artefacts["onnx"], artefacts["checkpoint"], plan)] == \
        [("onnxruntime", "cuda"), ("torch", "cuda"), ("tensorrt", "cuda")]
    assert [resolve(p, device="cpu") for p in (artefacts["onnx"], artefacts["checkpoint"])] == \
        [("onnxruntime", "cpu"), ("torch", "cpu")]
    engine = Engine(artefacts["onnx"])
    assert engine.device == "cuda" and engine.preferred_batch == 32  # the GPU batch, not the CPU's
    assert OnnxRuntimeEngine(artefacts["onnx"]).device == "cuda"
    assert Engine(artefacts["onnx"], device="cpu").device == "cpu"


def test_engines_stay_on_the_cpu_without_a_gpu(artefacts):
    if backends.BACKENDS["onnxruntime"].is_available("cuda"):
        pytest.skip("ONNX Runtime can use a GPU here")
    assert Engine(artefacts["onnx"]).device == "cpu"
    with pytest.raises(backends.BackendUnavailable, match=r"ddc.onnx: .*cannot run on cuda"):
        Engine(artefacts["onnx"], device="cuda")
