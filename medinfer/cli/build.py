"""``medinfer build``: a TensorRT plan (and its .plan.json record) from a medinfer ONNX export."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("build", help="build a TensorRT plan from an ONNX export (needs TensorRT and a GPU)")
    p.add_argument("onnx", help="ONNX file written by `medinfer export`")
    p.add_argument("-o", "--output", required=True, help="plan file to write, e.g. ddc.plan")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16")
    p.add_argument("--batch", default="1:32:128", help="batch range MIN:OPT:MAX of the profile (default %(default)s)")
    p.add_argument("--calibration", help="int8: a directory of series to calibrate with")
    p.add_argument("--calibration-slices", type=int, default=512, help="int8: slices to calibrate on (%(default)s)")
    p.add_argument("--timing-cache", help="timing cache file (default: one per GPU and TensorRT version)")
    p.add_argument("--workspace", type=float, help="builder workspace limit in GiB")
    p.set_defaults(func=run)


def run(args) -> int:
    from medinfer.cli.output import writable_file
    from medinfer.engine.tensorrt_build import build_engine, parse_batch_range

    output = writable_file(args.output, "-o")  # before the work, not after it
    plan = build_engine(args.onnx, output, precision=args.precision, batch=parse_batch_range(args.batch),
                        calibration=args.calibration, calibration_slices=args.calibration_slices,
                        timing_cache=args.timing_cache, workspace_gib=args.workspace)
    print(f"wrote {plan} and {plan.name}.json")
    return 0
