"""Serving overhead: slices/s through ``medinfer serve`` (a real Triton server, PyTriton, on this machine) with
1, 4 and 16 concurrent RemoteEngine clients, against the same engine classifying the same series locally
(``Engine.predict_many``, the baseline). Every run classifies 16 copies of the real chest CT (64 slices each),
loaded once as series so that disk reads are not what is measured; the server's dynamic batcher merges the
clients' batches.

    pytest benchmarks/bench_serve.py --benchmark-json=benchmarks/results/serve-<machine>.json

Target (issue 14): at 16 clients, overhead ≤ 15 % (speedup ≥ 0.87 against local).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import medinfer
from medinfer.serve.process import ServerProcess, serving_python

MODEL = "ddc_resnet101"
SERIES = 16
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(artefacts, chest_folder):
    python, reason = serving_python(ROOT)
    if python is None:
        pytest.skip(f"no environment can run medinfer serve: {reason}")
    art = artefacts(MODEL)
    local = medinfer.Engine(art.onnx)
    series = [medinfer.load_series(chest_folder)] * SERIES
    server = ServerProcess(python, art.onnx, "--max-batch", str(local.preferred_batch))
    yield {"local": local, "series": series, "url": server.urls["grpc"], "slices": sum(len(s) for s in series)}
    server.stop()


def _clients(url: str, series: list, clients: int) -> None:
    remotes = [medinfer.RemoteEngine(url, concurrency=2) for _ in range(clients)]
    shares = [series[i::clients] for i in range(clients)]
    errors: list[BaseException] = []

    def run(remote, share):
        try:
            assert all(p.ok for p in remote.predict_many(share, progress=False))
        except BaseException as exc:  # re-raised in the benchmark's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=pair) for pair in zip(remotes, shares, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for remote in remotes:
        remote.close()
    if errors:
        raise errors[0]


@pytest.mark.parametrize("clients", [0, 1, 4, 16])  # 0: the local baseline
def test_serve(benchmark, setup, clients):
    benchmark.group = f"serve {MODEL} chest CT x{SERIES}"
    label = "local Engine.predict_many" if clients == 0 else f"serve, {clients} RemoteEngine client(s)"
    benchmark.extra_info.update(role="baseline" if clients == 0 else "candidate", label=label, items=setup["slices"],
                                model=MODEL, clients=clients)
    if clients == 0:
        fn = lambda: setup["local"].predict_many(setup["series"], progress=False)  # noqa: E731
    else:
        fn = lambda: _clients(setup["url"], setup["series"], clients)  # noqa: E731
    benchmark.pedantic(fn, rounds=3, warmup_rounds=1)
