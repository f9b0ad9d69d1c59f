"""``medinfer export-triton``: Triton model repositories, each config parsed back with Triton's own schema."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("tritonclient.grpc")
from google.protobuf import text_format  # noqa: E402
from tritonclient.grpc import model_config_pb2 as pb  # noqa: E402

from medinfer.cli import main  # noqa: E402
from medinfer.engine.tensorrt_backend import PlanRecord  # noqa: E402
from medinfer.errors import EngineError, InputError  # noqa: E402
from medinfer.metadata import sha256_bytes  # noqa: E402
from medinfer.onnx_file import read_export  # noqa: E402
from medinfer.serve.repository import write_repository  # noqa: E402

MODELS = ["ddc_resnet101", "resdense_net"]


def _config(model_dir) -> pb.ModelConfig:
    return text_format.Parse((model_dir / "config.pbtxt").read_text(), pb.ModelConfig())  # raises on foreign fields


def _plan(onnx, path, cc, *, profile=(1, 16, 32), tensorrt="10.13.0", gpu_name="NVIDIA H200"):
    """A fake plan with a real record (TensorRT cannot build plans here)."""
    path.write_bytes(f"plan for sm_{cc[0]}{cc[1]}".encode())
    meta = read_export(onnx)[2]
    PlanRecord(tensorrt_version=tensorrt, gpu={"name": gpu_name, "compute_capability": list(cc)}, precision="fp16",
               profile=dict(zip(("min", "opt", "max"), profile, strict=True)),
               onnx={"file": onnx.name, "sha256": "0" * 64, "graph_sha256": "0" * 64},
               plan_sha256=sha256_bytes(path.read_bytes()), metadata=meta,
               build={"command": f"medinfer build {onnx.name} -o {path.name}"}).write(path)
    return path


@pytest.mark.parametrize("name", MODELS)
def test_onnx_export_becomes_onnxruntime_and_openvino_models(tiny_exports, tmp_path, name):
    onnx = tiny_exports(name)["onnx"]
    meta = read_export(onnx)[2]
    models = write_repository([onnx], tmp_path / "repo", openvino=True, kind="KIND_CPU", instances=2,
                              max_queue_delay_us=700)
    assert [(m.name, m.backend) for m in models] == [(name, "onnxruntime"), (f"{name}_openvino", "openvino")]
    for model, kind in [(name, pb.ModelInstanceGroup.KIND_CPU), (f"{name}_openvino", pb.ModelInstanceGroup.KIND_CPU)]:
        d = tmp_path / "repo" / model
        assert (d / "1" / "model.onnx").read_bytes() == onnx.read_bytes()
        cfg = _config(d)
        assert (cfg.name, cfg.max_batch_size) == (model, 64)
        assert [(i.name, i.data_type, list(i.dims)) for i in cfg.input] == [("input", pb.TYPE_FP32,
                                                                             list(meta.input_shape))]
        assert [(o.name, o.data_type, list(o.dims)) for o in cfg.output] == [("probabilities", pb.TYPE_FP32,
                                                                              [len(meta.class_names)])]
        assert list(cfg.dynamic_batching.preferred_batch_size) == [64]
        assert cfg.dynamic_batching.max_queue_delay_microseconds == 700
        assert [(g.count, g.kind) for g in cfg.instance_group] == [(2, kind)]
        assert [(w.batch_size, w.inputs["input"].zero_data) for w in cfg.model_warmup] == [(1, True), (64, True)]
        assert json.loads(cfg.parameters["medinfer.metadata"].string_value) == meta.to_dict()
        assert json.loads((d / "medinfer.json").read_text())["metadata"] == meta.to_dict()
    assert _config(tmp_path / "repo" / name).backend == "onnxruntime"
    assert _config(tmp_path / "repo" / f"{name}_openvino").backend == "openvino"


@pytest.mark.parametrize("name", MODELS)
def test_plans_for_two_gpu_generations_merge_into_one_model(tiny_exports, tmp_path, name):
    onnx = tiny_exports(name)["onnx"]
    h200 = _plan(onnx, tmp_path / "h200.plan", (9, 0))
    a10 = _plan(onnx, tmp_path / "a10.plan", (8, 6), profile=(1, 8, 16), gpu_name="NVIDIA A10")
    (model,) = write_repository([h200, a10], tmp_path / "repo")
    d = tmp_path / "repo" / f"{name}_tensorrt"
    assert (d / "1" / "model_sm90.plan").read_bytes() == h200.read_bytes()
    assert (d / "1" / "model_sm86.plan").read_bytes() == a10.read_bytes()
    cfg = _config(d)
    assert (cfg.backend, cfg.max_batch_size) == ("tensorrt", 16)  # the smaller profile max
    assert dict(cfg.cc_model_filenames) == {"9.0": "model_sm90.plan", "8.6": "model_sm86.plan"}
    assert list(cfg.dynamic_batching.preferred_batch_size) == [8, 16]
    assert [g.kind for g in cfg.instance_group] == [pb.ModelInstanceGroup.KIND_GPU]
    with pytest.raises(InputError, match="take batches of 16 at most"):
        write_repository([h200, a10], tmp_path / "repo", max_batch=32, force=True)


def test_cli_writes_the_repository(tiny_exports, tmp_path, capsys):
    onnx = tiny_exports("ddc_resnet101")["onnx"]
    plan = _plan(onnx, tmp_path / "ddc.plan", (9, 0))
    repo = tmp_path / "repo"
    assert main(["export-triton", str(onnx), str(plan), "--repository", str(repo), "--max-batch", "8"]) == 0
    out = capsys.readouterr().out
    assert "ddc_resnet101: onnxruntime" in out and "ddc_resnet101_tensorrt: tensorrt for sm 9.0" in out
    assert _config(repo / "ddc_resnet101").max_batch_size == 8
    assert main(["export-triton", str(onnx), "--repository", str(repo)]) == 1
    assert "already holds a model; pass --force" in capsys.readouterr().err
    assert main(["export-triton", str(onnx), "--repository", str(repo), "--force"]) == 0
    assert _config(repo / "ddc_resnet101").max_batch_size == 64


def test_damaged_export_is_refused_by_name(tiny_exports, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(tiny_exports("ddc_resnet101")["onnx"].read_bytes()[:-100])
    with pytest.raises(EngineError, match="bad.onnx"):
        write_repository([bad], tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_damaged_plan_is_refused_by_name(tiny_exports, tmp_path):
    plan = _plan(tiny_exports("ddc_resnet101")["onnx"], tmp_path / "ddc.plan", (9, 0))
    plan.write_bytes(b"replaced")
    with pytest.raises(EngineError, match="ddc.plan: SHA-256 differs"):
        write_repository([plan], tmp_path / "repo")


def test_two_models_with_one_name_are_refused(tiny_exports, tmp_path):
    import copy

    import torch

    from medinfer.checkpoint import save_checkpoint
    from medinfer.export import export_onnx

    export = tiny_exports("ddc_resnet101")
    first, changed = export["onnx"], copy.deepcopy(export["model"])
    with torch.no_grad():
        next(changed.parameters()).add_(0.01)  # other weights, same model name
    other = export_onnx(save_checkpoint(changed, tmp_path / "other"), tmp_path / "other.onnx", progress=False)
    with pytest.raises(InputError, match="would get the same Triton name 'ddc_resnet101'"):
        write_repository([first, other], tmp_path / "repo")
    plans = [_plan(first, tmp_path / "a.plan", (9, 0)), _plan(other, tmp_path / "b.plan", (8, 6))]
    with pytest.raises(InputError, match="b.plan: its model"):
        write_repository(plans, tmp_path / "repo")
    with pytest.raises(InputError, match="a second ONNX export"):
        write_repository([first, shutil.copy(first, tmp_path / "copy.onnx")], tmp_path / "repo")


@pytest.mark.parametrize(("edit", "message"), [
    (lambda r: r["gpu"].pop("compute_capability"), "names no compute capability"),
    (lambda r: r["profile"].update(min=4), "batch profile starts at 4"),
])
def test_plan_records_triton_cannot_use_are_refused(tiny_exports, tmp_path, edit, message):
    plan = _plan(tiny_exports("ddc_resnet101")["onnx"], tmp_path / "ddc.plan", (9, 0))
    record = PlanRecord.read(plan).to_dict()
    edit(record)
    PlanRecord(**{k: v for k, v in vars(PlanRecord.read(plan)).items() if k not in ("gpu", "profile")},
               gpu=record["gpu"], profile=record["profile"]).write(plan)
    with pytest.raises(EngineError, match=message):
        write_repository([plan], tmp_path / "repo")


def test_plans_of_mixed_tensorrt_versions_or_one_gpu_twice_are_refused(tiny_exports, tmp_path):
    onnx = tiny_exports("ddc_resnet101")["onnx"]
    a = _plan(onnx, tmp_path / "a.plan", (9, 0))
    with pytest.raises(InputError, match="a second plan .* for compute capability 9.0"):
        write_repository([a, _plan(onnx, tmp_path / "b.plan", (9, 0))], tmp_path / "repo")
    with pytest.raises(InputError, match="built with TensorRT 10.15.1"):
        write_repository([a, _plan(onnx, tmp_path / "c.plan", (8, 6), tensorrt="10.15.1")], tmp_path / "repo")
