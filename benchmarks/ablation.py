"""Accuracy benchmarks on the phantom sets (a script, not a pytest file):

* ``liver`` — the DDC-ResNet paper's ablation (shared/seeds/000, Table 3): the five variants trained on
  ``liver-roi``, beside the paper's numbers;
* ``covid`` — the Res-Dense Net paper (shared/seeds/003): Res-Dense Net against the DenseNet pair on
  ``covid-series``, series-level macro F1.

The default budget finishes on a 2-core CPU in well under an hour per comparison: reduced model widths and
depths, fewer ROIs and series, a few epochs, 128×128 slices for the series models. ``--full`` is the
budget for a GPU: the registered (paper-size) models, the paper's data-set size and epochs. Results (a
markdown table and JSON with the machine, the command and the timings) go to ``benchmarks/results/``.

    python benchmarks/ablation.py liver            # CPU budget
    python benchmarks/ablation.py covid
    python benchmarks/ablation.py liver --full     # on a GPU

The data are simulations (see ``medinfer/phantom/``): the figures show that the training path learns and
how the variants compare on this task, not how they would do on patients.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

from medinfer.bench.machine import describe, one_line

HERE = Path(__file__).resolve().parent

# The DDC-ResNet paper's Table 3 (accuracy, recall, precision, F1, AUC in %, parameters in M), on its private data.
PAPER_TABLE3 = {
    "se_resnet101": ("ResNet101 (SE baseline)", 77.93, 77.89, 78.86, 78.86, 91.11, 49.23),
    "msfe": ("MSFE", 80.85, 81.87, 79.46, 80.45, 94.11, 34.64),
    "msfe_dfe": ("MSFE + DFE", 83.79, 83.11, 84.47, 83.96, 95.11, 56.25),
    "msfe_dfe_ddc": ("MSFE + DFE + DDC", 86.49, 86.86, 86.18, 86.49, 96.11, 58.94),
    "ddc_resnet101": ("MSFE + DFE + DDC + CSS", 87.85, 86.15, 87.11, 86.53, 96.11, 55.27),
}
# The CPU budget's reductions (the --full budget uses the registered models unchanged).
LIVER_CPU = {"layers": (1, 1, 2, 1), "planes": (16, 32, 64, 128), "stem_width": 16}
LIVER_CPU_DDC = {**LIVER_CPU, "head_width": 32}
COVID_RESNET = {"layers": (1, 1, 1, 1), "planes": (16, 32, 64, 128), "stem_width": 16}
COVID_DENSENET = {"block_config": (2, 2, 2, 2), "growth_rate": 12, "num_init_features": 24}
COVID_CPU = {"resdense_net": {"resnet": COVID_RESNET, "densenet": COVID_DENSENET},
             "densenet_pair": {"densenet": COVID_DENSENET}}
BUDGETS = {
    "liver": {"cpu": {"per_class": 300, "epochs": 25, "input_size": None},
              "full": {"per_class": 1300, "epochs": 100, "input_size": None}},
    "covid": {"cpu": {"n_series": 40, "epochs": 15, "frozen_epochs": 1, "input_size": (128, 128)},
              "full": {"n_series": 200, "epochs": 20, "frozen_epochs": 5, "input_size": None}},
}


def _params(model: str, overrides: dict) -> float:
    from medinfer.models import create
    from medinfer.models.summary import count_params

    return count_params(create(model, **overrides)) / 1e6


def _run(model: str, overrides: dict, data: Path, work: Path, budget: dict, args, **train_kw) -> dict:
    from medinfer.evaluation import evaluate
    from medinfer.training import train

    t0 = time.perf_counter()
    result = train(model, data, work / model, epochs=budget["epochs"], overrides=overrides, seed=args.seed,
                   input_size=budget["input_size"], progress=args.progress, **train_kw)
    train_s = time.perf_counter() - t0
    metrics = evaluate(result.checkpoint, data, work / model / "eval", split="test", progress=args.progress)
    best = result.history[result.best_epoch - 1]
    print(f"{model}: accuracy {metrics['accuracy']:.3f}, macro F1 {metrics['macro']['f1']:.3f}, "
          f"train {train_s / 60:.1f} min", flush=True)
    return {"model": model, "overrides": overrides, "params_m": _params(model, overrides),
            "accuracy": metrics["accuracy"], "macro": metrics["macro"], "n_test": metrics["n"],
            "per_class": metrics["per_class"],
            "confusion_matrix": metrics["confusion_matrix"], "slice_level": metrics.get("slice_level"),
            "best_epoch": result.best_epoch, "best_val_loss": best["val_loss"], "epochs": len(result.history),
            "train_seconds": train_s, "final_train_loss": result.history[-1]["train_loss"]}


def liver(args, budget: dict, work: Path) -> dict:
    from medinfer.phantom import make_liver_roi

    data = work / "liver-roi"
    make_liver_roi(data, budget["per_class"], args.seed, progress=args.progress)
    return _compare(args, budget, work, data, {"kind": "liver-roi", "per_class": budget["per_class"]},
                    {m: {} if args.full else (LIVER_CPU_DDC if "ddc" in m else LIVER_CPU) for m in PAPER_TABLE3},
                    loss=args.loss)


def covid(args, budget: dict, work: Path) -> dict:
    from medinfer.phantom import make_covid_series

    data = work / "covid-series"
    make_covid_series(data, budget["n_series"], args.seed, progress=args.progress)
    return _compare(args, budget, work, data, {"kind": "covid-series", "n_series": budget["n_series"]},
                    {m: {} if args.full else COVID_CPU[m] for m in ("resdense_net", "densenet_pair")},
                    frozen_epochs=budget["frozen_epochs"])


def _compare(args, budget: dict, work: Path, data: Path, about: dict, models: dict, **train_kw) -> dict:
    """Train and evaluate each of ``models`` (name → config overrides) on the phantom set in ``data``."""
    t0 = time.perf_counter()
    rows = [_run(model, overrides, data, work, budget, args, **train_kw) for model, overrides in models.items()]
    return {"data": {**about, "seed": args.seed, "phantom": json.loads((data / "phantom.json").read_text())},
            "rows": rows, "total_seconds": time.perf_counter() - t0}


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


def markdown(task: str, doc: dict) -> str:
    m = doc["machine"]
    lines = [f"# {task}: {doc['budget_name']} budget", "",
             f"`{doc['command']}` — {one_line(m)}; {m['timestamp']}; "
             f"{doc['total_seconds'] / 60:.0f} min in all.", ""]
    if task == "liver":
        lines += ["| variant | params (M) | accuracy | recall | precision | F1 | AUC | paper A / F1 / AUC / params (M) "
                  "| train (min) |", "|---|---:|---:|---:|---:|---:|---:|---|---:|"]
        for r in doc["rows"]:
            label, a, _, _, f1, auc, p = PAPER_TABLE3[r["model"]]
            mac = r["macro"]
            lines.append(f"| {label} (`{r['model']}`) | {r['params_m']:.2f} | {_pct(r['accuracy'])} | "
                         f"{_pct(mac['recall'])} | {_pct(mac['precision'])} | {_pct(mac['f1'])} | {_pct(mac['auc'])} | "
                         f"{a} / {f1} / {auc} / {p} | {r['train_seconds'] / 60:.1f} |")
    else:
        lines += ["| model | params (M) | series macro F1 | series accuracy | series AUC | slice macro F1 | "
                  "train (min) |", "|---|---:|---:|---:|---:|---:|---:|"]
        for r in doc["rows"]:
            lines.append(f"| `{r['model']}` | {r['params_m']:.2f} | {_pct(r['macro']['f1'])} | {_pct(r['accuracy'])} | "
                         f"{_pct(r['macro']['auc'])} | {_pct(r['slice_level']['macro']['f1'])} | "
                         f"{r['train_seconds'] / 60:.1f} |")
    lines += ["", f"Data: {doc['data']['kind']} phantom (seed {doc['data']['seed']}), test split: "
              f"{doc['rows'][0]['n_test']} {'series' if task == 'covid' else 'ROIs'}. Budget: {doc['budget']}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("task", choices=("liver", "covid"))
    p.add_argument("--full", action="store_true", help="the GPU budget: paper-size models, data and epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--loss", choices=("ce", "dice"), default="ce", help="liver: the DDC-ResNet paper's loss")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--work", help="keep data and runs here (default: a temporary folder)")
    p.add_argument("--results", default=str(HERE / "results"))
    p.add_argument("--progress", action="store_true", help="progress bars")
    args = p.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["MEDINFER_NUM_THREADS"] = str(args.threads)
    budget_name = "full" if args.full else "cpu"
    budget = BUDGETS[args.task][budget_name]
    command = "python benchmarks/ablation.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    with tempfile.TemporaryDirectory(prefix="medinfer-ablation-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        doc = (liver if args.task == "liver" else covid)(args, budget, work)
    machine = describe()
    doc = {"task": args.task, "budget_name": budget_name, "budget": budget, "command": command, "machine": machine,
           **doc}
    slug = f"{'gpu' if machine['gpus'] else 'cpu'}-{machine['cores']}core"
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    stem = results / f"ablation-{args.task}-{budget_name}-{slug}"
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    table = markdown(args.task, doc)
    stem.with_suffix(".md").write_text(table)
    print(table)
    print(f"wrote {stem}.json and {stem}.md ({datetime.timedelta(seconds=round(doc['total_seconds']))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
