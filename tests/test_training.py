"""Training: both recipes on tiny models, what a run writes, resume, two-phase freezing, errors, and DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from synthetic_sets import write_roi_set, write_series_set
from tiny import TINY

from medinfer.checkpoint import load_checkpoint
from medinfer.errors import InputError
from medinfer.training import train
from medinfer.training.recipes import RECIPES, default_recipe, get_recipe
from medinfer.training.trainer import _set_phase, _train_mode

SMALL = (32, 32)  # train the tiny models at 32×32: the same code, a sixteenth of the work


@pytest.fixture(scope="module")
def roi_data(tmp_path_factory):
    return write_roi_set(tmp_path_factory.mktemp("roi"), np.random.default_rng(0), train=6, test=2)


@pytest.fixture(scope="module")
def series_data(tmp_path_factory):
    return write_series_set(tmp_path_factory.mktemp("series"), np.random.default_rng(1))


def _run(model, data, out, **kw):
    kw.setdefault("input_size", SMALL)
    return train(model, data, out, overrides=TINY[model], progress=False, **kw)


def test_unreadable_train_files_are_reported_after_the_holdout(tmp_path):
    # The validation hold-out splits the items that were read; the files that could not be stay reported.
    data = write_roi_set(tmp_path / "data", np.random.default_rng(5), train=3, test=1)
    (data / "train" / "MET" / "broken.npy").write_bytes(b"not an array")
    with pytest.warns(UserWarning, match="1 file.s. not used .*broken.npy"):
        result = _run("se_resnet101", data, tmp_path / "run", epochs=1)
    assert [p.rsplit("/", 1)[-1] for p, _ in result.skipped] == ["broken.npy"]
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert [s["path"].rsplit("/", 1)[-1] for s in run["skipped"]] == ["broken.npy"]


@pytest.mark.parametrize(("model", "loss"), [("ddc_resnet101", "ce"), ("ddc_resnet101", "dice"),
                                             ("se_resnet101", "ce")])
def test_ddc2021_run_writes_checkpoints_curves_and_history(roi_data, tmp_path, model, loss):
    result = _run(model, roi_data, tmp_path / "run", epochs=2, loss=loss)
    assert result.checkpoint == tmp_path / "run" / "best.json" and result.curve_png.stat().st_size > 10_000
    assert [h["epoch"] for h in result.history] == [1, 2] and 1 <= result.best_epoch <= 2
    assert result.history[1]["lr"] == pytest.approx(0.002 * 0.98)  # exponential decay per epoch
    assert all(h["samples"] == 20 for h in result.history)  # 24 train ROIs, one per class held out for validation
    ckpt = load_checkpoint(result.final_checkpoint)
    assert ckpt.metadata.model["overrides"]["layers"] == list(TINY[model]["layers"])  # overrides round-trip
    assert ckpt.metadata.class_names == ("MET", "HEM", "HCC", "healthy")
    assert ckpt.metadata.preprocess.size == SMALL
    assert ckpt.training["recipe"]["name"] == "ddc2021" and ckpt.training["loss"] == loss
    assert ckpt.training["history"] == result.history and "lowest validation loss" in ckpt.training["selection"]
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["data"]["validation"].startswith("10% of the train split") and run["skipped"] == []
    best = load_checkpoint(result.checkpoint)
    assert best.training["best_epoch"] == result.best_epoch


def test_training_learns_an_easy_task(tmp_path):
    data = write_roi_set(tmp_path / "data", np.random.default_rng(2), train=8, test=1)
    result = _run("densenet121", data, tmp_path / "run", epochs=6, batch_size=4)
    losses = [h["train_loss"] for h in result.history]
    assert min(losses[-2:]) < 0.9 * losses[0], losses


@pytest.mark.parametrize(("recipe", "model", "data"), [
    ("ddc2021", "ddc_resnet101", "roi"),
    ("resdense2021", "densenet_pair", "series"),
])
def test_resume_gives_the_uninterrupted_weights(roi_data, series_data, tmp_path, recipe, model, data):
    data = roi_data if data == "roi" else series_data
    kw = {"frozen_epochs": 1} if recipe == "resdense2021" else {}
    whole = _run(model, data, tmp_path / "whole", epochs=3, batch_size=8, **kw)
    _run(model, data, tmp_path / "split", epochs=2, batch_size=8, **kw)
    resumed = _run(model, data, tmp_path / "split", epochs=3, batch_size=8, resume=True, **kw)
    a = load_file(tmp_path / "whole" / "final.safetensors")
    b = load_file(tmp_path / "split" / "final.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in whole.history]
    assert resumed.best_epoch == whole.best_epoch


def test_resume_refuses_mismatches_and_missing_state(roi_data, tmp_path):
    _run("se_resnet101", roi_data, tmp_path / "run", epochs=1)
    with pytest.raises(InputError, match="already holds a run; pass resume=True"):
        _run("se_resnet101", roi_data, tmp_path / "run", epochs=2)
    with pytest.raises(InputError, match="cannot resume with a different batch_size"):
        _run("se_resnet101", roi_data, tmp_path / "run", epochs=2, batch_size=4, resume=True)
    with pytest.raises(InputError, match="already trained for 1 epoch"):
        _run("se_resnet101", roi_data, tmp_path / "run", epochs=1, resume=True)
    with pytest.raises(InputError, match="nothing to resume"):
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "run.json").write_text((tmp_path / "run" / "run.json").read_text())
        _run("se_resnet101", roi_data, tmp_path / "other", epochs=2, resume=True)


def test_resume_reads_run_folders_that_use_the_old_recipe_names(roi_data, tmp_path):
    _run("se_resnet101", roi_data, tmp_path / "run", epochs=1)
    run_json = tmp_path / "run" / "run.json"
    run = json.loads(run_json.read_text())
    run["config"]["recipe"].update(name="seed000", augment="seed000")  # as medinfer wrote it before the renaming
    run_json.write_text(json.dumps(run))
    result = _run("se_resnet101", roi_data, tmp_path / "run", epochs=2, resume=True, recipe="seed000")
    assert len(result.history) == 2
    assert json.loads(run_json.read_text())["config"]["recipe"]["name"] == "ddc2021"
    assert load_checkpoint(result.final_checkpoint).training["recipe"]["augment"] == "ddc2021"


def test_resdense2021_two_phases_freeze_the_backbones(series_data, tmp_path):
    result = _run("densenet_pair", series_data, tmp_path / "run", epochs=3, frozen_epochs=2)
    assert [h["phase"] for h in result.history] == [1, 1, 2]
    assert result.history[0]["lr"] == result.history[2]["lr"] == 1e-4
    assert "val_series_macro_f1" in result.history[0]
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["data"]["validation"] == "val split" and run["data"]["train_slices"] == 24


def test_frozen_phase_trains_only_the_head_with_backbone_statistics_fixed():
    from medinfer.models import create

    model = create("resdense_net", **TINY["resdense_net"])
    trainable = _set_phase(model, 1)
    heads = {id(p) for m in model.head_modules() for p in m.parameters()}
    assert {id(p) for p in trainable} == heads
    _train_mode(model, 1)
    assert not model.pipe_a.training and not model.pipe_b.training and model.head.training
    assert len(_set_phase(model, 2)) == len(list(model.parameters()))


def test_phase1_leaves_backbone_weights_and_statistics_unchanged(series_data, tmp_path):
    from medinfer.models import create

    result = _run("densenet_pair", series_data, tmp_path / "run", epochs=1, frozen_epochs=1)
    after = load_checkpoint(result.final_checkpoint).model.state_dict()
    torch.manual_seed(0)
    fresh = create("densenet_pair", **TINY["densenet_pair"]).state_dict()
    backbone = [k for k in after if k.startswith(("pipe_a.", "pipe_b."))]
    assert backbone and all(torch.equal(after[k], fresh[k]) for k in backbone)  # weights and BN statistics
    assert not torch.equal(after["head.fc.weight"], fresh["head.fc.weight"])


def test_cli_takes_the_old_recipe_names():
    from medinfer.cli import build_parser

    args = ["train", "--model", "densenet_pair", "--data", "d", "--epochs", "1", "--out", "o", "--recipe"]
    assert build_parser().parse_args([*args, "seed003"]).recipe == "resdense2021"
    assert build_parser().parse_args([*args, "ddc2021"]).recipe == "ddc2021"


def test_recipes_follow_the_papers():
    a, b = RECIPES["ddc2021"], RECIPES["resdense2021"]
    assert (a.optimizer, a.lr, a.lr_decay, a.batch_size, a.two_phase) == ("adam", 0.002, 0.98, 16, False)
    assert (b.optimizer, b.lr, b.lr_decay, b.batch_size, b.two_phase) == ("rmsprop", 1e-4, 1.0, 32, True)
    assert default_recipe("ddc_resnet101") == default_recipe("densenet121") == "ddc2021"
    assert default_recipe("resdense_net") == default_recipe("densenet_pair") == "resdense2021"
    assert get_recipe("seed000") is a and get_recipe("seed003") is b  # the old names, read back
    assert b.frozen_epochs(20) == 5 and b.frozen_epochs(1) == 0 and a.frozen_epochs(20) == 0


@pytest.mark.parametrize(("kw", "message"), [
    ({"loss": "dice", "recipe": "resdense2021"}, "recipe 'resdense2021' trains with ce, not 'dice'"),
    ({"loss": "focal"}, "unknown loss 'focal'"),
    ({"recipe": "seed001"}, "unknown recipe 'seed001'"),
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"frozen_epochs": 1}, "has one phase"),
    ({"amp": "fp16"}, "needs a CUDA device"),
])
def test_bad_arguments_are_clear_errors(roi_data, tmp_path, kw, message):
    kw = {"epochs": 1, **kw}
    with pytest.raises(InputError, match=message):
        _run("se_resnet101", roi_data, tmp_path / "run", **kw)


DDP_SCRIPT = textwrap.dedent("""
    import hashlib, json, os, sys
    import medinfer.models
    from medinfer.training import distributed, train

    seen, made = [], []
    shard, create = distributed.Dist.shard, medinfer.models.create
    def recording_shard(self, batch):
        mine = shard(self, batch)
        seen.append({"global": batch.tolist(), "mine": mine.tolist()})
        return mine
    def recording_create(*args, **kwargs):
        made.append(create(*args, **kwargs))
        return made[-1]
    distributed.Dist.shard, medinfer.models.create = recording_shard, recording_create

    data, out, report, overrides = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    result = train("se_resnet101", data, out, epochs=2, batch_size=8, overrides=overrides, input_size=(32, 32),
                   progress=False)
    h = hashlib.sha256()
    for name, p in made[0].named_parameters():
        h.update(name.encode() + p.detach().numpy().tobytes())
    rank = int(os.environ["RANK"])
    with open(os.path.join(report, f"rank{rank}.json"), "w") as f:
        json.dump({"world": int(os.environ["WORLD_SIZE"]), "seen": seen, "history": result.history,
                   "params": h.hexdigest()}, f)
""")



def test_torchrun_two_cpu_processes(roi_data, tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    report = tmp_path / "report"
    report.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MEDINFER_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           str(roi_data), str(tmp_path / "run"), str(report), json.dumps(TINY["se_resnet101"])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((report / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    for a, b in zip(ranks[0]["seen"], ranks[1]["seen"], strict=True):
        assert a["global"] == b["global"]  # the same global batch on both ranks
        assert not set(a["mine"]) & set(b["mine"])  # disjoint shards ...
        usable = len(a["global"]) - len(a["global"]) % 2
        assert sorted(a["mine"] + b["mine"]) == sorted(a["global"][:usable])  # ... that make up the batch
    assert ranks[0]["params"] == ranks[1]["params"]  # DDP kept the ranks' weights identical
    assert ranks[1]["history"] == [] and [h["samples"] for h in ranks[0]["history"]] == [20, 20]
    ckpt = load_checkpoint(tmp_path / "run" / "final.json")
    assert ckpt.training["world_size"] == 2
