"""``medinfer predict``: classify CT series with an engine; a table on the terminal, everything in JSON."""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("predict", help="classify series (DICOM folders, files, image folders) with an engine")
    p.add_argument("series", nargs="+", help="series: DICOM folder, multi-frame file, or folder of PNG/JPG slices")
    p.add_argument("--engine", required=True, help="engine: .onnx, .plan, or a checkpoint")
    p.add_argument("--backend", choices=("onnxruntime", "tensorrt", "torch"), help="force a backend")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: a GPU when the backend can use one")
    p.add_argument("--aggregate", choices=("mean", "max", "topk"), default="mean",
                   help="how slice probabilities fold into the series' (default %(default)s, as in the Res-Dense Net "
                        "paper)")
    p.add_argument("--k", type=int, help="topk: how many slices per class")
    p.add_argument("--json", dest="json_out", help="write every prediction, with per-slice probabilities, here")
    p.add_argument("--series-uid", help="the series to classify where a folder holds several (SeriesInstanceUID)")
    p.add_argument("--acquisition", help="the acquisition to classify where a series holds several (see "
                                         "medinfer.load_series; default: the largest)")
    p.set_defaults(func=run)


def format_table(preds) -> str:
    rows = [("series", "slices", "skipped", "label", "p", "time (s)")]
    for p in preds:
        rows.append((Path(p.source).name or p.uid[:24], str(len(p.slice_probabilities)), str(len(p.skipped)),
                     p.label, f"{p.probabilities[p.label]:.3f}", f"{p.timings['total']:.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    def line(row) -> str:
        cells = zip(row, widths, strict=True)
        return "  ".join(c.ljust(w) if i in (0, 3) else c.rjust(w) for i, (c, w) in enumerate(cells))

    lines = [line(r) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    for p in preds:
        where = Path(p.source).name or p.uid
        lines += [f"warning in {where}: {w}" for w in p.warnings]
        lines += [f"skipped in {where}: {path}: {reason}" for path, reason in p.skipped]
    return "\n".join(lines)


def run(args) -> int:
    from medinfer.cli.output import writable_file
    from medinfer.engine import Engine
    from medinfer.io.text import printable

    json_out = writable_file(args.json_out, "--json") if args.json_out else None
    engine = Engine(args.engine, backend=args.backend, device=args.device)
    preds = engine.predict_many(args.series, aggregate=args.aggregate, k=args.k, progress=None,
                                series_uid=args.series_uid, acquisition=args.acquisition)
    print(format_table(preds))
    if json_out is not None:
        doc = {"engine": printable(str(args.engine)), "backend": engine.backend, "device": engine.device,
               "model": engine.metadata.to_dict(), "predictions": [p.to_dict() for p in preds]}
        json_out.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {printable(str(json_out))}")
    return 0
