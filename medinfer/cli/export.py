"""``medinfer export``: a checkpoint (or an untrained registered model) to ONNX, checked and parity-tested."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX (checked, parity-tested against PyTorch)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("checkpoint", nargs="?", help="checkpoint: .json config, .safetensors, or their folder")
    src.add_argument("--model", help="export an untrained registered model instead (see `medinfer models`)")
    p.add_argument("-o", "--output", required=True, help="ONNX file to write")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: %(default)s → 20)")
    p.add_argument("--static-batch", action="store_true", help="fix the batch size instead of a dynamic one")
    p.add_argument("--plugins", action="store_true",
                   help="record the fused DDC/octave ops as medinfer TensorRT plugin nodes (for `medinfer build`; "
                        "ONNX Runtime cannot run such a graph)")
    p.set_defaults(func=run)


def run(args) -> int:
    import onnx

    from medinfer.cli.output import writable_file
    from medinfer.export.onnx import export_onnx
    from medinfer.onnx_file import CHECK_KEY

    if args.model:
        from medinfer.models import create

        source = create(args.model)
    else:
        source = args.checkpoint
    output = writable_file(args.output, "-o")  # before the work, not after it
    path = export_onnx(source, output, opset=args.opset, dynamic_batch=not args.static_batch,
                       plugins=args.plugins)
    props = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB); parity with PyTorch: {props[CHECK_KEY]}")
    return 0
