"""Benchmark plumbing shared by every file in benchmarks/.

Each benchmark names its ``group`` and its ``role`` ("baseline" or "candidate") and how many items (slices,
images) one call processes. At the end of the run the candidates are reported as a speedup over the
baseline of their group measured in the same run, with items/s, and the machine they ran on; with
``--benchmark-json=PATH`` the same figures land in the JSON under ``"medinfer"``.

    pytest benchmarks/ --benchmark-json=benchmarks/results/<name>-<machine>.json
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from medinfer.bench.machine import describe, one_line

_RESULTS: list[dict] = []


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["medinfer"] = describe()


@pytest.fixture(autouse=True)
def _record_result(request):
    yield
    bench = request.node.funcargs.get("benchmark")
    if bench is None or not getattr(bench, "stats", None):
        return
    info = bench.extra_info
    mean = bench.stats.stats.mean
    _RESULTS.append({
        "test": request.node.name,
        "group": bench.group or request.node.name,
        "role": info.get("role", "candidate"),
        "label": info.get("label", request.node.name),
        "items": info.get("items", 1),
        "mean_s": mean,
        "items_per_s": info.get("items", 1) / mean if mean else None,
    })


def speedups() -> list[dict]:
    """Candidates against their group's baseline: speedup = baseline time per item / candidate's."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in _RESULTS:
        groups[r["group"]].append(r)
    rows = []
    for rs in groups.values():
        base = next((r for r in rs if r["role"] == "baseline"), None)
        for r in rs:
            speedup = None
            if base is not None and r is not base:
                speedup = (base["mean_s"] / base["items"]) / (r["mean_s"] / r["items"])
            rows.append({**r, "baseline": base["label"] if base else None, "speedup": speedup})
    return rows


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["medinfer"] = {"machine": describe(), "results": speedups()}


def pytest_terminal_summary(terminalreporter):
    rows = speedups()
    if not rows:
        return
    tr = terminalreporter
    tr.section("medinfer: speed against the same-run baseline")
    tr.write_line(f"machine: {one_line(describe())}")
    tr.write_line(f"{'group':<34} {'run':<30} {'items/s':>11} {'speedup':>8}")
    for r in rows:
        speed = "baseline" if r["role"] == "baseline" else (f"{r['speedup']:.2f}×" if r["speedup"] else "-")
        tr.write_line(f"{r['group'][:34]:<34} {r['label'][:30]:<30} {r['items_per_s']:>11.1f} {speed:>8}")


@pytest.fixture
def compare(benchmark):
    """Time one side of a :class:`medinfer.bench.cases.Comparison`: ``compare(comparison, "baseline")``."""

    def run(comparison, role: str, rounds: int = 5):
        benchmark.group = comparison.key
        label = comparison.baseline_label if role == "baseline" else comparison.candidate_label
        benchmark.extra_info.update(role=role, label=label, items=comparison.items, model=comparison.model,
                                    batch=comparison.batch)
        fn = comparison.baseline if role == "baseline" else comparison.candidate
        return benchmark.pedantic(fn, rounds=rounds, warmup_rounds=1)

    return run


@pytest.fixture(scope="session")
def artefacts():
    """Full-size models (checkpoint and ONNX), exported once per machine and cached."""
    from medinfer.bench.artefacts import model_artefacts

    return model_artefacts  # cached on disk: a second call only finds the files


@pytest.fixture(scope="session")
def chest_folder():
    from medinfer import samples

    try:
        return samples.chest_ct()
    except samples.SampleDataError as exc:
        pytest.skip(f"chest CT sample unavailable: {exc}")
