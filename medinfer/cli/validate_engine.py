"""``medinfer validate-engine``: does a reduced-precision engine agree with its fp32 reference?

Runs the engine and the fp32 PyTorch reference (its checkpoint) on the same series, and reports label
agreement (per slice and per series) and the largest probability difference — the check to make before
trusting an fp16 or int8 TensorRT plan. Exits 1 when the thresholds are not met.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def register(sub) -> None:
    p = sub.add_parser("validate-engine", help="compare an engine with its fp32 reference checkpoint on data")
    p.add_argument("engine", help="engine to check: .plan, .onnx or a checkpoint")
    p.add_argument("--reference", required=True, help="the fp32 checkpoint the engine was made from")
    p.add_argument("--data", required=True, help="a folder of series (DICOM or image folders)")
    p.add_argument("--max-diff", type=float, default=0.05, help="largest probability difference allowed (%(default)s)")
    p.add_argument("--min-agreement", type=float, default=0.99,
                   help="smallest slice-label agreement allowed (%(default)s)")
    p.add_argument("--json", dest="json_out", help="write the report here")
    p.set_defaults(func=run)


def compare(engine_preds, reference_preds) -> dict:
    """Agreement and probability differences between two engines' predictions of the same series."""
    pairs = list(zip(engine_preds, reference_preds, strict=True))
    diffs = np.concatenate([np.abs(e.slice_probabilities - r.slice_probabilities).ravel() for e, r in pairs])
    slice_agree = np.concatenate([e.slice_probabilities.argmax(1) == r.slice_probabilities.argmax(1) for e, r in pairs])
    return {
        "series": len(pairs),
        "slices": int(slice_agree.size),
        "slice_label_agreement": float(slice_agree.mean()),
        "series_label_agreement": float(np.mean([e.label == r.label for e, r in pairs])),
        "max_abs_diff": float(diffs.max()),
        "mean_abs_diff": float(diffs.mean()),
        "p99_abs_diff": float(np.quantile(diffs, 0.99)),
    }


def run(args) -> int:
    from medinfer.engine import Engine
    from medinfer.errors import InputError
    from medinfer.io import load_study

    engine = Engine(args.engine)
    reference = Engine(args.reference, backend="torch", device=engine.device, precision="fp32", cuda_graphs=False)
    if engine.metadata.weights_sha256 != reference.metadata.weights_sha256:
        raise InputError(f"{args.engine} was not made from {args.reference}: their weights' SHA-256 differ")
    series = load_study(args.data)
    report = compare(engine.predict_many(series, errors="raise"), reference.predict_many(series, errors="raise"))
    report.update(engine=str(args.engine), backend=engine.backend, reference=str(args.reference),
                  data=str(args.data), thresholds={"max_diff": args.max_diff, "min_agreement": args.min_agreement})
    report["passed"] = report["max_abs_diff"] <= args.max_diff and report["slice_label_agreement"] >= args.min_agreement
    print(f"{engine.backend} engine {Path(args.engine).name} vs fp32 reference on {report['series']} series, "
          f"{report['slices']} slices:")
    print(f"  label agreement  slices {report['slice_label_agreement']:.4f}  "
          f"series {report['series_label_agreement']:.4f}")
    print(f"  |Δp|             max {report['max_abs_diff']:.2e}  p99 {report['p99_abs_diff']:.2e}  "
          f"mean {report['mean_abs_diff']:.2e}")
    verdict = f"FAILED (needs max diff ≤ {args.max_diff}, agreement ≥ {args.min_agreement})"
    print("  PASSED" if report["passed"] else f"  {verdict}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["passed"] else 1
