"""``medinfer predict``: classify every CT series under the given folders (one study or a whole archive).

Series are discovered anywhere below each root (DICOM, image-series folders, multi-frame files), selected by
rules (default: axial CT image series, no localizers, no derived/secondary series), streamed through the
engine, and each result written to ``--output`` as it completes. Exit status: 0 when every selected series
was classified, 3 when some failed (the others were classified), 1 on a usage error or when nothing could be
classified.
"""

from __future__ import annotations

import json
from pathlib import Path

TABLE_ROWS = 30  # up to this many series get a row each on the terminal; beyond it, the summary only


def register(sub) -> None:
    from medinfer.validation import REQUESTS

    p = sub.add_parser("predict", help="classify every CT series under folders (a study, an archive) with an engine",
                       description=__doc__.split("\n\n")[1])
    p.add_argument("roots", nargs="+", metavar="ROOT",
                   help="a folder holding any number of studies (DICOM anywhere below, folders of PNG/JPG slices), "
                        "or a series' files")
    p.add_argument("--engine", required=True, help="engine: .onnx, .plan, or a checkpoint")
    p.add_argument("--backend", choices=("onnxruntime", "openvino", "tensorrt", "torch"), help="force a backend")
    p.add_argument("--precision", choices=REQUESTS,
                   help="default auto: below fp32 only where the engine's check against fp32 passed")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: a GPU when the backend can use one")
    p.add_argument("--aggregate", choices=("mean", "max", "topk"), default="mean",
                   help="how slice probabilities fold into the series' (default %(default)s, as in the Res-Dense Net "
                        "paper)")
    p.add_argument("--k", type=int, help="topk: how many slices per class")
    sel = p.add_argument_group("series selection (default rules: " + "; ".join(_default_rules()) + ")")
    sel.add_argument("--select", action="append", default=[], metavar="EXPR",
                     help="classify only series matching EXPR, e.g. Modality=CT, SliceThickness<=5, "
                          "SliceThickness=1..3, ImageType!~LOCALIZER, SeriesDescription~(?i)lung (repeatable: all "
                          "must match)")
    sel.add_argument("--exclude", action="append", default=[], metavar="EXPR",
                     help="set aside series matching EXPR (repeatable: any sets a series aside)")
    sel.add_argument("--rules", metavar="FILE", help='a JSON rules file: {"select": [...], "exclude": [...], '
                                                      '"defaults": true}')
    sel.add_argument("--all-series", action="store_true", help="drop the default rules")
    sel.add_argument("--series-uid", help="only this series (SeriesInstanceUID)")
    sel.add_argument("--acquisition", help="the acquisition to classify where a series holds several (see "
                                           "medinfer.load_series; default: the largest)")
    out = p.add_argument_group("results")
    out.add_argument("--output", metavar="FILE", help="results.jsonl (a line per series, written as it completes) or "
                                                      "results.parquet (needs pyarrow)")
    out.add_argument("--resume", action="store_true", help="continue --output: skip the series already in it")
    out.add_argument("--slices", action="store_true", help="record per-slice probabilities in --output")
    out.add_argument("--json", dest="json_out", help="also write every prediction, with per-slice probabilities, "
                                                     "as one JSON document (held in memory: for a few series)")
    run = p.add_argument_group("execution")
    run.add_argument("--loaders", type=int, help="threads reading series (default 2)")
    run.add_argument("--queue-depth", type=int, help="loaded series waiting for the engine at most (default 4)")
    run.add_argument("--ray", action="store_true", help="run on a Ray cluster (pip install 'medinfer[ray]')")
    run.add_argument("--ray-address", help="the cluster to join (default: a local one, or RAY_ADDRESS)")
    run.add_argument("--workers", type=int, help="Ray: actors, each holding one engine (default: one per GPU, "
                                                 "else per 2 CPUs)")
    p.set_defaults(func=run_predict)


def _default_rules() -> list[str]:
    from medinfer.io.select import DEFAULT_RULES

    return list(DEFAULT_RULES)


