"""A whole archive: 200 full-size series (512² slices, 8-16 each, a few broken, the special study with a
localizer and two reconstructions) cut from the real chest CT, written once per session into a temporary folder.

* throughput: ``medinfer.archive.predict_archive`` over the archive, discovery to the last record written,
  vs the model alone (ONNX Runtime's ``session.run`` over full, already preprocessed batches) on as many
  slices. Res-Dense Net (256², the chest-CT task's model) and DDC-ResNet101 (64²: its model cost per slice is
  far smaller, so loading and preparing weigh more). Target: ≥ 0.9× the model-only throughput.
* memory: peak RSS of an archive run over 20 series vs over 200 (same kind of archive), each in a fresh
  process. Target: the 200-series peak ≤ 1.2× the 20-series one.

    pytest benchmarks/bench_archive.py --benchmark-json=benchmarks/results/archive-<machine>.json

Memory figures, the throughput ratios and where the archive run's time went are in each candidate's
``extra_info``, in the JSON under ``medinfer.archive``, and in the terminal summary. The load average before
and after each measurement is recorded beside it, and the process's CPU seconds: on a shared machine they say
how much to trust the wall-time ratio (the two sides run one after the other, minutes apart).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from medinfer import cpu
from medinfer.bench import archive as bench
from medinfer.bench.machine import describe, one_line

SERIES = 200
MEMORY_SERIES = (20, SERIES)
MODELS = ("resdense_net", "ddc_resnet101")
# Memory runs classify with DDC-ResNet101 (~1 min for 200 series here, Res-Dense Net ~8 min); the stream's
# bound (queued series, two batches) does not depend on the model.
MEMORY_MODEL = "ddc_resnet101"


class _Report:
    """Collects the figures of this file and adds them to the JSON and the terminal summary."""

    name = "medinfer-archive-report"

    def __init__(self) -> None:
        self.figures: dict = {"isa": [n for n, on in cpu.features().items() if on], "archives": {}, "throughput": {},
                              "memory": {}}

    @pytest.hookimpl(trylast=True)
    def pytest_benchmark_update_json(self, config, benchmarks, output_json):
        output_json.setdefault("medinfer", {})["archive"] = self.figures

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter):
        tr, f = terminalreporter, self.figures
        if not (f["throughput"] or f["memory"]):
            return
        tr.section("medinfer: archive throughput and memory")
        tr.write_line(f"machine: {one_line(describe())}; ISA: {' '.join(f['isa']) or 'unknown'}")
        for name, a in f["archives"].items():
            kinds = ", ".join(f"{n} {s}" for s, n in a["expected"].items())
            tr.write_line(f"archive {name}: {a['series']} series ({kinds}), {a['slices']} slices to classify, "
                          f"{a['mib']} MiB, written in {a['write_seconds']} s")
        for model, t in f["throughput"].items():
            if "ratio" not in t:
                continue
            s = t["stages"]
            tr.write_line(f"{model}: archive {t['archive_slices_per_s']:.2f} slices/s vs model-only "
                          f"{t['model_only_slices_per_s']:.2f} slices/s = {t['ratio']:.3f}× "
                          f"(target ≥ {bench.TARGET_RATIO}×: {'met' if t['met'] else 'NOT met'}); CPU seconds "
                          f"{t['model_only_cpu_s']:.0f} vs {t['archive_cpu_s']:.0f} = {t['cpu_ratio']:.3f}×")
            tr.write_line(f"    load average (1, 5, 15 min): model-only {t['model_only_loadavg'][0]} -> "
                          f"{t['model_only_loadavg'][1]}, archive {t['loadavg_before']} -> {t['loadavg_after']}")
            tr.write_line(f"    archive run {t['archive_seconds']:.1f} s: engine {s['infer_s']} s "
                          f"(busy {s['engine_busy_fraction']:.1%}, {s['engine_slices_per_s_in_stream']} slices/s "
                          f"in the stream), loading {s['load_s']} s on the loader threads, preparation "
                          f"{s['preprocess_s']} s in the packer")
        m = f["memory"]
        if "ratio" in m:
            tr.write_line(f"memory ({m['model']}): peak RSS {m['runs']['20']['peak_rss_mib']:.0f} MiB over 20 series, "
                          f"{m['runs'][str(SERIES)]['peak_rss_mib']:.0f} MiB over {SERIES} = {m['ratio']:.3f}× "
                          f"(target ≤ {bench.TARGET_RSS_RATIO}×: {'met' if m['met'] else 'NOT met'}); above the "
                          f"open engine: {m['growth_mib']['20']:.0f} vs {m['growth_mib'][str(SERIES)]:.0f} MiB")


@pytest.fixture(scope="module")
def report(request):
    manager = request.config.pluginmanager
    plugin = manager.get_plugin(_Report.name)
    if plugin is None:
        plugin = _Report()
        manager.register(plugin, _Report.name)
    return plugin


@pytest.fixture(scope="module")
def workdir():
    """A temporary folder for this file's archives, manifests and results files (~1.3 GB), removed after."""
    path = Path(tempfile.mkdtemp(prefix="medinfer-bench-archive-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def archives(workdir, chest_folder, report):
    made = {}

    def get(n: int) -> bench.Archive:
        if n not in made:
            made[n] = bench.make_archive(workdir, n, source=chest_folder)
            report.figures["archives"][str(n)] = made[n].to_json()
        return made[n]

    return get


def _model(artefacts, name: str):
    try:
        return artefacts(name)
    except Exception as exc:  # exporting a full-size model needs torch and onnx; report, do not fail the file
        pytest.skip(f"{name}: no full-size ONNX artefact ({type(exc).__name__}: {exc})")


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def test_peak_rss(artefacts, archives, workdir, report):
    """Peak RSS of a fresh process classifying 20 vs 200 series."""
    art = _model(artefacts, MEMORY_MODEL)
    runs, loads = {}, {}
    for n in MEMORY_SERIES:
        archive = archives(n)
        before = _loadavg()
        runs[str(n)] = bench.peak_rss(art.onnx, archive.root, workdir / f"rss-{n}.jsonl")
        loads[str(n)] = [before, _loadavg()]
        assert runs[str(n)]["slices"] == archive.slices
    small, large = (runs[str(n)] for n in MEMORY_SERIES)
    ratio = large["peak_rss_mib"] / small["peak_rss_mib"]
    report.figures["memory"] = {
        "model": MEMORY_MODEL, "runs": runs, "loadavg": loads, "ratio": round(ratio, 3),
        "growth_mib": {k: round(r["peak_rss_mib"] - r["engine_loaded_rss_mib"], 1) for k, r in runs.items()},
        "target": f"peak over {SERIES} series ≤ {bench.TARGET_RSS_RATIO}× the peak over 20",
        "met": ratio <= bench.TARGET_RSS_RATIO,
    }


@pytest.fixture(scope="module")
def throughput(artefacts, archives, chest_folder, workdir):
    made = {}

    def get(model: str):
        if model not in made:
            runs: list[bench.ArchiveRun] = []
            made[model] = (bench.throughput_comparison(_model(artefacts, model), archives(SERIES), chest_folder,
                                                       workdir, runs), runs)
        return made[model]

    return get


@pytest.mark.parametrize("role", ["baseline", "candidate"])
@pytest.mark.parametrize("model", MODELS)
def test_archive_throughput(benchmark, throughput, report, model, role):
    comparison, runs = throughput(model)
    benchmark.group = comparison.key
    label = comparison.baseline_label if role == "baseline" else comparison.candidate_label
    benchmark.extra_info.update(role=role, label=label, items=comparison.items, model=model)
    before, cpu = _loadavg(), time.process_time()
    # One round each: Res-Dense Net takes minutes per side on two cores. The engine is warm (one batch ran).
    benchmark.pedantic(comparison.baseline if role == "baseline" else comparison.candidate, rounds=1,
                       warmup_rounds=0)
    # CPU seconds of this process (all its threads): less sensitive than wall time to other work on the machine.
    cpu, after = time.process_time() - cpu, _loadavg()
    benchmark.extra_info.update(loadavg_before=before, loadavg_after=after, cpu_s=round(cpu, 2))
    figures = report.figures["throughput"].setdefault(model, {})
    seconds = benchmark.stats.stats.mean
    if role == "baseline":
        figures.update(model_only_seconds=seconds, model_only_slices_per_s=comparison.items / seconds,
                       model_only_cpu_s=cpu, model_only_loadavg=[before, after])
        return
    run = runs[-1]
    figures.update(archive_seconds=seconds, archive_slices_per_s=comparison.items / seconds, archive_cpu_s=cpu,
                   slices=comparison.items, counts=run.counts, stages=run.stages, loadavg_before=before,
                   loadavg_after=after)
    benchmark.extra_info.update(counts=run.counts, stages=run.stages)
    if "model_only_slices_per_s" in figures:
        ratio = figures["archive_slices_per_s"] / figures["model_only_slices_per_s"]
        cpu_ratio = figures["model_only_cpu_s"] / cpu  # same slices on both sides
        figures.update(ratio=round(ratio, 3), cpu_ratio=round(cpu_ratio, 3), target=comparison.target_text,
                       met=ratio >= bench.TARGET_RATIO)
        benchmark.extra_info.update(throughput_ratio=round(ratio, 3), cpu_ratio=round(cpu_ratio, 3),
                                    target=comparison.target_text,
                                    model_only_slices_per_s=figures["model_only_slices_per_s"])
    if report.figures["memory"]:
        memory = report.figures["memory"]
        benchmark.extra_info.update(memory={k: memory[k] for k in ("model", "ratio", "growth_mib", "met")} | {
            "peak_rss_mib": {n: r["peak_rss_mib"] for n, r in memory["runs"].items()}})
    # The ratio compares like with like only if the archive run classified exactly the slices timed alone.
    assert run.slices == comparison.items, run.counts
