"""The ``medinfer`` command line."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from medinfer.cli import main


def test_info_reports_every_backend(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in ("torch", "triton", "cuda", "onnxruntime", "tensorrt", "native extension"):
        assert name in out


def test_info_json(capsys):
    assert main(["info", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["medinfer"] and {r["backend"] for r in rep["backends"]} >= {"torch", "onnxruntime"}


def test_models_table_shows_paper_counts(capsys):
    assert main(["models", "msfe*"]) == 0
    out = capsys.readouterr().out
    assert "msfe_dfe_ddc" in out and "58.94" in out and "1×64×64" in out and "ddc_resnet101" not in out


def test_models_json(capsys):
    assert main(["models", "densenet121", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["name"] == "densenet121" and row["params"] > 6e6 and row["flops"] > 0


def test_unknown_pattern_is_a_clear_error(capsys):
    assert main(["models", "vit*"]) == 1
    assert "no registered model matches 'vit*'" in capsys.readouterr().err


def test_console_script_is_installed():
    exe = shutil.which("medinfer")
    if exe is None:
        pytest.skip("medinfer is not installed as a console script in this environment")
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert proc.stdout.startswith("medinfer ")


# --- export / predict / validate-engine on the real chest CT ---------------------------------------------------
@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    """A tiny DDC-ResNet101 checkpoint, and its export by `medinfer export`."""
    from tiny import TINY

    from medinfer.checkpoint import save_checkpoint
    from medinfer.models import create

    out = tmp_path_factory.mktemp("cli")
    checkpoint = save_checkpoint(create("ddc_resnet101", **TINY["ddc_resnet101"]), out / "ddc")
    assert main(["export", str(checkpoint), "-o", str(out / "ddc.onnx")]) == 0
    return checkpoint, out / "ddc.onnx"


def test_export_predict_validate(tiny_export, chest_ct, tmp_path, capsys):
    from medinfer.onnx_file import CHECK_KEY, read_export

    tiny_checkpoint, onnx_path = tiny_export
    props = {p.key: p.value for p in read_export(onnx_path)[1].metadata_props}
    assert json.loads(props[CHECK_KEY])["max_abs_diff"] <= 1e-4

    # One real series, one folder of the same slices with a foreign file mixed in.
    series_b = tmp_path / "with_foreign"
    series_b.mkdir()
    for f in sorted(chest_ct.glob("*.dcm"))[:20]:
        (series_b / f.name).write_bytes(f.read_bytes())
    (series_b / "notes.txt").write_text("not a DICOM file")
    report = tmp_path / "pred.json"
    assert main(["predict", str(chest_ct), str(series_b), "--engine", str(onnx_path), "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "with_foreign" in out and "notes.txt" in out and "engine: onnxruntime on cpu, fp32 (auto: fp32" in out
    doc = json.loads(report.read_text())
    assert doc["precision"] == "fp32" and doc["validation"] is None
    first, second = doc["predictions"]
    assert first["slices_used"] == 64 and len(first["slice_probabilities"]) == 64 and first["skipped"] == []
    assert second["slices_used"] == 20 and [s["path"].endswith("notes.txt") for s in second["skipped"]] == [True]
    assert first["label"] in doc["model"]["class_names"]

    data = tmp_path / "data"
    shutil.copytree(chest_ct, data / "ct")
    verdict = tmp_path / "validate.json"
    assert main(["validate-engine", str(onnx_path), "--reference", str(tiny_checkpoint), "--data", str(data),
                 "--json", str(verdict)]) == 0
    result = json.loads(verdict.read_text())
    assert result["passed"] and result["slices"] == 64 and result["max_abs_diff"] < 1e-4
    assert "recorded in" in capsys.readouterr().out
    from medinfer.validation import recorded

    assert recorded(onnx_path)["onnxruntime/fp32"].passed  # stored in the export's record


def test_validate_engine_refuses_an_unrelated_reference(tiny_export, tmp_path, capsys):
    from tiny import TINY

    from medinfer.checkpoint import save_checkpoint
    from medinfer.models import create

    _, onnx_path = tiny_export
    other = save_checkpoint(create("ddc_resnet101", **TINY["ddc_resnet101"]), tmp_path / "other")
    assert main(["validate-engine", str(onnx_path), "--reference", str(other), "--data", str(tmp_path)]) == 1
    assert "was not made from" in capsys.readouterr().err
