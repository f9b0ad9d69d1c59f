"""``medinfer demo``: fetch a real CT, build a phantom set, train, export, infer — the main job in one command."""

from __future__ import annotations


def register(sub) -> None:
    from medinfer.demo import DEMO_EPOCHS, DEMO_PER_CLASS

    p = sub.add_parser("demo", help="the whole path on this machine in a few minutes: data, training, export, "
                                    "engine, predictions")
    p.add_argument("--out", default="medinfer-demo", help="folder for everything it makes (default %(default)s)")
    p.add_argument("--gpu", action="store_true", help="train and infer on the GPU (CUDA)")
    p.add_argument("--per-class", type=int, default=DEMO_PER_CLASS, help="phantom ROIs per class (default %(default)s)")
    p.add_argument("--epochs", type=int, default=DEMO_EPOCHS, help="training epochs (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    from medinfer import backends
    from medinfer.bench.machine import describe, one_line
    from medinfer.demo import run_demo

    if args.gpu:
        backends.select("engine", "cuda", "torch")  # refuses with the reason when there is no usable GPU
    report = run_demo(args.out, device="cuda" if args.gpu else "cpu", per_class=args.per_class, epochs=args.epochs,
                      seed=args.seed)
    print()
    print(report.format(one_line(describe())))
    return 0
