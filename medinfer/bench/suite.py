"""``medinfer bench``: the benchmark suite, run on the current machine, each figure beside its same-run baseline.

``run_suite(quick=True)`` is the short version (a few minutes on two CPU cores once the models' exports are
cached); the full suite sweeps more batch sizes, adds Res-Dense Net end to end, and the GPU comparisons
where a GPU is present. The report prints as a table, saves as JSON (machine, versions, timestamp, every
row with its baseline, items/s and speedup, what was skipped and why) and plots throughput against batch
size per backend.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from medinfer.bench import cases
from medinfer.bench.machine import describe, one_line
from medinfer.bench.timer import measure

MODELS = ("ddc_resnet101", "resdense_net")
# Batch sizes of the engine sweeps (the pytest-benchmark files import these too).
SWEEPS = {"ddc_resnet101": [1, 2, 4, 8, 16, 32, 64], "resdense_net": [1, 2, 4, 8, 16]}
QUICK_SWEEPS = {"ddc_resnet101": [1, 8, 32], "resdense_net": [1, 4]}
GPU_BATCH = 128


@dataclass
class Row:
    group: str
    model: str
    batch: int | None
    items: int
    baseline: str
    candidate: str
    baseline_seconds: float  # median per call
    candidate_seconds: float
    target: str = ""
    target_speedup: float | None = None

    @property
    def baseline_items_per_s(self) -> float:
        return self.items / self.baseline_seconds

    @property
    def items_per_s(self) -> float:
        return self.items / self.candidate_seconds

    @property
    def speedup(self) -> float:
        return self.baseline_seconds / self.candidate_seconds

    @property
    def met(self) -> bool | None:
        return None if self.target_speedup is None else self.speedup >= self.target_speedup

    def to_json(self) -> dict:
        return {**asdict(self), "baseline_items_per_s": self.baseline_items_per_s, "items_per_s": self.items_per_s,
                "speedup": self.speedup, "met": self.met}


@dataclass
class Report:
    machine: dict
    rows: list[Row]
    skipped: list[cases.Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    derived: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"machine": self.machine, "rows": [r.to_json() for r in self.rows],
                "skipped": [asdict(s) for s in self.skipped], "derived": self.derived, "notes": self.notes}

    def format_table(self) -> str:
        lines = [f"machine: {one_line(self.machine)}", ""]
        header = f"{'comparison':<34} {'baseline':<36} {'slices/s':>9}  {'medinfer':<34} {'slices/s':>9} {'speedup':>8}"
        lines += [header, "-" * len(header)]
        for r in self.rows:
            mark = "" if r.met is None else ("  ✓ target" if r.met else "  ✗ target")
            lines.append(f"{r.group[:34]:<34} {r.baseline[:36]:<36} {r.baseline_items_per_s:>9.1f}  "
                         f"{r.candidate[:34]:<34} {r.items_per_s:>9.1f} {r.speedup:>7.2f}×{mark}")
        for r in self.rows:
            if r.target:
                lines.append(f"target, {r.group}: {r.target}: {'met' if r.met else 'NOT met'} ({r.speedup:.2f}×)")
        lines += [f"{k}: {v}" for k, v in self.derived.items()]
        lines += [f"skipped {s.group}: {s.reason}" for s in self.skipped]
        lines += self.notes
        return "\n".join(lines)

    def plot_throughput(self, path: str | Path) -> Path | None:
        """Slices/s against batch size, one line per backend, one panel per model."""
        sweeps = [r for r in self.rows if r.batch is not None]
        models = sorted({r.model for r in sweeps})
        if not models:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4), squeeze=False)
        for ax, model in zip(axes[0], models, strict=True):
            lines: dict[str, list[tuple[int, float]]] = {}
            for r in (r for r in sweeps if r.model == model):
                lines.setdefault(_backend(r.baseline), []).append((r.batch, r.baseline_items_per_s))
                lines.setdefault(_backend(r.candidate), []).append((r.batch, r.items_per_s))
            for label, points in lines.items():
                xs, ys = zip(*sorted(set(points)), strict=True)
                ax.plot(xs, ys, marker="o", label=label)
            ax.set(xscale="log", xlabel="batch size", ylabel="slices / s", title=model)
            ax.set_xticks(sorted({r.batch for r in sweeps if r.model == model}))
            ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.minorticks_off()
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(one_line(self.machine), fontsize=8)
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path


def _backend(label: str) -> str:
    return label.split(",")[0]


def run(comparisons: list[cases.Comparison], *, min_time: float, progress: bool | None = None) -> list[Row]:
    from medinfer.progress import progress_bar

    rows = []
    bar = progress_bar(comparisons, desc="benchmarks", unit="comparison", progress=progress)
    for c in bar:
        base, cand = measure([c.baseline, c.candidate], min_time=min_time)
        rows.append(Row(group=c.group, model=c.model, batch=c.batch, items=c.items, baseline=c.baseline_label,
                        candidate=c.candidate_label, baseline_seconds=base.seconds, candidate_seconds=cand.seconds,
                        target=c.target_text, target_speedup=c.target_speedup))
    return rows


def run_suite(quick: bool = False, progress: bool | None = None) -> Report:
    from medinfer.bench.artefacts import model_artefacts
    from medinfer.models import get_spec
    from medinfer.samples import chest_ct

    folder = chest_ct()
    notes, comparisons, skipped = [], [], []
    arts = {}
    for name in MODELS:
        arts[name] = model_artefacts(name, progress=progress)
        if arts[name].made_seconds:
            notes.append(f"one-off: {name} saved and exported in {arts[name].made_seconds:.0f} s "
                         f"(cached in {arts[name].onnx.parent})")
    sweeps = QUICK_SWEEPS if quick else SWEEPS
    comparisons.append(cases.preprocess_comparison(folder, get_spec("resdense_net").preprocess))
    for name in MODELS:
        comparisons += cases.engine_comparisons(arts[name], sweeps[name])
    for name in MODELS[:1] if quick else MODELS:
        comparisons += [cases.end_to_end_comparison(arts[name], folder), cases.overhead_comparison(arts[name], folder)]
    if not quick:
        for name in MODELS:
            gpu, skip = cases.gpu_comparisons(arts[name], GPU_BATCH)
            comparisons += gpu
            skipped += skip
    rows = run(comparisons, min_time=0.5 if quick else 2.0, progress=progress)
    report = Report(describe(), rows, skipped, notes)
    _derive(report)
    return report


def _derive(report: Report) -> None:
    """Figures computed from rows: end-to-end vs model-only throughput, and the GPU FLOP-roofline fraction."""
    for model in MODELS:
        e2e = next((r for r in report.rows if r.group == f"end-to-end {model}"), None)
        raw = next((r for r in report.rows if r.group == f"runtime overhead {model}"), None)
        if e2e and raw:
            report.derived[f"{model}: end-to-end / model-only throughput"] = round(
                e2e.items_per_s / raw.baseline_items_per_s, 3)
    gpu_rows = [r for r in report.rows if r.model == "resdense_net" and "GPU" in r.group]
    if gpu_rows and report.machine["gpus"]:
        from medinfer.models.summary import summarize

        peak = cases.peak_fp16_tflops(report.machine["gpus"][0])
        best = max(gpu_rows, key=lambda r: r.items_per_s)
        flops = summarize("resdense_net").flops
        achieved = best.items_per_s * flops / 1e12
        report.derived["resdense_net fp16: achieved TFLOP/s"] = round(achieved, 1)
        if peak:
            report.derived["resdense_net fp16: fraction of the fp16 FLOP roofline"] = round(achieved / peak, 3)
