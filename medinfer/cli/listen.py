"""``medinfer listen``: a DICOM Storage SCP that classifies each series it receives and writes (and forwards)
a structured report.

Instances are stored under OUT/incoming/ as they arrive; a series is classified once no instance of it came
for --idle-seconds, with predict's selection rules. OUT/<SeriesInstanceUID>.json holds each result,
OUT/<SeriesInstanceUID>.sr.dcm its TID 1500 report. Runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import logging
import signal
import threading


def register(sub) -> None:
    from medinfer.cli.predict import _default_rules

    p = sub.add_parser("listen", help="a DICOM Storage SCP: classify received series, answer with structured "
                                      "reports", description=__doc__.split("\n\n")[1])
    p.add_argument("--engine", required=True, help="engine: .onnx, .plan, or a checkpoint")
    p.add_argument("--backend", choices=("onnxruntime", "openvino", "tensorrt", "torch"), help="force a backend")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: a GPU when the backend can use one")
    p.add_argument("--port", type=int, default=11112, help="DICOM port to listen on (%(default)s)")
    p.add_argument("--host", default="", help="address to bind (default: every interface)")
    p.add_argument("--aet", default="MEDINFER", help="this SCP's AE title (%(default)s)")
    p.add_argument("--out", required=True, metavar="DIR", help="instances, results and reports go here")
    p.add_argument("--forward", metavar="HOST:PORT:AET", help="send each report to this PACS by C-STORE")
    p.add_argument("--idle-seconds", type=float, default=10.0,
                   help="classify a series once no instance of it arrived for this long (%(default)s)")
    p.add_argument("--aggregate", choices=("mean", "max", "topk"), default="mean",
                   help="how slice probabilities fold into the series' (%(default)s)")
    p.add_argument("--k", type=int, help="topk: how many slices per class")
    sel = p.add_argument_group("series selection, as medinfer predict (default rules: "
                               + "; ".join(_default_rules()) + ")")
    sel.add_argument("--select", action="append", default=[], metavar="EXPR",
                     help="classify only series matching EXPR (repeatable: all must match)")
    sel.add_argument("--exclude", action="append", default=[], metavar="EXPR",
                     help="set aside series matching EXPR (repeatable: any sets a series aside)")
    sel.add_argument("--rules", metavar="FILE", help="a JSON rules file, as medinfer predict's")
    sel.add_argument("--all-series", action="store_true", help="drop the default rules")
    sel.add_argument("--series-uid", help="only this series (SeriesInstanceUID)")
    sel.add_argument("--acquisition", help="the acquisition to classify where a series holds several")
    p.set_defaults(func=run)


def run(args) -> int:
    from medinfer.cli.predict import _selection
    from medinfer.engine import Engine
    from medinfer.listen import Listener
    from medinfer.listen.scp import parse_destination

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    forward = parse_destination(args.forward) if args.forward else None  # a typo fails before the engine loads
    selection = _selection(args)
    engine = Engine(args.engine, backend=args.backend, device=args.device)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with Listener(engine, args.out, port=args.port, host=args.host, aet=args.aet, idle_seconds=args.idle_seconds,
                  forward=forward, selection=selection, acquisition=args.acquisition, aggregate=args.aggregate,
                  k=args.k):
        stop.wait()
    return 0
