"""ONNX export: every registered model, checked, parity-tested, carrying its metadata, buildable by TensorRT."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper
from tiny import TINY

from medinfer.checkpoint import save_checkpoint
from medinfer.errors import InputError
from medinfer.export import onnx as export_mod
from medinfer.export.onnx import ExportError, export_onnx
from medinfer.export.tensorrt_support import PLUGIN_OPS, operator_table, tensorrt_problems
from medinfer.models import create, get_spec, list_models
from medinfer.onnx_file import CHECK_KEY, read_export
from medinfer.preprocess import Preprocess


def _props(path) -> dict:
    return {p.key: p.value for p in onnx.load(path).metadata_props}


@pytest.fixture(scope="module")
def models(tiny_exports):
    return {name: tiny_exports(name)["model"] for name in list_models()}


@pytest.fixture(scope="module")
def exports(tiny_exports):
    """Every registered model, tiny, exported once for the session."""
    return {name: tiny_exports(name)["onnx"] for name in list_models()}


@pytest.mark.parametrize("name", list_models())
def test_every_model_exports_with_parity_and_metadata(exports, name):
    path = exports[name]
    onnx.checker.check_model(str(path), full_check=True)
    props = _props(path)
    check = json.loads(props[CHECK_KEY])
    assert check["max_abs_diff"] <= 1e-4
    _, proto, meta = read_export(path)
    spec = get_spec(name)
    assert meta.name == name and meta.class_names == spec.class_names and meta.preprocess == spec.preprocess
    assert json.loads(props["medinfer.class_names"]) == list(spec.class_names)
    assert len(meta.weights_sha256) == 64
    assert tensorrt_problems(proto) == []


@pytest.mark.parametrize("name", ["ddc_resnet101", "resdense_net"])
def test_dynamic_batch_matches_pytorch(models, exports, name, rng):
    model, path = models[name], exports[name]
    session = ort.InferenceSession(str(path))
    for batch in (1, 5):
        x = rng.standard_normal((batch, *read_export(path)[2].input_shape)).astype(np.float32)
        (got,) = session.run(None, {"input": x})
        with torch.no_grad():
            expected = torch.softmax(model(torch.from_numpy(x)), 1).numpy()
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
        np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)


def test_static_batch(tmp_path):
    path = export_onnx(create("densenet121", **TINY["densenet121"]), tmp_path / "s.onnx", dynamic_batch=False,
                       progress=False)
    dims = onnx.load(path).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [2, 1, 64, 64]


def test_checkpoint_export_with_overrides(tmp_path):
    model = create("resdense_net", num_classes=3, in_chans=3, **TINY["resdense_net"])
    pre = Preprocess(size=(96, 80), channels=3, window=(-600, 1500))
    config = save_checkpoint(model, tmp_path / "m", class_names=("a", "b", "c"), preprocess=pre)
    path = export_onnx(config, tmp_path / "m.onnx", opset=18, progress=False)
    _, proto, meta = read_export(path)
    assert meta.class_names == ("a", "b", "c") and meta.preprocess == pre and meta.input_shape == (3, 96, 80)
    assert {i.version for i in proto.opset_import if i.domain == ""} == {18}


def test_export_leaves_the_callers_model_alone(tmp_path):
    model = create("msfe", **TINY["msfe"]).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_onnx(model, tmp_path / "m.onnx", progress=False)
    assert model.training
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_parity_failure_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(export_mod, "_parity", lambda *a, **k: (0.5, "onnxruntime"))
    target = tmp_path / "bad.onnx"
    with pytest.raises(ExportError, match="onnxruntime disagrees with PyTorch by 0.5"):
        export_onnx(create("densenet121", **TINY["densenet121"]), target, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_only_registry_models_export():
    with pytest.raises(InputError, match="not made by medinfer.models.create"):
        export_onnx(torch.nn.Conv2d(1, 2, 3), "x.onnx")


# --- TensorRT operator support -------------------------------------------------------------------------------
def test_operator_table_names_its_source():
    table = operator_table()
    assert table.tensorrt_version.startswith("10.") and "onnx-tensorrt" in table.source
    assert {"Conv", "Resize", "ReduceMax", "Softmax", "ConvTranspose"} <= set(table.operators)
    assert "Unique" not in table.operators and table.opset_min <= 20 <= table.opset_max


def _model(nodes, inits=(), opset=20):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                   helper.make_opsetid("medinfer", 1)])


@pytest.mark.parametrize(("node", "problem"), [
    (helper.make_node("Unique", ["x"], ["y"]), "Unique is not supported"),
    (helper.make_node("Resize", ["x", "", "s"], ["y"], mode="cubic"), "Resize mode 'cubic'"),
    (helper.make_node("Resize", ["x", "", "s"], ["y"], antialias=1, mode="linear"), "antialiasing"),
    (helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2]), "Indices"),
    (helper.make_node("ReduceMean", ["x", "axes_from_graph"], ["y"]), "axes must be an initializer"),
    (helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example"), "domain 'com.example'"),
    (helper.make_node("Dilate", ["x"], ["y"], domain="medinfer"), "unknown medinfer plugin op 'Dilate'"),
])
def test_tensorrt_problems_are_found(node, problem):
    (found,) = tensorrt_problems(_model([node]))
    assert problem in found


def test_plugin_ops_and_constant_axes_are_accepted():
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3])
    nodes = [helper.make_node("ReduceMean", ["x", "axes"], ["r"]),
             *[helper.make_node(op, ["x"], [f"p{op}"], domain="medinfer") for op in sorted(PLUGIN_OPS)],
             helper.make_node("Resize", ["x", "", "s"], ["y"], mode="nearest", nearest_mode="floor")]
    assert tensorrt_problems(_model(nodes, [axes])) == []


def test_opset_outside_tensorrts_range():
    (found,) = tensorrt_problems(_model([helper.make_node("Relu", ["x"], ["y"])], opset=25))
    assert "opset 25 outside" in found


def test_plugin_export_for_tensorrt(tmp_path):
    from medinfer.engine import Engine
    from medinfer.errors import EngineError

    path = export_onnx(create("ddc_resnet101", **TINY["ddc_resnet101"]), tmp_path / "p.onnx", plugins=True,
                       progress=False)
    _, proto, _ = read_export(path)
    ops = {n.op_type for n in proto.graph.node if n.domain == "medinfer"}
    assert ops == {"DilatedBranches", "OctaveConv"}
    assert tensorrt_problems(proto) == []
    check = json.loads(_props(path)[CHECK_KEY])
    assert check["max_abs_diff"] <= 1e-4 and check["checked_with"].startswith("onnx.reference")
    with pytest.raises(EngineError, match="TensorRT plugin nodes.*ONNX Runtime cannot run"):
        Engine(path)


def test_plugins_on_a_model_without_fused_ops(tmp_path):
    with pytest.raises(ExportError, match="no medinfer plugin node"):
        export_onnx(create("densenet121", **TINY["densenet121"]), tmp_path / "d.onnx", plugins=True, progress=False)
    assert not (tmp_path / "d.onnx").exists()
