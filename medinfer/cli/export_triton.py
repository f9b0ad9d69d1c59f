"""``medinfer export-triton``: a Triton Inference Server model repository of engine files, for its native backends."""

from __future__ import annotations


def register(sub) -> None:
    from medinfer.serve.repository import DEFAULT_MAX_BATCH, DEFAULT_QUEUE_DELAY_US, KINDS

    p = sub.add_parser("export-triton", help="write a Triton model repository (ONNX Runtime, OpenVINO, TensorRT)")
    p.add_argument("engines", nargs="+", metavar="ENGINE",
                   help=".onnx exports and .plan files (with their .plan.json); plans of one model for several "
                        "GPUs become one model")
    p.add_argument("--repository", required=True, metavar="DIR", help="the model repository to write into")
    p.add_argument("--max-batch", type=int,
                   help=f"max_batch_size (default: a plan's profile max, else {DEFAULT_MAX_BATCH})")
    p.add_argument("--instances", type=int, default=1, help="model instances (%(default)s)")
    p.add_argument("--kind", choices=KINDS, default="KIND_GPU",
                   help="where ONNX Runtime instances run (%(default)s); plans run on GPUs, OpenVINO on CPUs")
    p.add_argument("--max-queue-delay-us", type=int, default=DEFAULT_QUEUE_DELAY_US,
                   help="how long the dynamic batcher waits to fill a batch (%(default)s µs)")
    p.add_argument("--openvino", action="store_true", help="also write each ONNX export as <model>_openvino")
    p.add_argument("--force", action="store_true", help="replace model directories that already exist")
    p.set_defaults(func=run)


def run(args) -> int:
    from medinfer.serve.repository import write_repository

    models = write_repository(args.engines, args.repository, max_batch=args.max_batch, instances=args.instances,
                              kind=args.kind, max_queue_delay_us=args.max_queue_delay_us, openvino=args.openvino,
                              force=args.force)
    for model in models:
        gpus = f" for sm {', '.join(model.cc_files)} (TensorRT {model.tensorrt_version})" if model.cc_files else ""
        print(f"wrote {args.repository}/{model.name}: {model.backend}{gpus}, from "
              f"{', '.join(str(s) for s in model.sources)}")
    return 0
