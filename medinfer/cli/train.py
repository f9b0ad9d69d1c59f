"""``medinfer train``: train a registered model on a labelled data set with one of the papers' recipes."""

from __future__ import annotations

import json

from medinfer.training.recipes import OLD_NAMES, RECIPES


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().replace("x", ",").split(",")
    if len(parts) == 1:
        parts = parts * 2
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"--input-size: expected N or HxW, got {text!r}") from None
    return h, w


def _recipe(name: str) -> str:
    return OLD_NAMES.get(name, name)  # the old names still work in scripts written for them


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model (the DDC-ResNet or Res-Dense Net recipe) on a labelled data set")
    p.add_argument("--model", required=True, help="registered model (see `medinfer models`)")
    p.add_argument("--data", required=True,
                   help="DATA/{train,val,test}/<class>/... folder, or a CSV (path,label[,split])")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--batch-size", type=int, help="global batch (default: the recipe's, 16 or 32)")
    p.add_argument("--out", required=True, help="run folder: best/final checkpoints, curves.png, run.json, state/")
    p.add_argument("--loss", choices=("ce", "dice"), default="ce", help="dice: the DDC-ResNet paper's eq. 9")
    p.add_argument("--recipe", type=_recipe, choices=tuple(RECIPES), help="default: the model's paper")
    p.add_argument("--frozen-epochs", type=int, help="resdense2021: epochs with frozen backbones (default: a quarter)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=JSON",
                   help="model config override, e.g. --override 'layers=[1,1,1,1]' (repeatable)")
    p.add_argument("--input-size", type=_size, help="train at N or HxW instead of the model's input size")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: a GPU when there is one)")
    p.add_argument("--amp", choices=("auto", "bf16", "fp16", "off"), default="auto", help="mixed precision on GPUs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    p.set_defaults(func=run)


def parse_overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--override: expected KEY=JSON, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value  # a bare word: a string value such as stem=css
    return out


def run(args) -> int:
    from medinfer.training import train

    result = train(args.model, args.data, args.out, epochs=args.epochs, batch_size=args.batch_size, loss=args.loss,
                   recipe=args.recipe, overrides=parse_overrides(args.override), device=args.device,
                   resume=args.resume, progress=None, seed=args.seed, frozen_epochs=args.frozen_epochs, amp=args.amp,
                   input_size=args.input_size)
    if not result.history:  # a non-zero torchrun rank: rank 0 reports
        return 0
    last = result.history[-1]
    best = result.history[result.best_epoch - 1]
    print(f"epoch {last['epoch']}: train loss {last['train_loss']:.4f}, validation loss {last['val_loss']:.4f}, "
          f"accuracy {last['val_accuracy']:.3f}, macro F1 {last['val_macro_f1']:.3f}")
    print(f"best: epoch {result.best_epoch} (validation loss {best['val_loss']:.4f}) -> {result.checkpoint}")
    print(f"final: {result.final_checkpoint}; curves: {result.curve_png}")
    for path, reason in result.skipped:
        print(f"not used: {path}: {reason}")
    return 0
