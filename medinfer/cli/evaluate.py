"""``medinfer evaluate``: metrics, ROC and confusion-matrix figures of a trained model on a labelled split."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a run, checkpoint or engine on a labelled data set")
    p.add_argument("run", help="run folder (its best checkpoint), checkpoint (.json / .safetensors) or engine "
                               "(.onnx / .plan)")
    p.add_argument("--data", required=True, help="data set folder or CSV")
    p.add_argument("--split", default="test", help="split to evaluate (default %(default)s)")
    p.add_argument("--out", required=True, help="folder for metrics.json, roc.png, confusion.png")
    p.add_argument("--backend", choices=("onnxruntime", "tensorrt", "torch"), help="force an engine backend")
    p.add_argument("--device", choices=("cpu", "cuda"))
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from medinfer.evaluation import evaluate

    m = evaluate(args.run, args.data, args.out, split=args.split, progress=None, backend=args.backend,
                 device=args.device)
    level = f"{m['level']} level" + (f", {m['aggregate']} of slices" if m["kind"] == "series" else "")
    print(f"{m['model']} on {m['data']} [{m['split']}], {m['n']} items ({level})")
    print(f"{'class':<12} {'precision':>9} {'recall':>7} {'F1':>6} {'AUC':>6} {'n':>6}")
    for name, c in m["per_class"].items():
        auc = "-" if c["auc"] is None else f"{c['auc']:.3f}"
        print(f"{name:<12} {c['precision']:>9.3f} {c['recall']:>7.3f} {c['f1']:>6.3f} {auc:>6} {c['support']:>6}")
    mac = m["macro"]
    auc = "-" if mac["auc"] is None else f"{mac['auc']:.3f}"
    print(f"{'macro':<12} {mac['precision']:>9.3f} {mac['recall']:>7.3f} {mac['f1']:>6.3f} {auc:>6}")
    print(f"accuracy {m['accuracy']:.3f}")
    if "slice_level" in m:
        sl = m["slice_level"]
        print(f"slice level: accuracy {sl['accuracy']:.3f}, macro F1 {sl['macro']['f1']:.3f}")
    for item in m["skipped"]:
        print(f"not used: {item['path']}: {item['reason']}")
    out = Path(args.out)
    print(f"wrote {out / 'metrics.json'}, {out / 'roc.png'}, {out / 'confusion.png'}")
    return 0