def _name(record: dict) -> str:
    """A series' source as the table shows it: its last two path components (study/series)."""
    parts = Path(record["source"]).parts[-2:]
    return str(Path(*parts)) if parts else record["uid"][:24]


def format_table(records: list[dict]) -> str:
    rows = [("series", "slices", "skipped", "label", "p", "time (s)")]
    for r in records:
        name = _name(r)
        if r["status"] == "ok":
            rows.append((name, str(r["slices_used"]), str(len(r["skipped"])), r["label"],
                         f"{r['probabilities'][r['label']]:.3f}", f"{r['timings']['total']:.2f}"))
        else:
            rows.append((name, "-", str(len(r.get("skipped", []))), r["status"], "-", "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(row) -> str:
        cells = zip(row, widths, strict=True)
        return "  ".join(c.ljust(w) if i in (0, 3) else c.rjust(w) for i, (c, w) in enumerate(cells))

    lines = [line(r) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    for r in records:
        where = _name(r)
        if r["status"] == "error":
            lines.append(f"error in {where}: {r['error']}")
        lines += [f"warning in {where}: {w}" for w in r.get("warnings", [])]
        lines += [f"skipped in {where}: {s['path']}: {s['reason']}" for s in r.get("skipped", [])]
    return "\n".join(lines)


def _selection(args):
    from medinfer.io.select import Selection

    select = list(args.select) + ([f"SeriesInstanceUID={args.series_uid}"] if args.series_uid else [])
    return Selection.parse(select=select, exclude=args.exclude, rules_file=args.rules, defaults=not args.all_series)


def run_predict(args) -> int:
    from medinfer.cli.output import writable_file
    from medinfer.errors import InputError
    from medinfer.io.text import printable

    json_out = writable_file(args.json_out, "--json") if args.json_out else None
    if args.output:
        writable_file(args.output, "--output")
    if args.resume and not args.output:
        raise InputError("--resume needs --output: the results file to continue")
    selection = _selection(args)
    records: dict[int, dict] = {}

    def keep(position: int, record: dict) -> None:
        if json_out is not None or len(records) < TABLE_ROWS:
            records[position] = record

    common = dict(output=args.output, selection=selection, resume=args.resume, slices=args.slices,
                  aggregate=args.aggregate, k=args.k, acquisition=args.acquisition, on_record=keep)
    if args.ray:
        from medinfer.distributed import predict_archive

        if args.loaders or args.queue_depth:
            raise InputError("--loaders and --queue-depth apply to runs in this process; with --ray, each worker "
                             "uses the defaults (2 loader threads, a queue of 4 series)")
        summary, engine_info = predict_archive(args.roots, args.engine, backend=args.backend, device=args.device,
                                               precision=args.precision, address=args.ray_address,
                                               workers=args.workers, **common)
    else:
        from medinfer.archive import predict_archive
        from medinfer.engine import Engine

        if args.workers or args.ray_address:
            raise InputError("--workers and --ray-address apply to --ray runs only")
        engine = Engine(args.engine, backend=args.backend, device=args.device,
                        **({"precision": args.precision} if args.precision else {}))
        engine_info = engine.describe()
        summary = predict_archive(args.roots, engine, loaders=args.loaders, depth=args.queue_depth, **common)
    print(f"engine: {engine_info['backend']} on {engine_info['device']}, {engine_info['precision']} "
          f"({engine_info['precision_reason']})")
    ordered = [records[p] for p in sorted(records)]
    if sum(summary.counts.values()) <= TABLE_ROWS and ordered:
        print(format_table(ordered))
    print(summary.format())
    if summary.output:
        print(f"results: {summary.output}")
    if json_out is not None:
        doc = {"engine": printable(str(args.engine)), **engine_info,
               "predictions": [r for r in ordered if r["status"] != "excluded"],
               "excluded": [r for r in ordered if r["status"] == "excluded"]}
        json_out.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {printable(str(json_out))}")
    return summary.exit_code
