"""Reduced precision is never silent: how engines decide their precision, and checks stored in engine records."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from medinfer import validation
from medinfer.errors import EngineError, InputError
from medinfer.validation import Decision, ReducedPrecisionWarning, Validation, decide

PATH = Path("model.onnx")


def _check(passed: bool, backend: str = "openvino", precision: str = "bf16") -> Validation:
    return Validation(backend=backend, precision=precision, passed=passed, series=3, slices=97,
                      slice_label_agreement=1.0 if passed else 0.9, series_label_agreement=1.0, max_abs_diff=0.003,
                      p99_abs_diff=0.002, mean_abs_diff=0.0004, max_diff=0.05, min_agreement=0.99,
                      reference="onnxruntime fp32 of model.onnx", data="test series", cpu="a CPU", medinfer="0",
                      date="2026-12-02T00:00:00+00:00")


def _decide(requested, *, stored="fp32", native=True, checks=()) -> Decision:
    reduced = {"bf16": None if native else "this CPU lacks AMX-BF16 and AVX512-BF16"}
    return decide(PATH, "openvino", requested, stored=stored, reduced=reduced,
                  validations={c.key: c for c in checks})


# --- fp32 files ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("native", "checks", "expect", "why"), [
    (True, [], "fp32", "has no check on record"),
    (True, [_check(False)], "fp32", "failed its check"),
    (True, [_check(True)], "bf16", "passed"),
    (False, [_check(True)], "fp32", "lacks AMX-BF16"),
    (True, [_check(True, backend="onnxruntime")], "fp32", "has no check on record"),  # another backend's check
])
def test_auto_takes_reduced_precision_only_with_a_passed_check(native, checks, expect, why):
    d = _decide("auto", native=native, checks=checks)
    assert d.precision == expect and why in d.reason
    assert (d.validation is not None) == (expect == "bf16")


@pytest.mark.parametrize("checks", [[], [_check(False)]])
def test_an_explicit_reduced_precision_runs_with_a_warning_when_unchecked(checks):
    with pytest.warns(ReducedPrecisionWarning, match="bf16 on openvino"):
        d = _decide("bf16", checks=checks)
    assert d.precision == "bf16" and "UNVALIDATED" in d.reason


def test_an_explicit_checked_precision_runs_quietly(recwarn):
    assert _decide("bf16", checks=[_check(True)]).precision == "bf16"
    assert not [w for w in recwarn if issubclass(w.category, ReducedPrecisionWarning)]


@pytest.mark.parametrize(("requested", "native", "message"), [
    ("bf16", False, "cannot run here: this CPU lacks"),
    ("fp16", True, "has no fp16 path"),
    ("int8", True, "medinfer quantize"),
    ("fp64", True, "precision must be one of"),
])
def test_impossible_requests_are_refused_with_the_way_forward(requested, native, message):
    with pytest.raises(InputError, match=message):
        _decide(requested, native=native)


def test_fp32_is_always_fp32():
    assert _decide("fp32", checks=[_check(True)]).precision == "fp32"


# --- files made at a reduced precision (quantized exports, fp16 plans) -----------------------------------------
def test_a_quantized_file_runs_int8_and_says_how_it_was_checked(recwarn):
    d = _decide("auto", stored="int8", checks=[_check(True, precision="int8")])
    assert d.precision == "int8" and "passed" in d.reason


def test_an_unchecked_quantized_file_warns():
    with pytest.warns(ReducedPrecisionWarning, match="has no check against fp32"):
        assert _decide("auto", stored="int8").precision == "int8"


def test_a_quantized_file_that_failed_its_check_is_refused_unless_asked_for():
    failed = [_check(False, precision="int8")]
    with pytest.raises(EngineError, match="failed its check.*precision='int8' to run it anyway"):
        _decide("auto", stored="int8", checks=failed)
    with pytest.warns(ReducedPrecisionWarning):
        assert _decide("int8", stored="int8", checks=failed).precision == "int8"


def test_a_quantized_file_has_no_fp32():
    with pytest.raises(InputError, match="holds a int8 engine only"):
        _decide("fp32", stored="int8")


# --- checks stored in engine records -------------------------------------------------------------------------
class _Pred:
    def __init__(self, probs):
        self.slice_probabilities = np.asarray(probs, np.float64)
        self.label = "ab"[int(self.slice_probabilities.mean(0).argmax())]


def test_compare_counts_slices_series_and_differences():
    a = [_Pred([[0.9, 0.1], [0.4, 0.6]]), _Pred([[0.2, 0.8]])]
    b = [_Pred([[0.8, 0.2], [0.6, 0.4]]), _Pred([[0.25, 0.75]])]
    figures = validation.compare(a, b)
    assert figures["slices"] == 3 and figures["series"] == 2
    assert figures["slice_label_agreement"] == pytest.approx(2 / 3)
    assert figures["flipped_margin_max"] == pytest.approx(0.2)  # the flipped slice: 0.6 vs 0.4 in the reference
    assert figures["max_abs_diff"] == pytest.approx(0.2)
    with pytest.raises(InputError, match="no series"):
        validation.compare([], [])


def test_checks_round_trip_through_an_onnx_export(tiny_exports, tmp_path):
    from medinfer.onnx_file import read_export

    path = tmp_path / "m.onnx"
    path.write_bytes(tiny_exports("ddc_resnet101")["onnx"].read_bytes())
    validation.store(path, _check(True))
    validation.store(path, _check(False, precision="int8", backend="onnxruntime"))
    validation.store(path, _check(False))  # replaces the first, same key
    found = validation.recorded(path)
    assert set(found) == {"openvino/bf16", "onnxruntime/int8"} and not found["openvino/bf16"].passed
    read_export(path)  # digest still verifies


def test_checks_round_trip_through_a_checkpoint(tiny_exports, tmp_path):
    import shutil

    from medinfer.checkpoint import load_checkpoint

    src = tiny_exports("ddc_resnet101")["checkpoint"]
    for f in src.parent.glob(f"{src.stem}.*"):
        shutil.copy(f, tmp_path / f.name)
    config = validation.store(tmp_path / src.name, _check(True, backend="torch", precision="fp16"))
    assert json.loads(config.read_text())["validation"]["torch/fp16"]["passed"] is True
    assert load_checkpoint(tmp_path / src.name).validation["torch/fp16"]["slices"] == 97


def test_checks_round_trip_through_a_plan_record(tiny_exports, tmp_path):
    from medinfer.engine.tensorrt_backend import PlanRecord
    from medinfer.onnx_file import read_export

    plan = tmp_path / "m.plan"
    plan.write_bytes(b"plan bytes")
    PlanRecord(tensorrt_version="10.13.0", gpu={"name": "NVIDIA H200", "compute_capability": [9, 0]},
               precision="fp16", profile={"min": 1, "opt": 8, "max": 64},
               onnx={"file": "m.onnx", "sha256": "0" * 64, "graph_sha256": "0" * 64},
               plan_sha256=hashlib.sha256(b"plan bytes").hexdigest(),
               metadata=read_export(tiny_exports("ddc_resnet101")["onnx"])[2], build={}).write(plan)
    validation.store(plan, _check(True, backend="tensorrt", precision="fp16"))
    assert validation.recorded(plan)["tensorrt/fp16"].passed
    assert PlanRecord.read(plan).validation["tensorrt/fp16"]["max_abs_diff"] == 0.003


def test_a_signed_record_is_signed_again_or_left_alone(tiny_exports, tmp_path, monkeypatch):
    from medinfer import integrity

    path = tmp_path / "m.onnx"
    path.write_bytes(tiny_exports("ddc_resnet101")["onnx"].read_bytes())
    monkeypatch.setenv(integrity.KEY_ENV, "k" * 32)
    integrity.sign(path)
    validation.store(path, _check(True))  # re-signed with the key: still loads with the key configured
    assert validation.recorded(path)["openvino/bf16"].passed
    monkeypatch.delenv(integrity.KEY_ENV)
    before = path.read_bytes()
    with pytest.raises(EngineError, match="it is signed, and changing it needs the engine key"):
        validation.store(path, _check(False))
    assert path.read_bytes() == before


def test_a_garbled_check_names_the_file(tiny_exports, tmp_path):
    from medinfer.onnx_file import VALIDATION_KEY, update_export

    path = tmp_path / "m.onnx"
    path.write_bytes(tiny_exports("ddc_resnet101")["onnx"].read_bytes())
    update_export(path, {VALIDATION_KEY: json.dumps({"openvino/bf16": {"passed": True}})})
    with pytest.raises(EngineError, match="m.onnx: its validation record lacks or garbles"):
        validation.recorded(path)
