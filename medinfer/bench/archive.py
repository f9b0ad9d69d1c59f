"""Archive-scale benchmarks (``benchmarks/bench_archive.py``): a synthetic archive cut from the real chest CT,
classified by :func:`medinfer.archive.predict_archive`, against the model alone on as many slices; and the peak
memory of a run, measured in a fresh process.

* :func:`make_archive` writes the archive (:func:`medinfer.phantom.synthesize_archive`) and its manifest beside
  it, not in it.
* :func:`throughput_comparison`: baseline ONNX Runtime's ``session.run`` over full, already preprocessed batches
  of the engine's batch size (:func:`medinfer.bench.baselines.onnxruntime_prebatched`), as many slices as the
  archive run classifies; candidate ``predict_archive`` over the whole archive, from discovery to the last
  record written. Its ``stages`` say where the archive run's time went (from the records' timings).
* :func:`peak_rss`: a fresh Python process opens the engine, classifies the archive and reports its peak
  resident set (VmHWM) as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medinfer.bench.artefacts import Artefacts
from medinfer.bench.baselines import onnxruntime_prebatched
from medinfer.bench.cases import Comparison, cpu_engine

# The archive of the issue: >= 200 full-size series of 8-16 slices, a few broken, the special study.
ARCHIVE = {"slices": (8, 16), "broken": 3, "special_study": True, "size": None, "seed": 0}
TARGET_RATIO = 0.9  # archive throughput / model-only throughput
TARGET_RSS_RATIO = 1.2  # peak RSS over 200 series / over 20




@dataclass
class Archive:
    """A synthetic archive on disk: ``root`` holds only the studies; the manifest lies beside it."""

    root: Path
    manifest_path: Path
    series: int
    expected: Counter  # expected status -> series
    slices: int  # slices of the series expected to be classified
    bytes: int
    write_seconds: float

    def to_json(self) -> dict:
        return {"root": str(self.root), "manifest": str(self.manifest_path), "series": self.series,
                "expected": dict(self.expected), "slices": self.slices, "mib": round(self.bytes / 2**20, 1),
                "write_seconds": round(self.write_seconds, 1)}


def make_archive(dest: str | Path, n_series: int, *, progress: bool | None = False, **options) -> Archive:
    """Write ``n_series`` series under ``dest/archive-<n>/`` (options: :data:`ARCHIVE`, overridable) and the
    manifest to ``dest/manifest-<n>.json``."""
    from medinfer.phantom import synthesize_archive

    dest = Path(dest)
    root, manifest_path = dest / f"archive-{n_series}", dest / f"manifest-{n_series}.json"
    start = time.perf_counter()
    manifest = synthesize_archive(root, n_series, **{**ARCHIVE, **options}, progress=progress)
    seconds = time.perf_counter() - start
    manifest.write(manifest_path)
    size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    ok = manifest.by_expected("ok")
    return Archive(root, manifest_path, len(manifest.series), Counter(s.expected for s in manifest.series),
                   sum(s.slices for s in ok), size, seconds)


def prebatched(engine, folder: str | Path, slices: int) -> list[np.ndarray]:
    """``slices`` slices as full batches of the engine's batch size (the last one the remainder), preprocessed
    from the chest CT in ``folder`` by the series batcher and reused cyclically: what the model alone is timed on."""
    from medinfer.io import load_series
    from medinfer.runtime import SeriesBatcher

    size = engine.preferred_batch
    with SeriesBatcher(engine.preprocess, size).run([load_series(folder)]) as run:
        full = [b.data[: b.count].copy() for b in run if b.count == size]
    if not full:
        raise ValueError(f"{folder}: fewer slices than one batch of {size}")
    batches = [full[i % len(full)] for i in range(slices // size)]
    if slices % size:
        batches.append(full[0][: slices % size])
    return batches


@dataclass
class ArchiveRun:
    """One timed ``predict_archive``: its summary and where the time went (the records' timings, summed)."""

    seconds: float = 0.0
    counts: dict = field(default_factory=dict)
    slices: int = 0
    stages: dict = field(default_factory=dict)


def classify_archive(engine, root: Path, output: Path) -> ArchiveRun:
    """``predict_archive`` over ``root`` into ``output`` (a new .jsonl), timed from discovery to the last record."""
    from medinfer.archive import predict_archive

    load = prep = infer = 0.0

    def on_record(_, record: dict) -> None:
        nonlocal load, prep, infer
        t = record.get("timings") or {}
        load += t.get("load", 0.0)
        prep += t.get("preprocess", 0.0)
        infer += t.get("infer", 0.0)

    start = time.perf_counter()
    summary = predict_archive([root], engine, output=output, progress=False, on_record=on_record)
    seconds = time.perf_counter() - start
    busy = infer / seconds if seconds else 0.0
    return ArchiveRun(seconds, dict(summary.counts), summary.slices, stages={
        # Loader threads' time reading pixels (2 threads: up to 2 s per second); discovery is not in it.
        "load_s": round(load, 2),
        # The packer's C++ batch preparation.
        "preprocess_s": round(prep, 2),
        # The engine, in the caller's thread: the rest of the wall time it waited for a batch.
        "infer_s": round(infer, 2),
        "engine_busy_fraction": round(busy, 3),
        "engine_slices_per_s_in_stream": round(summary.slices / infer, 2) if infer else None,
    })


def throughput_comparison(art: Artefacts, archive: Archive, chest_folder: str | Path, workdir: str | Path,
                          runs: list[ArchiveRun] | None = None) -> Comparison:
    """Model-only (baseline) vs the archive run (candidate) on ``archive.slices`` slices. Each candidate call
    writes a new results file in ``workdir`` and appends its :class:`ArchiveRun` to ``runs``."""
    engine = cpu_engine(art.onnx)
    batches = prebatched(engine, chest_folder, archive.slices)
    engine.infer(batches[0])  # the session's first run allocates its arena: not part of either side
    runs = [] if runs is None else runs

    def candidate() -> ArchiveRun:
        out = Path(workdir) / f"results-{art.name}-{len(runs)}.jsonl"
        run = classify_archive(engine, archive.root, out)
        runs.append(run)
        return run

    return Comparison(
        group=f"archive {art.name}", model=art.name, batch=None, items=archive.slices,
        baseline_label=f"onnxruntime session.run, pre-batched ×{engine.preferred_batch}",
        baseline=lambda: onnxruntime_prebatched(engine.session, batches),
        candidate_label=f"predict_archive, {archive.series} series",
        candidate=candidate, target_speedup=TARGET_RATIO,
        target_text=f"archive ≥ {TARGET_RATIO}× model-only throughput",
    )


# Peak memory in a fresh process ----------------------------------------------------------------------------

# What the fresh process runs (``python -c``): only what an archive run needs is imported — not medinfer.bench,
# whose baselines import PyTorch, which would add a few hundred MiB to both peaks and flatter their ratio.
_CHILD = r"""
import json, resource, sys, time

def status_mib(name):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None

from medinfer.archive import predict_archive
from medinfer.engine import Engine

engine_path, root, output = sys.argv[1:4]
engine = Engine(engine_path, device="cpu")
ready = status_mib("VmRSS")
start = time.perf_counter()
summary = predict_archive([root], engine, output=output, progress=False)
seconds = time.perf_counter() - start
print(json.dumps({
    "engine_loaded_rss_mib": ready, "peak_rss_mib": status_mib("VmHWM"),
    # KiB on Linux. Kept for reference only: Linux carries the high-water mark across fork+exec, so this can
    # be the parent's (the pytest process) when that was larger; VmHWM is this process's own.
    "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "seconds": seconds, "slices": summary.slices, "counts": dict(summary.counts),
    "torch_imported": "torch" in sys.modules,
}))
"""


def peak_rss(engine_path: str | Path, root: str | Path, output: str | Path, *, timeout: float = 1800) -> dict:
    """Classify ``root`` with ``engine_path`` in a fresh Python process; its figures: peak resident set
    (``peak_rss_mib``: VmHWM), resident set once the engine is open, MiB; seconds, slices, counts."""
    # Run from the results' folder: `python -c` puts the working directory first on sys.path, and a checkout
    # there would shadow the installed package.
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(engine_path), str(root), str(output)],
                          capture_output=True, text=True, timeout=timeout, cwd=Path(output).parent)
    if proc.returncode != 0:
        raise RuntimeError(f"peak-RSS run failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
