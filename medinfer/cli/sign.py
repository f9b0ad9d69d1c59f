"""``medinfer sign``: sign engine files with the deployment's key (see :mod:`medinfer.integrity`)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("sign", help="sign engines (.onnx, .plan, checkpoints) with an HMAC-SHA256 key; with a key "
                                    "configured, medinfer refuses unsigned or wrongly signed engines")
    p.add_argument("engines", nargs="+", help="engine files: .onnx, .plan (its .plan.json is signed) or a checkpoint")
    p.add_argument("--key-file", help="the key (at least 16 bytes); default: MEDINFER_ENGINE_KEY or "
                                      "MEDINFER_ENGINE_KEY_FILE")
    p.add_argument("--rehash", action="store_true",
                   help="first record the digest of a file written by medinfer 0.1, which kept none (trusting its "
                        "contents as they are); without a key, only the digest is recorded")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from medinfer import integrity
    from medinfer.errors import InputError

    key = None
    if args.key_file:
        try:
            key = Path(args.key_file).read_bytes().strip()
        except OSError as exc:
            raise InputError(f"--key-file {args.key_file}: cannot read ({exc.strerror})") from None
    done = "signed" if integrity.configured_key(key) is not None else "recorded the digest of"
    for engine in args.engines:
        print(f"{done} {integrity.sign(engine, key, rehash=args.rehash)}")
    return 0
