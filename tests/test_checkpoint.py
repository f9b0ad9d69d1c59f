"""Checkpoints: safetensors weights + JSON config, rebuilt exactly, refused when damaged."""

from __future__ import annotations

import json

import pytest
import torch
from tiny import TINY

from medinfer.checkpoint import _write_config, find_config, load_checkpoint, save_checkpoint
from medinfer.errors import EngineError, InputError
from medinfer.metadata import ModelMetadata
from medinfer.models import create


@pytest.fixture
def saved(tmp_path):
    model = create("ddc_resnet101", **TINY["ddc_resnet101"]).eval()
    config = save_checkpoint(model, tmp_path / "run" / "model", training={"epochs": 3, "history": [1.0, 0.5]})
    return model, config


def test_round_trip_rebuilds_the_same_model(saved):
    model, config = saved
    ckpt = load_checkpoint(config)
    x = torch.randn(3, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ckpt.model(x), model(x), rtol=0, atol=0)
    assert ckpt.metadata.class_names == ("MET", "HEM", "HCC", "healthy")
    assert ckpt.metadata.preprocess == model.spec.preprocess
    assert ckpt.training == {"epochs": 3, "history": [1.0, 0.5]}
    assert not ckpt.model.training


@pytest.mark.parametrize("form", ["model.json", "model.safetensors", "."])
def test_any_path_form_finds_the_config(saved, form):
    _, config = saved
    assert find_config(config.parent / form) == config


def test_metadata_matches_the_weights_file(saved):
    _, config = saved
    doc = json.loads(config.read_text())
    meta = ModelMetadata.from_dict(doc, config)
    import hashlib

    assert hashlib.sha256((config.parent / doc["weights"]).read_bytes()).hexdigest() == meta.weights_sha256
    assert doc["model"]["name"] == "ddc_resnet101" and doc["model"]["overrides"]["layers"] == [1, 2, 1, 1]


def test_replaced_weights_are_refused(saved):
    _, config = saved
    weights = config.with_suffix(".safetensors")
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(EngineError, match="SHA-256 differs.*damaged or were replaced"):
        load_checkpoint(config)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.pop("format"), "not a medinfer checkpoint config"),
    (lambda d: d.update(format_version=99), "format_version 99"),
    (lambda d: d.update(class_names=["a"]), "1 class names for a model with 4 outputs"),
    (lambda d: d["model"].update(name="resnet50"), "cannot rebuild model 'resnet50'"),
    (lambda d: d.update(weights="gone.safetensors"), "weights file 'gone.safetensors' is missing"),
    (lambda d: d["preprocess"].update(channels=7), "Preprocess.channels"),
])
def test_bad_configs_name_file_and_field(saved, edit, message):
    _, config = saved
    doc = json.loads(config.read_text())
    edit(doc)
    config.write_text(json.dumps(doc))
    with pytest.raises(EngineError, match="not a medinfer checkpoint config|do not match its digest"):
        load_checkpoint(config)  # an edit alone: the digest over the config catches it
    _write_config(config, doc)  # an edit that also recomputes the digest: the field's own check catches it
    with pytest.raises(EngineError, match=message) as info:
        load_checkpoint(config)
    assert str(config) in str(info.value)


def test_unreadable_config(saved):
    _, config = saved
    config.write_text("{not json")
    with pytest.raises(EngineError, match="unreadable checkpoint config"):
        load_checkpoint(config)


def test_folder_with_two_checkpoints_is_ambiguous(saved, tmp_path):
    model, config = saved
    save_checkpoint(model, config.parent / "other.json")
    with pytest.raises(InputError, match="expected one medinfer checkpoint config.*model.json, other.json"):
        load_checkpoint(config.parent)


def test_a_training_run_folder_means_its_best_checkpoint(saved):
    model, config = saved
    run = config.parent
    for name in ("best", "final"):
        save_checkpoint(model, run / name)
    (run / "run.json").write_text("{}")
    (run / "model.json").unlink()
    assert find_config(run) == run / "best.json"
    assert load_checkpoint(run).metadata.name == load_checkpoint(run / "best.json").metadata.name


def test_model_not_from_the_registry_is_refused(tmp_path):
    with pytest.raises(InputError, match="not made by medinfer.models.create"):
        save_checkpoint(torch.nn.Linear(2, 2), tmp_path / "x")
