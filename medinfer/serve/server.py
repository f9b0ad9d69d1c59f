"""``medinfer serve``: one engine behind a Triton Inference Server, started by PyTriton.

The server holds two models. ``M`` (the engine's model name, :func:`medinfer.serve.protocol.model_name`) takes
``slices`` — FP32 ``[-1, C, H, W]``, slices already preprocessed by the model's :class:`medinfer.Preprocess` —
and answers ``probabilities`` (FP32 ``[-1, K]``), with Triton's dynamic batcher merging concurrent requests
into the engine's batches (the cross-series batching of :meth:`medinfer.Engine.stream`, server-side).
``medinfer`` answers the served model's name and medinfer's JSON (class names, Preprocess, weights hash, the
engine's backend and precision, medinfer's version), which :class:`medinfer.serve.RemoteEngine` reads to load
and batch series on the client exactly as the local engine would. The engine is warmed up (batch 1 and the
largest batch) before Triton starts, so ``/v2/health/ready`` answers ready only once an inference has run.

PyTriton's Triton runs in a child process whose Python backend stub must load the interpreter's own libpython
(found with ``sysconfig``: where another libpython of the same minor version sits on the loader's default path,
pyenv's Pythons on Debian for one, the stub otherwise loads that one and fails in its stdlib) and, in PyTriton
0.7, NumPy 1: under NumPy 2 its responses come back with empty data. :func:`unavailable_reason` says so.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sysconfig
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medinfer import __version__
from medinfer.errors import MedinferError
from medinfer.serve import protocol

log = logging.getLogger("medinfer.serve")


class ServeUnavailable(MedinferError):
    """This environment cannot run PyTriton's server; the message says why and what to do."""


def libpython_dir() -> Path | None:
    """The folder holding this interpreter's shared libpython, or None for a statically linked Python."""
    libdir, library = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")
    if not libdir or not library or (not library.endswith(".so") and ".so." not in library):
        return None
    return Path(libdir) if (Path(libdir) / library).exists() else None


def unavailable_reason() -> str | None:
    """Why ``medinfer serve`` cannot run here, or None."""
    try:
        import pytriton  # noqa: F401
    except ImportError:
        return "PyTriton is not installed: pip install 'medinfer[serve]' (in its own environment, see the README)"
    if int(np.__version__.split(".")[0]) >= 2:
        return (f"PyTriton 0.7 returns empty outputs under NumPy {np.__version__} (measured with 2.4.6; 1.26.4 "
                "works): run the server in an environment of its own with pip install 'medinfer[serve]', which "
                "keeps NumPy below 2")
    if libpython_dir() is None:
        return ("this Python has no shared libpython, which the Triton Python backend stub loads: use a Python "
                "built with --enable-shared (Debian's, python.org's, pyenv with PYTHON_CONFIGURE_OPTS=--enable-shared)")
    return None


def metadata_document(engine) -> dict:
    """What the metadata model answers: the served model, its metadata, what runs it, and medinfer's version."""
    return {"format": "medinfer.serve/1", "medinfer": __version__,
            "served_model": protocol.model_name(engine.metadata.name), "model": engine.metadata.to_dict(),
            "engine": {k: v for k, v in engine.describe().items() if k != "model"},
            "inputs": {protocol.INPUT: {"datatype": "FP32", "shape": [-1, *engine.input_shape]}},
            "outputs": {protocol.OUTPUT: {"datatype": "FP32", "shape": [-1, len(engine.class_names)]}}}


@dataclass
class ServeOptions:
    address: str = "0.0.0.0"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch: int | None = None  # default: the engine's preferred batch
    max_queue_delay_us: int = 2000
    instances: int | None = None  # default: the engine's concurrency (OpenVINO's streams), at least 1


