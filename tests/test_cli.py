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
