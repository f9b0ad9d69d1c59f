"""The ``medinfer`` command line. Each subcommand lives in its own module with a ``register`` function."""

from __future__ import annotations

import argparse
import importlib
import sys

from medinfer import __version__
from medinfer.errors import MedinferError
from medinfer.extras import missing_extra

# Subcommand modules, in the order `medinfer --help` lists them.
COMMANDS = ("demo", "info", "models", "phantom", "train", "evaluate", "export", "quantize", "build", "sign",
            "predict", "validate_engine", "serve", "export_triton", "listen", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medinfer", description="CT image classification: train, export, infer.")
    parser.add_argument("--version", action="version", version=f"medinfer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"medinfer.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (MedinferError, ValueError, FileNotFoundError) as exc:
        # Expected failures (bad input, missing files, unusable engines or backends) end with one clear line.
        print(f"medinfer {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:
        extra = missing_extra(exc)  # a command of an extra that is not installed says which one
        if extra is None:
            raise
        print(f"medinfer {args.command}: error: {extra}", file=sys.stderr)
        return 1
