"""``medinfer serve`` against real clients: a Triton server started by the tests (PyTriton, in the serving
environment .ci/run builds), queried with tritonclient over HTTP and gRPC and with RemoteEngine."""

from __future__ import annotations

import os
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import medinfer
from medinfer.errors import EngineError, InputError
from medinfer.serve import protocol
from medinfer.serve.process import ServerProcess, free_ports, serving_python

ROOT = Path(__file__).resolve().parents[1]


def _server(engine_path: Path, *args: str) -> ServerProcess:
    python, reason = serving_python(ROOT)
    if python is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI builds the serving environment (.venv-serve), but: {reason}")
        pytest.skip(f"no environment can run medinfer serve: {reason}")
    return ServerProcess(python, engine_path, *args)


@pytest.fixture(scope="module")
def engine_path(tiny_exports):
    return tiny_exports("ddc_resnet101")["onnx"]


@pytest.fixture(scope="module")
def served(engine_path):
    server = _server(engine_path, "--max-batch", "16")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def local(engine_path):
    return medinfer.Engine(engine_path)


pytestmark = pytest.mark.triton_server


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_remote_engine_equals_local(served, local, chest_ct, scheme):
    with medinfer.RemoteEngine(served.urls[scheme], model="ddc_resnet101") as remote:
        assert remote.class_names == local.class_names and remote.max_batch == 16
        assert remote.metadata.weights_sha256 == local.metadata.weights_sha256
        want = local.predict(chest_ct)
        got = remote.predict(chest_ct)
        assert got.label == want.label and got.files == want.files
        np.testing.assert_allclose(got.slice_probabilities, want.slice_probabilities, atol=1e-6)
        many = remote.predict_many([chest_ct, ROOT / "no-such-series", chest_ct], progress=False)
    assert [p.status for p in many] == ["ok", "error", "ok"]
    assert "no-such-series" in many[1].error
    np.testing.assert_allclose(many[2].slice_probabilities, want.slice_probabilities, atol=1e-6)


@pytest.mark.parametrize("scheme", ["http", "grpc"])
@pytest.mark.parametrize("rows", [1, 7, 23])  # 23 > max batch: Triton refuses it, RemoteEngine splits it
def test_tritonclient_equals_engine_infer(served, local, rng, scheme, rows):
    batch = rng.standard_normal((rows, *local.input_shape)).astype(np.float32)
    module = pytest.importorskip(f"tritonclient.{scheme}")
    client = module.InferenceServerClient(f"127.0.0.1:{served.http if scheme == 'http' else served.grpc}")
    request = module.InferInput(protocol.INPUT, list(batch.shape), "FP32")
    request.set_data_from_numpy(batch)
    if rows <= 16:
        out = client.infer("ddc_resnet101", [request]).as_numpy(protocol.OUTPUT)
        np.testing.assert_allclose(out, local.infer(batch), atol=1e-6)
    else:
        from tritonclient.utils import InferenceServerException

        with pytest.raises(InferenceServerException, match="batch"):
            client.infer("ddc_resnet101", [request])
    with medinfer.RemoteEngine(served.urls[scheme]) as remote:
        np.testing.assert_allclose(remote.infer(batch), local.infer(batch), atol=1e-6)


def test_concurrent_clients(served, local, chest_ct):
    want = local.predict(chest_ct).slice_probabilities
    results, errors = [], []

    def client(scheme):
        try:
            with medinfer.RemoteEngine(served.urls[scheme], concurrency=2) as remote:
                results.append(remote.predict_many([chest_ct, chest_ct], progress=False))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(s,)) for s in ("http", "grpc", "http", "grpc", "http")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for preds in results:
        for p in preds:
            np.testing.assert_allclose(p.slice_probabilities, want, atol=1e-6)


