"""The OpenVINO engine against real OpenVINO: fp32 parity with ONNX Runtime, bf16 only where checked, hints,
asynchronous requests, threads from the CPU affinity, and the registry's automatic choice."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from medinfer import backends, cpu, validation
from medinfer.engine import Engine
from medinfer.errors import EngineError, InputError
from medinfer.info import usable_cores

pytestmark = pytest.mark.openvino
if backends.BACKENDS["openvino"].unavailable_reason("cpu"):
    pytest.skip(backends.BACKENDS["openvino"].unavailable_reason("cpu"), allow_module_level=True)

MODELS = ("ddc_resnet101", "resdense_net")
NATIVE_BF16 = cpu.native_bf16() is not None


@pytest.fixture
def export(tiny_exports, tmp_path, request):
    """A private copy of a tiny export (tests write checks into it)."""
    path = tmp_path / "m.onnx"
    shutil.copy(tiny_exports(request.param)["onnx"], path)
    return path


@pytest.mark.parametrize("export", MODELS, indirect=True)
@pytest.mark.parametrize("batch", [1, 3, 7])
def test_fp32_matches_onnxruntime(export, rng, batch):
    ov, ort = Engine(export, backend="openvino", precision="fp32"), Engine(export, backend="onnxruntime")
    x = rng.standard_normal((batch, *ov.input_shape)).astype(np.float32)
    np.testing.assert_allclose(ov.infer(x), ort.infer(x), atol=1e-5)  # fp32: both accumulate in fp32
    np.testing.assert_allclose(ov.submit(x).result(), ort.infer(x), atol=1e-5)


@pytest.mark.parametrize("export", ["ddc_resnet101"], indirect=True)
def test_requests_run_concurrently_and_keep_their_batches_apart(export, rng):
    engine = Engine(export, backend="openvino", precision="fp32")
    assert engine.concurrency >= 1
    batches = [rng.standard_normal((n, *engine.input_shape)).astype(np.float32) for n in (2, 5, 1, 4, 3, 6)]
    futures = [engine.submit(b) for b in batches]  # more than there are requests: submit waits for a free one
    for b, f in zip(batches, futures, strict=True):
        np.testing.assert_allclose(f.result(), engine.infer(b), atol=1e-6)


@pytest.mark.parametrize("export", ["ddc_resnet101"], indirect=True)
def test_threads_come_from_the_cpu_affinity(export):
    engine = Engine(export, backend="openvino")
    assert engine.threads == usable_cores()
    for hint in ("latency", "throughput"):
        compiled = engine.compiled(hint).model
        assert compiled.get_property("INFERENCE_NUM_THREADS") == usable_cores()
        assert str(compiled.get_property("PERFORMANCE_HINT")).upper().endswith(hint.upper())


@pytest.mark.parametrize("export", ["resdense_net"], indirect=True)
def test_predict_many_equals_onnxruntime_on_the_chest_ct(export, chest_ct):
    ov, ort = Engine(export, backend="openvino", precision="fp32"), Engine(export, backend="onnxruntime")
    got, want = ov.predict_many([chest_ct, chest_ct]), ort.predict_many([chest_ct, chest_ct])
    one = ov.predict(chest_ct)  # the latency compilation
    for g in [*got, one]:
        assert g.ok and g.label == want[0].label
        np.testing.assert_allclose(g.slice_probabilities, want[0].slice_probabilities, atol=1e-5)


@pytest.mark.parametrize("export", ["ddc_resnet101"], indirect=True)
def test_auto_is_fp32_until_bf16_passes_its_check(export, chest_ct):
    engine = Engine(export, backend="openvino")
    assert engine.precision == "fp32"
    assert ("no check on record" if NATIVE_BF16 else "lacks AMX-BF16") in engine.precision_reason
    assert Engine(export).backend == "onnxruntime"  # nothing checked: the registry keeps ONNX Runtime
    if not NATIVE_BF16:
        with pytest.raises(InputError, match="bf16 on openvino cannot run here"):
            Engine(export, backend="openvino", precision="bf16")
        return
    with pytest.warns(validation.ReducedPrecisionWarning, match="bf16 on openvino"):
        bf16 = Engine(export, backend="openvino", precision="bf16")
    reference = Engine(export, backend="onnxruntime", precision="fp32")
    series = [chest_ct]
    check = validation.validate(bf16, reference, series, data="chest CT")
    # bf16 keeps 8 bits of mantissa: probabilities move by ~1e-3, labels stay.
    assert check.passed and check.max_abs_diff < 0.02 and check.slice_label_agreement >= 0.99
    validation.store(export, check)
    auto = Engine(export)
    assert (auto.backend, auto.precision) == ("openvino", "bf16") and "passed" in auto.precision_reason
    assert auto.describe()["validation"]["slices"] == 64

    failed = validation.validate(bf16, reference, series, data="chest CT", max_diff=0.0, min_agreement=1.0)
    if failed.max_abs_diff > 0:  # a zero difference cannot fail a zero threshold
        validation.store(export, failed)
        again = Engine(export, backend="openvino")
        assert again.precision == "fp32" and "failed its check" in again.precision_reason
        assert Engine(export).backend == "onnxruntime"


@pytest.mark.parametrize("export", ["ddc_resnet101"], indirect=True)
def test_a_damaged_export_is_refused_before_openvino_reads_it(export):
    data = bytearray(export.read_bytes())
    data[len(data) // 2] ^= 0xFF
    export.write_bytes(bytes(data))
    with pytest.raises(EngineError, match="m.onnx"):
        Engine(export, backend="openvino")


def test_openvino_is_refused_for_other_files_and_devices(tiny_exports):
    with pytest.raises(EngineError, match=r"cannot run this file \(a checkpoint\)"):
        Engine(tiny_exports("ddc_resnet101")["checkpoint"], backend="openvino")
    with pytest.raises(backends.BackendUnavailable, match="OpenVINO runs on the CPU here"):
        Engine(tiny_exports("ddc_resnet101")["onnx"], backend="openvino", device="cuda")


def test_info_says_what_runs_an_engine_and_why(tiny_exports, capsys):
    from medinfer.cli import main

    assert main(["info", str(tiny_exports("ddc_resnet101")["onnx"]), "--backend", "openvino"]) == 0
    out = capsys.readouterr().out
    assert "runs on      openvino, cpu, fp32" in out and "checks against fp32 on record" in out
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "engine files on the CPU" in out and "bf16 natively" in out
