"""``medinfer bench``: the benchmark suite on this machine, each figure beside its same-run baseline."""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("bench", help="measure medinfer against its baselines on this machine")
    p.add_argument("--quick", action="store_true", help="the short suite (a few minutes on 2 CPU cores)")
    p.add_argument("--json", dest="json_out", help="write the report (machine, rows, speedups) as JSON")
    p.add_argument("--plot", help="write throughput vs batch size as PNG")
    p.set_defaults(func=run)


def run(args) -> int:
    from medinfer.bench import run_suite

    report = run_suite(quick=args.quick)
    print(report.format_table())
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report.to_json(), indent=2) + "\n")
        print(f"wrote {args.json_out}")
    if args.plot and report.plot_throughput(args.plot):
        print(f"wrote {args.plot}")
    return 0
