"""``medinfer info``: version, native extension, the CPU's features, GPUs and every backend with the reason it is
missing; ``medinfer info ENGINE``: what would run that engine file here, at what precision and why."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("info", help="what this installation can run, and why the rest cannot (or: one engine)")
    p.add_argument("engine", nargs="?", help="an engine file: which backend and precision would run it, and why")
    p.add_argument("--backend", help="with ENGINE: the backend to describe it on")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from medinfer.info import engine_report, environment_report, format_engine_report, format_report

    if args.engine:
        rep = engine_report(args.engine, backend=args.backend)
        print(json.dumps(rep, indent=2, default=str) if args.json else format_engine_report(rep))
        return 0
    rep = environment_report()
    print(json.dumps(rep, indent=2, default=str) if args.json else format_report(rep))
    return 0