def test_malformed_requests_get_clear_errors_and_the_server_stays_up(served, local):
    import tritonclient.http as triton_http
    from tritonclient.utils import InferenceServerException

    client = triton_http.InferenceServerClient(f"127.0.0.1:{served.http}")
    c, h, w = local.input_shape
    cases = {"wrong shape": ("ddc_resnet101", np.zeros((2, c, h + 1, w), np.float32), "FP32"),
             "wrong dtype": ("ddc_resnet101", np.zeros((2, c, h, w), np.float64), "FP64"),
             "unknown model": ("no_such_model", np.zeros((2, c, h, w), np.float32), "FP32")}
    for what, (model, data, dtype) in cases.items():
        request = triton_http.InferInput(protocol.INPUT, list(data.shape), dtype)
        request.set_data_from_numpy(data)
        with pytest.raises(InferenceServerException) as err:
            client.infer(model, [request])
        assert err.value.message(), what
    with pytest.raises(EngineError, match="serves model ddc_resnet101, not resnet101"):
        medinfer.RemoteEngine(served.urls["http"], model="resnet101")
    with pytest.raises(EngineError, match="different model"):
        medinfer.RemoteEngine(served.urls["grpc"], weights_sha256="0" * 64)
    with medinfer.RemoteEngine(served.urls["http"]) as remote, pytest.raises(InputError, match="expected a batch"):
        remote.infer(np.zeros((1, c, h + 1, w), np.float32))
    assert client.is_server_ready() and served.proc.poll() is None
    good = triton_http.InferInput(protocol.INPUT, [1, c, h, w], "FP32")
    good.set_data_from_numpy(np.zeros((1, c, h, w), np.float32))
    assert client.infer("ddc_resnet101", [good]).as_numpy(protocol.OUTPUT).shape == (1, len(local.class_names))


def test_health_metrics_and_metadata(served, local):
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/ddc_resnet101/ready"):
        with urllib.request.urlopen(f"{served.urls['http']}{path}", timeout=10) as answer:
            assert answer.status == 200, path
    with medinfer.RemoteEngine(served.urls["http"]) as remote:
        remote.infer(np.zeros((3, *local.input_shape), np.float32))
        doc = remote.describe()
    assert doc["server"]["backend"] == "onnxruntime" and doc["model"] == local.metadata.to_dict()
    with urllib.request.urlopen(f"http://127.0.0.1:{served.metrics}/metrics", timeout=10) as answer:
        metrics = answer.read().decode()
    line = next(m for m in metrics.splitlines() if m.startswith("nv_inference_request_success{")
                and 'model="ddc_resnet101"' in m)
    assert float(line.rsplit(" ", 1)[1]) >= 1


def test_sigterm_shuts_down_cleanly(engine_path):
    server = _server(engine_path, "--instances", "2")
    with medinfer.RemoteEngine(server.urls["grpc"]) as remote:
        assert remote.infer(np.zeros((2, *remote.input_shape), np.float32)).shape == (2, 4)
    assert server.stop() == 0
    assert any(line.startswith("stopping") for line in server.lines)


@pytest.mark.parametrize("url", ["ftp://host:1", "http://", "grpc://:8001"])
def test_remote_engine_refuses_bad_urls(url):
    with pytest.raises(InputError, match="expected http"):
        medinfer.RemoteEngine(url)


def test_remote_engine_without_a_server_says_so():
    (port,) = free_ports(1)
    t = time.monotonic()
    with pytest.raises(EngineError, match="no ready Triton server within 1 s"):
        medinfer.RemoteEngine(f"http://127.0.0.1:{port}", timeout=1.0)
    assert time.monotonic() - t < 10


def test_serve_refuses_numpy_2_with_the_reason(engine_path, capsys):
    from medinfer.cli import main
    from medinfer.serve.server import unavailable_reason

    reason = unavailable_reason()
    if reason is None:
        pytest.skip("this environment can serve")
    assert main(["serve", "--engine", str(engine_path)]) == 1
    assert reason in capsys.readouterr().err