class Server:
    """An engine served by Triton (see the module docstring); ``start()`` returns once it is ready."""

    def __init__(self, engine, options: ServeOptions | None = None):
        self.engine = engine
        self.options = options or ServeOptions()
        self.name = protocol.model_name(engine.metadata.name)
        self.max_batch = self.options.max_batch or engine.preferred_batch
        self.instances = self.options.instances or max(1, engine.concurrency)
        if self.max_batch < 1 or self.instances < 1:
            raise MedinferError(f"--max-batch and --instances must be positive, got {self.max_batch} and "
                                f"{self.instances}")
        self._triton = None

    def warm_up(self) -> float:
        """Runs the engine at batch 1 and at the largest batch; returns the seconds it took."""
        t = time.perf_counter()
        for size in sorted({1, self.max_batch}):
            self.engine.infer(np.zeros((size, *self.engine.input_shape), np.float32))
        return time.perf_counter() - t

    def start(self) -> Server:
        reason = unavailable_reason()
        if reason is not None:
            raise ServeUnavailable(f"medinfer serve cannot run here: {reason}")
        from pytriton.triton import Triton

        log.info("warming up %s (batches of 1 and %d)", self.engine.path, self.max_batch)
        log.info("warm-up took %.2f s", self.warm_up())
        # The backend stub is a child of tritonserver, which inherits this environment.
        libdir = str(libpython_dir())
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH")) if p)
        self._triton = Triton(config=self._config())
        try:
            self._bind(self._triton)
            self._triton.run()
        except BaseException:
            self.stop()
            raise
        return self

    def _config(self):
        from pytriton.triton import TritonConfig

        o = self.options
        return TritonConfig(http_address=o.address, grpc_address=o.address, metrics_address=o.address,
                            http_port=o.http_port, grpc_port=o.grpc_port, metrics_port=o.metrics_port,
                            allow_metrics=True, strict_readiness=True, exit_timeout_secs=5, exit_on_error=True)

    def _bind(self, triton) -> None:
        from pytriton.decorators import batch
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

        engine = self.engine

        @batch
        def infer(**inputs):
            # PyTriton serialises the outputs' buffers as they are: they must be contiguous.
            return {protocol.OUTPUT: np.ascontiguousarray(engine.infer(inputs[protocol.INPUT]), np.float32)}

        document = np.frombuffer(json.dumps(metadata_document(engine)).encode(), np.uint8)

        @batch
        def metadata(**inputs):
            rows = len(inputs[protocol.METADATA_INPUT])
            return {protocol.METADATA_OUTPUT: np.array([[document.tobytes()]] * rows, dtype=np.bytes_)}

        preferred = [b for b in (engine.preferred_batch, self.max_batch) if b <= self.max_batch]
        triton.bind(model_name=self.name, infer_func=[infer] * self.instances,
                    inputs=[Tensor(name=protocol.INPUT, dtype=np.float32, shape=tuple(engine.input_shape))],
                    outputs=[Tensor(name=protocol.OUTPUT, dtype=np.float32, shape=(len(engine.class_names),))],
                    config=ModelConfig(max_batch_size=self.max_batch, batcher=DynamicBatcher(
                        max_queue_delay_microseconds=self.options.max_queue_delay_us,
                        preferred_batch_size=sorted(set(preferred)))), strict=True)
        triton.bind(model_name=protocol.METADATA_MODEL, infer_func=metadata,
                    inputs=[Tensor(name=protocol.METADATA_INPUT, dtype=np.uint8, shape=(1,))],
                    outputs=[Tensor(name=protocol.METADATA_OUTPUT, dtype=bytes, shape=(1,))],
                    config=ModelConfig(max_batch_size=8))

    def stop(self) -> None:
        if self._triton is not None:
            triton, self._triton = self._triton, None
            triton.stop()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def urls(self) -> dict[str, str]:
        host = "localhost" if self.options.address in ("0.0.0.0", "::") else self.options.address
        o = self.options
        return {"http": f"http://{host}:{o.http_port}", "grpc": f"grpc://{host}:{o.grpc_port}",
                "metrics": f"http://{host}:{o.metrics_port}/metrics"}


def serve_forever(server: Server) -> None:
    """Starts ``server`` and serves until SIGTERM or SIGINT, then stops it cleanly."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        urls = server.urls()
        print(f"serving {server.name} ({server.engine.backend}, {server.engine.precision}, max batch "
              f"{server.max_batch}, {server.instances} instance(s)) at {urls['http']} and {urls['grpc']}; "
              f"metrics at {urls['metrics']}; ready", flush=True)
        stop.wait()
        print("stopping", flush=True)
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
