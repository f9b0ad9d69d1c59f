"""``medinfer models``: every registered model with its size, cost and input, beside the paper's counts."""

from __future__ import annotations

import json
from dataclasses import asdict


def register(sub) -> None:
    p = sub.add_parser("models", help="list registered models: parameters, GFLOPs, input size")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style name filter (default: all)")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.set_defaults(func=run)


def format_table(rows) -> str:
    header = f"{'model':<15} {'params (M)':>10} {'GFLOPs':>8} {'input':>11} {'classes':>7}  {'paper (M)':>9}  source"
    lines = [header, "-" * len(header)]
    for r in rows:
        h, w = r.input_size
        paper = f"{r.paper_params_m:.2f}" if r.paper_params_m is not None else "-"
        lines.append(f"{r.name:<15} {r.params / 1e6:>10.2f} {r.flops / 1e9:>8.2f} {f'{r.in_chans}×{h}×{w}':>11} "
                     f"{r.num_classes:>7}  {paper:>9}  {r.paper}")
    lines += [
        "",
        "GFLOPs: 2 × multiply-accumulates of one input at the listed size. paper (M): the parameter count that",
        "the DDC-ResNet paper reports in Table 3 for the same ablation row (its data and exact layer widths are",
        "not public).",
    ]
    return "\n".join(lines)


def run(args) -> int:
    from medinfer.models import list_models
    from medinfer.models.summary import summarize

    names = list_models(args.pattern)
    if not names:
        raise ValueError(f"no registered model matches {args.pattern!r}")
    from tqdm import tqdm

    rows = [summarize(n) for n in tqdm(names, desc="counting", unit="model", leave=False, disable=None)]
    print(json.dumps([asdict(r) for r in rows], indent=2) if args.json else format_table(rows))
    return 0
