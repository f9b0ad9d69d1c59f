"""``evaluate`` through the engine path, and the train / evaluate / phantom command lines."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from synthetic_sets import write_roi_set, write_series_set
from tiny import TINY

from medinfer.checkpoint import load_checkpoint
from medinfer.cli import main
from medinfer.errors import InputError
from medinfer.evaluation import evaluate
from medinfer.training import train


@pytest.fixture(scope="module")
def roi_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-roi")
    data = write_roi_set(root / "data", np.random.default_rng(3), train=3, test=3)
    result = train("ddc_resnet101", data, root / "run", epochs=1, overrides=TINY["ddc_resnet101"],
                   input_size=(32, 32), progress=False)
    return data, result


@pytest.fixture(scope="module")
def series_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-series")
    data = write_series_set(root / "data", np.random.default_rng(4), counts=(("train", 2), ("val", 1), ("test", 2)))
    result = train("densenet_pair", data, root / "run", epochs=1, overrides=TINY["densenet_pair"],
                   input_size=(32, 32), frozen_epochs=0, progress=False)
    return data, result


def test_roi_evaluation_matches_the_model_and_writes_figures(roi_run, tmp_path):
    data, result = roi_run
    m = evaluate(result.run_dir, data, tmp_path / "report", progress=False)
    assert m["model"] == str(result.checkpoint) and m["engine"] == "torch" and m["level"] == "roi"
    assert m["n"] == 12 and np.sum(m["confusion_matrix"]) == 12 and len(m["predictions"]) == 12
    for name in ("metrics.json", "roc.png", "confusion.png"):
        assert (tmp_path / "report" / name).stat().st_size > 200
    saved = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert set(saved["roc"]) == {"MET", "HEM", "HCC", "healthy"} and saved["accuracy"] == m["accuracy"]
    # The engine path (series batcher + stored Preprocess) gives the model's own probabilities.
    ckpt = load_checkpoint(result.checkpoint)
    item = m["predictions"][0]
    x = ckpt.metadata.preprocess.apply(np.load(item["path"])[None])
    with torch.no_grad():
        expected = torch.softmax(ckpt.model(torch.from_numpy(x)), 1)[0].numpy()
    got = np.array([item["probabilities"][c] for c in ckpt.metadata.class_names])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_series_evaluation_aggregates_slices_per_series(series_run, tmp_path):
    data, result = series_run
    m = evaluate(result.checkpoint, data, tmp_path / "report", progress=False)
    assert m["level"] == "series" and m["n"] == 4 and m["aggregate"] == "mean"
    assert m["slice_level"]["n"] == 16 and all(p["slices"] == 4 for p in m["predictions"])
    val = evaluate(result.checkpoint, data, tmp_path / "val", split="val", progress=False)
    assert val["n"] == 2


def test_unusable_files_are_reported(roi_run, tmp_path):
    data, result = roi_run
    bad = data / "test" / "MET" / "zz_broken.npy"
    bad.write_bytes(b"garbage")
    try:
        with pytest.warns(UserWarning, match="not used"):
            m = evaluate(result.checkpoint, data, tmp_path / "report", progress=False)
    finally:
        bad.unlink()
    assert m["n"] == 12 and [s["path"] for s in m["skipped"]] == [str(bad)]


def test_labels_must_be_model_classes(series_run, roi_run, tmp_path):
    data, _ = roi_run
    _, result = series_run
    with pytest.raises(InputError, match="are not classes of this model \\(covid, non-covid\\)"):
        evaluate(result.checkpoint, data, tmp_path / "r", progress=False)


def test_cli_train_then_evaluate(tmp_path, capsys, rng):
    data = write_series_set(tmp_path / "data", rng, counts=(("train", 2), ("val", 1), ("test", 1)), slices=2)
    run = tmp_path / "run"
    args = ["train", "--model", "densenet_pair", "--data", str(data), "--epochs", "2", "--batch-size", "4",
            "--out", str(run), "--input-size", "32", "--frozen-epochs", "1",
            "--override", "densenet=" + json.dumps(TINY["densenet_pair"]["densenet"])]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "best: epoch" in out and str(run / "best.json") in out
    assert load_checkpoint(run / "best.json").metadata.model["overrides"]["densenet"]["growth_rate"] == 8
    assert main(["evaluate", str(run), "--data", str(data), "--out", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    assert "series level, mean of slices" in out and "macro" in out and "slice level:" in out
    assert main(args) == 1
    assert "already holds a run; pass resume=True (--resume)" in capsys.readouterr().err
    assert main([*args[:6], "3", *args[7:], "--resume"]) == 0


def test_cli_phantom_liver_roi(chest_ct, tmp_path, capsys):
    assert main(["phantom", "liver-roi", str(tmp_path / "lr"), "--per-class", "2", "--seed", "5",
                 "--source", str(chest_ct)]) == 0
    assert "say nothing about clinical accuracy" in capsys.readouterr().out
    assert len(list((tmp_path / "lr").rglob("*.png"))) == 8


def test_cli_override_must_be_key_value(tmp_path, capsys):
    assert main(["train", "--model", "msfe", "--data", str(tmp_path), "--epochs", "1", "--out", str(tmp_path / "r"),
                 "--override", "layers"]) == 1
    assert "--override: expected KEY=JSON" in capsys.readouterr().err
