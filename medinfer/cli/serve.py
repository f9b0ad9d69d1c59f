"""``medinfer serve``: an engine behind a Triton Inference Server (PyTriton), until SIGTERM."""

from __future__ import annotations


def register(sub) -> None:
    from medinfer.serve.server import ServeOptions
    from medinfer.validation import REQUESTS

    d = ServeOptions()
    p = sub.add_parser("serve", help="serve an engine through Triton Inference Server (HTTP, gRPC, metrics)")
    p.add_argument("--engine", required=True, help="engine: .onnx, .plan, or a checkpoint")
    p.add_argument("--backend", choices=("onnxruntime", "openvino", "tensorrt", "torch"), help="force a backend")
    p.add_argument("--precision", choices=REQUESTS, help="as for predict (default auto)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: a GPU when the backend can use one")
    p.add_argument("--address", default=d.address, help="address to listen on (%(default)s)")
    p.add_argument("--http-port", type=int, default=d.http_port, help="%(default)s")
    p.add_argument("--grpc-port", type=int, default=d.grpc_port, help="%(default)s")
    p.add_argument("--metrics-port", type=int, default=d.metrics_port, help="Prometheus metrics (%(default)s)")
    p.add_argument("--max-batch", type=int, help="largest batch the dynamic batcher forms (default: the engine's "
                                                 "preferred batch)")
    p.add_argument("--max-queue-delay-us", type=int, default=d.max_queue_delay_us,
                   help="how long a request may wait for others to fill a batch (%(default)s µs)")
    p.add_argument("--instances", type=int, help="model instances running batches at once (default: the engine's "
                                                 "concurrency)")
    p.set_defaults(func=run)


def run(args) -> int:
    import logging

    from medinfer.engine import Engine
    from medinfer.serve.server import ServeOptions, Server, ServeUnavailable, serve_forever, unavailable_reason

    reason = unavailable_reason()  # before loading an engine for nothing
    if reason is not None:
        raise ServeUnavailable(reason)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    engine = Engine(args.engine, backend=args.backend, device=args.device,
                    **({"precision": args.precision} if args.precision else {}))
    options = ServeOptions(address=args.address, http_port=args.http_port, grpc_port=args.grpc_port,
                           metrics_port=args.metrics_port, max_batch=args.max_batch,
                           max_queue_delay_us=args.max_queue_delay_us, instances=args.instances)
    serve_forever(Server(engine, options))
    return 0
