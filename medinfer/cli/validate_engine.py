"""``medinfer validate-engine``: does an engine agree with its fp32 reference on real series?

Runs the engine (any backend, at the precision asked for) and an fp32 reference made from the same weights
(its checkpoint, or the fp32 export) on the same series, reports label agreement (per slice and per series)
and the largest probability difference, and stores the result in the engine file's record
(:mod:`medinfer.validation`), where ``precision="auto"`` looks for it. Exits 1 when the thresholds are not met.
"""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    from medinfer.validation import MAX_DIFF, MIN_AGREEMENT, REQUESTS

    p = sub.add_parser("validate-engine", help="check an engine against its fp32 reference on series; record it")
    p.add_argument("engine", help="engine to check: .onnx, .plan or a checkpoint")
    p.add_argument("--backend", help="the backend to check it on (default: the one Engine picks)")
    p.add_argument("--precision", choices=REQUESTS, default="auto",
                   help="the precision to check (default: what the engine would run)")
    p.add_argument("--reference", required=True, help="the fp32 engine it was made from: a checkpoint or an export")
    p.add_argument("--data", required=True, nargs="+", help="series, studies or folders of them")
    p.add_argument("--max-diff", type=float, default=MAX_DIFF,
                   help="largest probability difference allowed (%(default)s)")
    p.add_argument("--min-agreement", type=float, default=MIN_AGREEMENT,
                   help="smallest slice-label agreement allowed (%(default)s)")
    p.add_argument("--no-store", action="store_true", help="report only; leave the engine's record as it is")
    p.add_argument("--json", dest="json_out", help="write the report here")
    p.set_defaults(func=run)


def run(args) -> int:
    import warnings

    from medinfer import validation
    from medinfer.engine import Engine
    from medinfer.engine.base import kind_of
    from medinfer.io import load_study

    with warnings.catch_warnings():  # an unchecked engine is what this command is for
        warnings.simplefilter("ignore", validation.ReducedPrecisionWarning)
        engine = Engine(args.engine, backend=args.backend, precision=args.precision)
    # The reference runs where the engine does; a checkpoint on a GPU without CUDA graphs (plain fp32 eager).
    eager = engine.device == "cuda" and kind_of(Path(args.reference)) == "checkpoint"
    reference = Engine(args.reference, device=engine.device, precision="fp32",
                       **({"cuda_graphs": False} if eager else {}))
    validation.check_reference(engine, reference)
    series = [s for src in args.data for s in load_study(src)]
    result = validation.validate(engine, reference, series, data=", ".join(map(str, args.data)),
                                 max_diff=args.max_diff, min_agreement=args.min_agreement)
    print(f"{engine.backend} {engine.precision} engine {Path(args.engine).name} vs {result.reference} on "
          f"{result.series} series, {result.slices} slices:")
    print(f"  label agreement  slices {result.slice_label_agreement:.4f}  series {result.series_label_agreement:.4f}")
    print(f"  |Δp|             max {result.max_abs_diff:.2e}  p99 {result.p99_abs_diff:.2e}  "
          f"mean {result.mean_abs_diff:.2e}")
    print("  PASSED" if result.passed else f"  FAILED (needs max diff ≤ {args.max_diff}, agreement ≥ "
          f"{args.min_agreement})")
    if not args.no_store:
        print(f"  recorded in {validation.store(args.engine, result)} as {result.key}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"engine": str(args.engine), **result.to_dict()}, indent=2) + "\n")
    return 0 if result.passed else 1
