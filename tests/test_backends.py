"""The backend registry: automatic picks, explicit requests, environment overrides, reasons."""

from __future__ import annotations

import pytest

from medinfer import backends


def test_automatic_cpu_picks():
    assert backends.select("ops", "cpu").name == "torch"
    assert backends.select("engine", "cpu").name == "onnxruntime"


def test_every_backend_explains_itself_on_every_device():
    rows = backends.report()
    assert {(r["backend"], r["device"]) for r in rows} == {(b, d) for b in backends.BACKENDS for d in backends.DEVICES}
    for r in rows:
        assert r["available"] == (r["reason"] is None)
        if not r["available"]:
            assert len(r["reason"]) > 20  # a sentence, not a code


def test_explicit_request_that_cannot_run_fails_with_the_reason():
    with pytest.raises(backends.BackendUnavailable, match="tensorrt.*cannot run on cpu: TensorRT runs on NVIDIA"):
        backends.select("engine", "cpu", "tensorrt")
    with pytest.raises(backends.BackendUnavailable, match="not a ops backend; choose one of torch, triton, cuda"):
        backends.select("ops", "cpu", "onnxruntime")


def test_environment_override(monkeypatch):
    monkeypatch.setenv("MEDINFER_ENGINE_BACKEND", "torch")
    assert backends.select("engine", "cpu").name == "torch"
    # an explicit argument wins over the environment
    assert backends.select("engine", "cpu", "onnxruntime").name == "onnxruntime"
    monkeypatch.setenv("MEDINFER_OPS_BACKEND", "cuda")
    with pytest.raises(backends.BackendUnavailable, match="from MEDINFER_OPS_BACKEND"):
        backends.select("ops", "cpu")


def test_triton_on_cpu_needs_the_interpreter(monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert "TRITON_INTERPRET=1" in backends.BACKENDS["triton"].unavailable_reason("cpu")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert backends.select("ops", "cpu", "triton").name == "triton"
    assert backends.select("ops", "cpu").name == "torch"  # the interpreter is never an automatic pick


@pytest.mark.parametrize(("role", "device", "message"), [("train", "cpu", "unknown backend role"),
                                                         ("ops", "tpu", "unknown device")])
def test_bad_role_or_device(role, device, message):
    with pytest.raises(ValueError, match=message):
        backends.select(role, device)
