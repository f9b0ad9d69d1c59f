"""``medinfer quantize``: a static INT8 QDQ export calibrated on real series, checked against fp32."""

from __future__ import annotations

import json


def register(sub) -> None:
    from medinfer.quantize import MAX_SLICES, METHODS

    p = sub.add_parser("quantize", help="static INT8 (QDQ) export calibrated on real series, checked against fp32")
    p.add_argument("onnx", help="the fp32 export (.onnx) to quantize")
    p.add_argument("--calibration", nargs="+", required=True, metavar="SERIES",
                   help="series, studies or folders of them to calibrate on (real data, as at inference)")
    p.add_argument("--validate", nargs="+", metavar="SERIES",
                   help="series to check int8 against fp32 on (default: the calibration series)")
    p.add_argument("-o", "--output", required=True, help="the int8 export to write (.onnx)")
    p.add_argument("--method", choices=METHODS, default="minmax", help="activation range calibration (%(default)s)")
    p.add_argument("--max-slices", type=int, default=MAX_SLICES, help="calibration slices at most (%(default)s)")
    p.add_argument("--json", dest="json_out", help="write the report here")
    p.set_defaults(func=run)


def run(args) -> int:
    from medinfer.quantize import quantize

    report = quantize(args.onnx, args.output, args.calibration, validate_on=args.validate, method=args.method,
                      max_slices=args.max_slices)
    rec = report.record
    print(f"wrote {report.path}: {rec['quantized_nodes']} tensors quantized ({rec['weights']} weights, "
          f"{rec['activations']} activations), calibrated on {rec['calibration']['slices']} slices of "
          f"{len(rec['calibration']['series'])} series ({rec['method']}) in {rec['seconds']} s")
    for check in report.validations:
        print(f"  {check.summary()}")
    for name, reason in report.skipped_backends.items():
        print(f"  {name}: not checked ({reason})")
    if args.json_out:
        from pathlib import Path

        doc = {"path": str(report.path), "source": str(report.source), "quantization": rec, "passed": report.passed,
               "validations": [v.to_dict() for v in report.validations], "not_checked": report.skipped_backends}
        Path(args.json_out).write_text(json.dumps(doc, indent=2) + "\n")
    return 0 if report.passed else 1
