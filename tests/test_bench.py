"""The benchmark machinery of ``medinfer bench``: the interleaved timer, the comparisons (each baseline does
the same work as its candidate and gets the same answer), the report and the command, on tiny models."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest

from medinfer.bench import cases, suite, timer
from medinfer.bench.artefacts import Artefacts
from medinfer.bench.timer import measure
from medinfer.cli import main
from medinfer.models import get_spec


def test_measure_interleaves_and_counts_rounds():
    calls = []
    timings = measure([lambda: calls.append("a"), lambda: calls.append("b")], min_time=10.0, max_rounds=7,
                      warmup=2)
    assert calls == ["a", "a", "b", "b"] + ["a", "b"] * 7
    assert [t.rounds for t in timings] == [7, 7]


class FakeClock:
    """The timer's clock, advanced only by the timed calls: timings that a busy machine cannot disturb.
    Durations are multiples of 2⁻⁸ s, exact in binary, so sums and differences compare exactly."""

    def __init__(self):
        self.now = 0.0

    def call_taking(self, seconds: float):
        def call():
            self.now += seconds

        return call


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(timer, "time", types.SimpleNamespace(perf_counter=lambda: fake.now))
    return fake


TICK = 2.0**-8


def test_measure_honours_min_rounds(clock):
    # min_time is reached after two rounds, min_rounds asks for four (well short of 3 × min_time).
    timings = measure([clock.call_taking(TICK), lambda: None], min_time=2 * TICK, min_rounds=4, warmup=0)
    assert [t.rounds for t in timings] == [4, 4]


def test_measure_stops_early_for_slow_calls(clock):
    # One call fills 3 × min_time: no second round, whatever min_rounds says.
    timings = measure([clock.call_taking(3 * TICK), lambda: None], min_time=TICK, min_rounds=5, warmup=0)
    assert timings[0].rounds == 1 and timings[0].seconds >= 3 * TICK and timings[0].stdev == 0.0


def test_run_report_table_json_and_plot(clock, tmp_path):
    comparisons = [
        cases.Comparison(group="toy throughput", model="toy", batch=b, items=b, baseline_label=f"slow, batch {b}",
                         baseline=clock.call_taking(4 * TICK * b), candidate_label=f"fast, batch {b}",
                         candidate=clock.call_taking(TICK * b))
        for b in (1, 3)
    ] + [cases.Comparison(group="toy target", items=2, baseline_label="slow", baseline=clock.call_taking(2 * TICK),
                          candidate_label="slower", candidate=clock.call_taking(6 * TICK), target_speedup=1.0,
                          target_text="no slower")]
    rows = suite.run(comparisons, min_time=12 * TICK, progress=False)
    assert [r.batch for r in rows] == [1, 3, None]
    assert rows[0].speedup > 1.5 and rows[1].items_per_s == pytest.approx(3 / rows[1].candidate_seconds)
    assert rows[2].met is False and rows[0].met is None
    report = suite.Report({"cpu": "test CPU", "cores": 2, "gpus": [], "medinfer": "0", "timestamp": "now",
                           "versions": {"torch": "t", "onnxruntime": "o"}}, rows)
    table = report.format_table()
    assert "test CPU, 2 cores, no GPU" in table and "✗ target" in table and "toy target: no slower: NOT met" in table
    doc = json.loads(json.dumps(report.to_json()))
    assert doc["rows"][0]["baseline"] == "slow, batch 1" and doc["rows"][0]["speedup"] == rows[0].speedup
    png = report.plot_throughput(tmp_path / "throughput.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_artefacts(tiny_exports):
    """Both models, tiny, as model_artefacts gives them at full size."""
    return {name: Artefacts(name, tiny_exports(name)["checkpoint"], tiny_exports(name)["onnx"], 0.0)
            for name in suite.MODELS}


@pytest.mark.parametrize("name", suite.MODELS)
def test_baselines_agree_with_their_candidates(tiny_artefacts, chest_ct, name):
    art = tiny_artefacts[name]
    end_to_end = cases.end_to_end_comparison(art, chest_ct)
    naive, (prediction,) = end_to_end.baseline(), end_to_end.candidate()
    assert end_to_end.items == len(prediction.slice_probabilities) == 64
    np.testing.assert_allclose(naive, list(prediction.probabilities.values()), atol=1e-4)

    overhead = cases.overhead_comparison(art, chest_ct)
    raw = np.concatenate(overhead.baseline())
    (prediction,) = overhead.candidate()
    np.testing.assert_allclose(raw, prediction.slice_probabilities, atol=1e-5)

    for c in cases.engine_comparisons(art, [1, 5]):
        np.testing.assert_allclose(c.baseline(), c.candidate(), atol=1e-4)
        assert c.baseline().shape[0] == c.items == c.batch

    pre = cases.preprocess_comparison(chest_ct, get_spec(name).preprocess)
    assert pre.baseline() == pre.candidate() == 64


def test_bench_command_quick(tiny_artefacts, chest_ct, tmp_path, monkeypatch, capsys):
    import medinfer.bench.artefacts as artefacts

    monkeypatch.setattr(artefacts, "model_artefacts", lambda name, progress=None: tiny_artefacts[name])
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    assert main(["bench", "--quick", "--json", str(out_json), "--plot", str(out_png)]) == 0
    text = capsys.readouterr().out
    assert "end-to-end ddc_resnet101" in text and "runtime overhead ddc_resnet101" in text
    doc = json.loads(out_json.read_text())
    groups = {r["group"] for r in doc["rows"]}
    assert {"ddc_resnet101 latency", "resdense_net throughput", "end-to-end ddc_resnet101"} <= groups
    assert all(r["baseline"] and r["items_per_s"] > 0 and r["speedup"] > 0 for r in doc["rows"])
    assert doc["machine"]["cores"] >= 1 and "ddc_resnet101: end-to-end / model-only throughput" in doc["derived"]
    assert out_png.stat().st_size > 0
