"""`medinfer demo` end to end, on a small budget: real chest CT, phantom set, training, export, engine."""

from __future__ import annotations

import json

from medinfer.cli import main


def test_demo_runs_the_whole_path(tmp_path, chest_ct, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--per-class", "8", "--epochs", "1"]) == 0
    text = capsys.readouterr().out
    for step in ("real chest CT", "liver-ROI phantom set, 8 ROIs per class", "trained reduced ddc_resnet101, 1 epochs",
                 "exported to ONNX", "evaluated the engine", "classified the real chest CT series"):
        assert step in text
    assert "64 slices used, 0 skipped" in text
    for name in ("run/best.safetensors", "run/best.json", "run/curves.png", "ddc_resnet101.onnx",
                 "report/roc.png", "report/confusion.png"):
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert metrics["n"] == 4 * 2 and 0.0 <= metrics["accuracy"] <= 1.0  # two test ROIs per class of eight
