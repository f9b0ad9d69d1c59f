"""``medinfer info``: version, native extension, GPUs and every backend with the reason it is missing."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("info", help="what this installation can run, and why the rest cannot")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from medinfer.info import environment_report, format_report

    rep = environment_report()
    print(json.dumps(rep, indent=2, default=str) if args.json else format_report(rep))
    return 0
