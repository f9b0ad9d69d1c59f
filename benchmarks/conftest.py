"""Benchmark plumbing shared by every file in benchmarks/.

Each benchmark names its ``group`` and its ``role`` ("baseline" or "candidate") and how many items (slices,
images) one call processes. At the end of the run the candidates are reported as a speedup over the
baseline of their group measured in the same run, with items/s, and the machine they ran on; with
``--benchmark-json=PATH`` the same figures land in the JSON under ``"medinfer"``.

    pytest benchmarks/ --benchmark-json=benchmarks/results/<name>-<machine>.json
"""

from __future__ import annotations

import datetime
import os
import platform
from collections import defaultdict

import pytest

_RESULTS: list[dict] = []


def machine_description() -> dict:
    import torch

    from medinfer import __version__, _ext
    from medinfer.info import gpus

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "gpus": [g["name"] for g in gpus()],
        "medinfer": __version__,
        "extension": _ext.native() is not None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["medinfer"] = machine_description()


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
    output_json["medinfer"] = {"machine": machine_description(), "results": speedups()}


def pytest_terminal_summary(terminalreporter):
    rows = speedups()
    if not rows:
        return
    m = machine_description()
    tr = terminalreporter
    tr.section("medinfer: speed against the same-run baseline")
    tr.write_line(f"machine: {m['cpu']}, {m['cores']} cores, GPUs: {', '.join(m['gpus']) or 'none'}; "
                  f"medinfer {m['medinfer']}, torch {m['torch']}")
    tr.write_line(f"{'group':<34} {'run':<30} {'items/s':>11} {'speedup':>8}")
    for r in rows:
        speed = "baseline" if r["role"] == "baseline" else (f"{r['speedup']:.2f}×" if r["speedup"] else "-")
        tr.write_line(f"{r['group'][:34]:<34} {r['label'][:30]:<30} {r['items_per_s']:>11.1f} {speed:>8}")
