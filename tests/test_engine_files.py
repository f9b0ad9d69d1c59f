"""Engine and checkpoint files under hostile edits: one digest over everything an engine reads, signatures
that an attacker without the key cannot forge, shape and config checks at load, and file permissions.

Each case edits a real export, checkpoint or plan record the way a careless or hostile user would; where
the edit is meant to get past the digest, the digest is recomputed as an attacker would (medinfer's own
hashing code is public), so that only the check under test can catch it.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import onnx
import pytest
from tiny import tiny_model

from medinfer import integrity
from medinfer.checkpoint import _write_config, load_checkpoint, save_checkpoint
from medinfer.cli import main
from medinfer.engine import Engine
from medinfer.engine.tensorrt_backend import PlanRecord, TensorRTEngine, sidecar_path
from medinfer.errors import EngineError, InputError
from medinfer.metadata import sha256_bytes
from medinfer.onnx_file import DIGEST_KEY, GRAPH_SHA_KEY, SIGNATURE_KEY, export_digest, graph_sha256, set_props

KEY = "a deployment's secret key, 32 b"
OTHER_KEY = "somebody else's key, also long"


@pytest.fixture(autouse=True)
def no_key_configured(monkeypatch):
    for var in (integrity.KEY_ENV, integrity.KEY_FILE_ENV):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def export(tiny_exports, tmp_path):
    """A private copy of a tiny DDC-ResNet101 export, and its checkpoint."""
    made = tiny_exports("ddc_resnet101")
    path = tmp_path / "ddc.onnx"
    shutil.copy(made["onnx"], path)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    for f in made["checkpoint"].parent.glob(made["checkpoint"].stem + ".*"):
        shutil.copy(f, ckpt / f.name)
    return {"onnx": path, "checkpoint": ckpt / made["checkpoint"].name}


def props(path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(path).metadata_props}


def edit_props(path, changes: dict[str, str], *, rehash: bool = False) -> None:
    """Change metadata entries; ``rehash``: also recompute the digest, as an attacker would."""
    proto = onnx.load(path)
    set_props(proto, changes)
    if rehash:
        set_props(proto, {DIGEST_KEY: export_digest(proto)})
    onnx.save(proto, path)


def edit_json(path, change) -> dict:
    doc = json.loads(path.read_text())
    change(doc)
    return doc


# --- metadata is inside the digest ------------------------------------------------------------------------------
METADATA_EDITS = {
    "class names swapped": ("medinfer.class_names", json.dumps(["HEM", "MET", "HCC", "healthy"])),
    "window changed": ("medinfer.preprocess", None),  # filled in by the test: level 40 → 400
    "another model named": ("medinfer.model", None),
    "version rewritten": ("medinfer.version", json.dumps("9.9.9")),
    "weights hash rewritten": ("medinfer.weights_sha256", json.dumps("0" * 64)),
    "export check rewritten": ("medinfer.export_check", json.dumps({"max_abs_diff": 0.0})),
    "digest removed": (DIGEST_KEY, ""),
    "digest garbled": (DIGEST_KEY, "not a digest"),
}


@pytest.mark.parametrize("case", list(METADATA_EDITS))
def test_edited_metadata_is_refused(export, case):
    key, value = METADATA_EDITS[case]
    current = props(export["onnx"])
    if case == "window changed":
        pre = json.loads(current[key])
        pre["window"] = [400.0, 400.0]
        value = json.dumps(pre)
    elif case == "another model named":
        model = json.loads(current[key])
        model["name"] = "se_resnet101"
        value = json.dumps(model)
    edit_props(export["onnx"], {key: value})
    if case == "digest removed":
        proto = onnx.load(export["onnx"])
        kept = {p.key: p.value for p in proto.metadata_props if p.key != DIGEST_KEY}
        del proto.metadata_props[:]
        onnx.helper.set_model_props(proto, kept)
        onnx.save(proto, export["onnx"])
    with pytest.raises(EngineError, match=r"ddc.onnx: .*(do not match its digest|carries no digest)"):
        Engine(export["onnx"])


def test_swapped_graph_with_recomputed_hashes_passes_the_digest_but_not_a_signature(export, tiny_exports, monkeypatch):
    # The digest detects accidents only: a whole other model's graph, re-hashed, is accepted without a key...
    other = onnx.load(tiny_exports("msfe")["onnx"])
    proto = onnx.load(export["onnx"])
    proto.graph.CopyFrom(other.graph)
    set_props(proto, {GRAPH_SHA_KEY: graph_sha256(proto)})
    set_props(proto, {DIGEST_KEY: export_digest(proto)})
    onnx.save(proto, export["onnx"])
    assert Engine(export["onnx"]).metadata.name == "ddc_resnet101"
    # ...and refused once the deployment requires signatures, signed or not by the attacker's own key.
    monkeypatch.setenv(integrity.KEY_ENV, KEY)
    with pytest.raises(EngineError, match="is configured .* not signed"):
        Engine(export["onnx"])
    integrity.sign(export["onnx"], OTHER_KEY)
    with pytest.raises(EngineError, match="signature does not match the configured engine key"):
        Engine(export["onnx"])


# --- signatures ---------------------------------------------------------------------------------------------------
def test_signed_engines_load_and_edits_after_signing_are_refused(export, monkeypatch, tmp_path):
    key_file = tmp_path / "engine.key"
    key_file.write_text(KEY + "\n")
    monkeypatch.setenv(integrity.KEY_FILE_ENV, str(key_file))
    assert main(["sign", str(export["onnx"]), str(export["checkpoint"])]) == 0
    assert SIGNATURE_KEY in props(export["onnx"])
    assert Engine(export["onnx"]).class_names == ("MET", "HEM", "HCC", "healthy")
    assert load_checkpoint(export["checkpoint"]).metadata.name == "ddc_resnet101"
    # An attacker edits and re-hashes, but cannot re-sign.
    edit_props(export["onnx"], {"medinfer.class_names": json.dumps(["a", "b", "c", "d"])}, rehash=True)
    with pytest.raises(EngineError, match="signature does not match"):
        Engine(export["onnx"])
    config = export["checkpoint"]
    doc = edit_json(config, lambda d: d.update(class_names=["a", "b", "c", "d"]))
    _write_config(config, doc, doc["signature"])  # digest recomputed, old signature kept
    with pytest.raises(EngineError, match="signature does not match"):
        load_checkpoint(config)


def test_verify_false_does_not_bypass_a_required_signature(export, monkeypatch):
    monkeypatch.setenv(integrity.KEY_ENV, KEY)
    with pytest.raises(EngineError, match="not signed"):
        Engine(export["onnx"], verify=False)


def test_signing_refuses_damaged_files_and_weak_keys(export, monkeypatch):
    edit_props(export["onnx"], {"medinfer.class_names": json.dumps(["a", "b", "c", "d"])})
    with pytest.raises(EngineError, match="do not match its digest"):
        integrity.sign(export["onnx"], KEY)
    with pytest.raises(InputError, match="has 5 bytes; use at least 16"):
        integrity.sign(export["checkpoint"], "short")
    monkeypatch.setenv(integrity.KEY_ENV, "short")
    with pytest.raises(InputError, match=f"from {integrity.KEY_ENV} has 5 bytes"):
        Engine(export["checkpoint"])
    monkeypatch.delenv(integrity.KEY_ENV)
    with pytest.raises(InputError, match="no engine key"):
        integrity.sign(export["onnx"])


def test_files_from_before_the_digest_are_adopted_only_on_request(export):
    proto = onnx.load(export["onnx"])
    kept = {p.key: p.value for p in proto.metadata_props if p.key != DIGEST_KEY}
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, kept)
    onnx.save(proto, export["onnx"])
    with pytest.raises(EngineError, match="carries no digest.*medinfer sign --rehash ddc.onnx"):
        Engine(export["onnx"])
    integrity.sign(export["onnx"], KEY, rehash=True)
    assert Engine(export["onnx"]).metadata.name == "ddc_resnet101"


# --- late failures become load-time EngineErrors naming the field -----------------------------------------------
@pytest.mark.parametrize(("value", "dim", "field"), [("probabilities", 1, "class_names"),
                                                     ("input", 2, "preprocess"), ("input", 1, "preprocess")])
def test_graph_disagreeing_with_its_metadata_is_refused_at_load(export, value, dim, field):
    proto = onnx.load(export["onnx"])
    tensor = next(v for v in (*proto.graph.input, *proto.graph.output) if v.name == value)
    tensor.type.tensor_type.shape.dim[dim].dim_value += 3
    set_props(proto, {GRAPH_SHA_KEY: graph_sha256(proto)})
    set_props(proto, {DIGEST_KEY: export_digest(proto)})
    onnx.save(proto, export["onnx"])
    with pytest.raises(EngineError, match=f"ddc.onnx: the graph's '{value}' has shape .* metadata field {field}"):
        Engine(export["onnx"])


def test_metadata_claiming_other_classes_than_the_graph_is_refused_at_load(export):
    edit_props(export["onnx"], {"medinfer.class_names": json.dumps(["a", "b"]),
                                "medinfer.model": json.dumps({**json.loads(props(export["onnx"])["medinfer.model"]),
                                                              "num_classes": 2})}, rehash=True)
    with pytest.raises(EngineError, match="'probabilities' has shape \\(\\?, 4\\).*class_names says \\(batch, 2\\)"):
        Engine(export["onnx"])


CONFIG_EDITS = {
    "num_classes true": (lambda d: d["model"].update(num_classes=True), "model.num_classes must be a positive"),
    "num_classes negative": (lambda d: d["model"].update(num_classes=-4), "model.num_classes must be a positive"),
    "in_chans string": (lambda d: d["model"].update(in_chans="1"), "model.in_chans must be a positive"),
    "negative width": (lambda d: d["model"]["overrides"].update(stem_width=-16), "model.overrides"),
    "layer lists of different lengths": (lambda d: d["model"]["overrides"].update(layers=[1, 1]), "model.overrides"),
    "width as bool": (lambda d: d["model"]["overrides"].update(stem_width=True), "stem_width must be a int"),
    "list as string": (lambda d: d["model"]["overrides"].update(planes="16,16"), "planes must be a list"),
    "unknown field": (lambda d: d["model"]["overrides"].update(depth=3), "has no field 'depth'"),
    "overrides a list": (lambda d: d["model"].update(overrides=[1]), "model.overrides must be an object"),
    "duplicate classes": (lambda d: d.update(class_names=["MET", "MET", "HCC", "healthy"]), "repeats a name"),
    "weights path escapes": (lambda d: d.update(weights="../../etc/passwd"), "field weights must name a file"),
}


@pytest.mark.parametrize("case", list(CONFIG_EDITS))
def test_invalid_checkpoint_configs_are_engine_errors_naming_the_field(export, case):
    change, message = CONFIG_EDITS[case]
    config = export["checkpoint"]
    _write_config(config, edit_json(config, change))  # digest recomputed: only the field check can catch it
    with pytest.raises(EngineError, match=f"{config.name}: .*{message}"):
        load_checkpoint(config)


@pytest.mark.parametrize("how", ["reshaped", "transposed", "integer"])
def test_weights_of_the_wrong_shape_or_kind_are_refused_before_pytorch_sees_them(export, how):
    from safetensors.torch import load, save

    config = export["checkpoint"]
    weights = config.with_suffix(".safetensors")
    state = load(weights.read_bytes())
    name = next(k for k, v in state.items() if v.dim() == 4 and v.shape[0] != v.shape[1])
    t = state[name]
    state[name] = {"reshaped": t[1:].contiguous(), "transposed": t.transpose(0, 1).contiguous(),
                   "integer": t.int()}[how]
    data = save(state)
    weights.write_bytes(data)
    _write_config(config, edit_json(config, lambda d: d.update(weights_sha256=sha256_bytes(data))))
    with pytest.raises(EngineError, match=f"model.safetensors|{weights.name}: 1 tensor\\(s\\) do not fit .*{name}"):
        load_checkpoint(config)


# --- TensorRT plans -----------------------------------------------------------------------------------------------
def _plan(export, tmp_path) -> Path:
    from medinfer.onnx_file import read_export

    plan = tmp_path / "ddc.plan"
    plan.write_bytes(b"plan bytes")
    meta = read_export(export["onnx"])[2]
    PlanRecord(tensorrt_version="10.13.0", gpu={"name": "NVIDIA H200", "compute_capability": [9, 0]},
               precision="fp16", profile={"min": 1, "opt": 32, "max": 128},
               onnx={"file": "ddc.onnx", "sha256": "0" * 64, "graph_sha256": "0" * 64},
               plan_sha256=sha256_bytes(plan.read_bytes()), metadata=meta,
               build={"command": "medinfer build"}).write(plan)
    return plan


@pytest.mark.parametrize("field", ["precision", pytest.param("gpu", id="device-record"), "metadata.class_names",
                                   "plan_sha256"])
def test_edited_plan_records_are_refused(export, tmp_path, field):
    plan = _plan(export, tmp_path)
    record = sidecar_path(plan)

    def change(d):
        if field == "metadata.class_names":
            d["metadata"]["class_names"] = ["HEM", "MET", "HCC", "healthy"]
        else:
            d[field] = {"precision": "fp32", "gpu": {"name": "x", "compute_capability": [8, 0]},
                        "plan_sha256": "0" * 64}[field]

    record.write_text(json.dumps(edit_json(record, change)))
    with pytest.raises(EngineError, match="ddc.plan.json: the plan record's contents do not match its digest"):
        TensorRTEngine(plan)


def test_signed_plan_records(export, tmp_path, monkeypatch):
    plan = _plan(export, tmp_path)
    monkeypatch.setenv(integrity.KEY_ENV, KEY)
    with pytest.raises(EngineError, match="plan record is not signed"):
        PlanRecord.read(plan)
    integrity.sign(plan)
    assert PlanRecord.read(plan).signature
    plan.write_bytes(b"another plan")
    with pytest.raises(EngineError, match="plan is damaged or was replaced"):
        integrity.sign(plan)


def test_a_plan_where_tensorrt_is_missing_names_the_file_and_how_to_get_it(export, tmp_path):
    plan = _plan(export, tmp_path)
    with pytest.raises(Exception, match=r"ddc.plan: a TensorRT plan needs the tensorrt backend, which cannot run on "
                                        r"(cpu|cuda) here: .*(pip install 'medinfer\[tensorrt\]'|NVIDIA GPUs only)"):
        Engine(plan)


# --- permissions --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_written_engines_respect_the_umask(tmp_path, umask, tiny_exports):
    from medinfer.export import export_onnx

    old = os.umask(umask)
    try:
        config = save_checkpoint(tiny_model("msfe"), tmp_path / "m")
        onnx_path = export_onnx(config, tmp_path / "m.onnx", progress=False) if umask == 0o022 else None
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    for path in (config, config.with_suffix(".safetensors"), onnx_path):
        if path is not None:
            assert stat.S_IMODE(path.stat().st_mode) == expected, path


# --- the command line checks its outputs first ----------------------------------------------------------------------
@pytest.mark.parametrize("target", ["{tmp}/out/", "{tmp}", "{tmp}/missing/p.json"])
def test_predict_checks_its_json_path_before_any_work(export, ct5n, tmp_path, capsys, target, monkeypatch):
    monkeypatch.setattr(Engine, "stream", lambda *a, **k: pytest.fail("ran before checking --json"))
    (tmp_path / "out").mkdir()
    rc = main(["predict", str(ct5n), "--engine", str(export["onnx"]), "--json", target.format(tmp=tmp_path)])
    assert rc == 1
    assert "--json" in capsys.readouterr().err


def test_predict_picks_a_series_by_uid(export, ct5n, tmp_path, capsys):
    import pydicom

    # Two series in one folder: the same slices, the second under another SeriesInstanceUID.
    folder = tmp_path / "study"
    folder.mkdir()
    for i, f in enumerate(sorted(ct5n.iterdir())):
        ds = pydicom.dcmread(f)
        ds.save_as(folder / f"a{i}.dcm", enforce_file_format=True)
        ds.SeriesInstanceUID = ds.SeriesInstanceUID + ".2"
        ds.SOPInstanceUID = ds.SOPInstanceUID + ".2"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(folder / f"b{i}.dcm", enforce_file_format=True)
    uid = pydicom.dcmread(folder / "b0.dcm").SeriesInstanceUID
    both = tmp_path / "both.json"
    assert main(["predict", str(folder), "--engine", str(export["onnx"]), "--json", str(both)]) == 0
    assert len(json.loads(both.read_text())["predictions"]) == 2  # a study folder: every series in it
    out = tmp_path / "p.json"
    assert main(["predict", str(folder), "--engine", str(export["onnx"]), "--series-uid", uid, "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    (prediction,) = doc["predictions"]
    assert prediction["uid"] == uid and prediction["slices_used"] == len(list(folder.glob("b*.dcm")))
    assert "warnings" in prediction and np.isclose(sum(prediction["probabilities"].values()), 1.0)
    (other,) = doc["excluded"]
    assert other["uid"] != uid and f"--select SeriesInstanceUID={uid}" in other["reason"]


def test_predict_passes_series_and_acquisition_choices_to_the_loader(export, ct5n):
    from medinfer.errors import SeriesError

    engine = Engine(export["onnx"])
    uid = engine.predict(ct5n).uid
    assert engine.predict(ct5n, series_uid=uid).uid == uid
    with pytest.raises(SeriesError, match=uid[:8] + "|series_uid"):
        engine.predict(ct5n, series_uid="1.2.3.not-there")
    assert len(engine.predict(ct5n, acquisition="all").slice_probabilities) == 5
    with pytest.raises(SeriesError):
        engine.predict(ct5n, acquisition=2)  # ct5n is one stack: there is no second acquisition


def test_rehash_needs_no_key_and_a_damaged_plan_is_never_adopted(export, tmp_path, capsys):
    proto = onnx.load(export["onnx"])
    kept = {p.key: p.value for p in proto.metadata_props if p.key != DIGEST_KEY}
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, kept)
    onnx.save(proto, export["onnx"])
    assert main(["sign", "--rehash", str(export["onnx"])]) == 0
    assert "recorded the digest of" in capsys.readouterr().out and SIGNATURE_KEY not in props(export["onnx"])
    assert Engine(export["onnx"]).metadata.name == "ddc_resnet101"
    plan = _plan(export, tmp_path)
    record = sidecar_path(plan)
    before = record.read_text()
    plan.write_bytes(b"a damaged plan")
    with pytest.raises(EngineError, match="plan is damaged or was replaced"):
        integrity.sign(plan, rehash=True)
    assert record.read_text() == before  # nothing written


def test_checkpoints_with_non_finite_training_figures_save_and_load(tmp_path):
    config = save_checkpoint(tiny_model("msfe"), tmp_path / "m",
                             training={"best_val_loss": float("inf"), "history": [{"val_loss": float("nan")}]})
    assert load_checkpoint(config).training["best_val_loss"] == float("inf")


def test_hints_name_the_file_medinfer_sign_takes(export, tmp_path, monkeypatch):
    plan = _plan(export, tmp_path)
    monkeypatch.setenv(integrity.KEY_ENV, KEY)
    with pytest.raises(EngineError, match="sign it with `medinfer sign .*ddc.plan`"):
        PlanRecord.read(plan)
