"""``medinfer.RemoteEngine``: the :class:`medinfer.Engine` API over a ``medinfer serve`` Triton server.

``RemoteEngine("http://host:8000")`` (or ``"grpc://host:8001"``) reads the served model's medinfer metadata
(class names, Preprocess, weights hash) and checks it against the model's Triton configuration, then classifies
series as a local engine does: series are loaded and their slices prepared by the C++ series batcher on the
client, batches are inferred on the server (``concurrency`` requests in flight, each on its own connection, so
that the server's dynamic batcher can merge several clients' batches), slice scores folded into series
predictions on the client. ``predict``, ``predict_many`` and ``stream`` are :class:`medinfer.Engine`'s.

A request that fails for a reason a flaky network or a busy server gives (refused or reset connection, timeout,
HTTP 502/503/504, gRPC UNAVAILABLE / DEADLINE_EXCEEDED) is retried ``retries`` times with exponential back-off;
anything the server refuses (wrong shape, unknown model) is an :class:`EngineError` naming the server and model.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from medinfer.engine.base import Classifier
from medinfer.errors import EngineError, InputError
from medinfer.metadata import ModelMetadata
from medinfer.serve import protocol

SCHEMES = {"http": 8000, "grpc": 8001}
_TRANSIENT_STATUS = ("502", "503", "504", "StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED")


class RemoteEngine(Classifier):
    """A served model (see the module docstring). ``model``: the model name expected (a server serves one);
    ``weights_sha256``: refuse a server whose model has other weights; ``timeout``: seconds per request
    (and to wait for the server to be ready); ``retries``: further tries of a request that failed transiently;
    ``concurrency``: requests in flight at once."""

    backend = "remote"

    def __init__(self, url: str, model: str | None = None, *, weights_sha256: str | None = None,
                 timeout: float = 30.0, retries: int = 3, concurrency: int = 4):
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in SCHEMES or not parts.hostname:
            raise InputError(f"{url}: expected http://HOST[:PORT] or grpc://HOST[:PORT]")
        if concurrency < 1 or retries < 0 or timeout <= 0:
            raise InputError(f"concurrency must be >= 1, retries >= 0 and timeout > 0; got {concurrency}, {retries}, "
                             f"{timeout}")
        self.protocol = parts.scheme
        self.address = f"{parts.hostname}:{parts.port or SCHEMES[parts.scheme]}"
        self.url = f"{self.protocol}://{self.address}"
        self.timeout, self.retries, self._concurrency = float(timeout), int(retries), int(concurrency)
        self._local = threading.local()
        self._clients: list = []
        self._clients_lock = threading.Lock()
        self._wait_ready()
        self.document = self._metadata_document()
        served = self.document.get("served_model")
        if model is not None and model != served:
            raise EngineError(f"{self.url}: serves model {served}, not {model}")
        self.model = str(served)
        self.metadata = ModelMetadata.from_dict(self.document.get("model"), f"{self.url}/{self.model}")
        if weights_sha256 is not None and weights_sha256 != self.metadata.weights_sha256:
            raise EngineError(f"{self.url}: model {self.model} has weights {self.metadata.weights_sha256[:16]}…, not "
                              f"the {weights_sha256[:16]}… asked for: the server runs a different model")
        self.max_batch = self._check_config()
        served = self.document.get("engine", {})
        self.precision = served.get("precision", "fp32")
        self.precision_reason = f"served by {served.get('backend', '?')}: {served.get('precision_reason', '')}"
        self._pool = ThreadPoolExecutor(self._concurrency, thread_name_prefix="medinfer-remote")

    # Description -----------------------------------------------------------------------------------------
    @property
    def where(self) -> str:
        return f"{self.url}/{self.model}"

    @property
    def preferred_batch(self) -> int:
        return self.max_batch

    @property
    def concurrency(self) -> int:
        return self._concurrency

    def __repr__(self) -> str:
        return f"RemoteEngine({self.url!r}, model={self.model}, classes={list(self.class_names)})"

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "url": self.url, "model_name": self.model, "precision": self.precision,
                "precision_reason": self.precision_reason, "server": self.document.get("engine"),
                "server_medinfer": self.document.get("medinfer"), "model": self.metadata.to_dict()}

    # Connections -----------------------------------------------------------------------------------------
    def _client(self):
        """This thread's client: tritonclient's clients are not to be shared between threads."""
        client = getattr(self._local, "client", None)
        if client is None:
            if self.protocol == "http":
                import tritonclient.http as triton_http

                client = triton_http.InferenceServerClient(self.address, connection_timeout=self.timeout,
                                                           network_timeout=self.timeout)
            else:
                import tritonclient.grpc as triton_grpc

                client = triton_grpc.InferenceServerClient(self.address)
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    def _call(self, what: str, fn):
        """``fn(client)``, retried on transient failures; a refusal becomes an EngineError naming ``what``."""
        from tritonclient.utils import InferenceServerException

        delay = 0.1
        for attempt in range(self.retries + 1):
            try:
                return fn(self._client())
            except InferenceServerException as exc:
                if str(exc.status()) not in _TRANSIENT_STATUS or attempt == self.retries:
                    raise EngineError(f"{self.url}: {what} failed: {exc.message()}") from None
            except (OSError, TimeoutError) as exc:
                if attempt == self.retries:
                    raise EngineError(f"{self.url}: {what} failed after {attempt + 1} tries: "
                                      f"{type(exc).__name__}: {exc}") from None
                self._local.client = None  # the connection may be broken: a new one
            time.sleep(delay)
            delay = min(2.0, delay * 2)
        raise AssertionError("unreachable")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                if self._client().is_server_ready():
                    return
                last = "the server is up but not ready"
            except Exception as exc:  # refused, reset, timed out: the server may still be starting
                last = f"{type(exc).__name__}: {exc}"
                self._local.client = None
            time.sleep(0.2)
        raise EngineError(f"{self.url}: no ready Triton server within {self.timeout:g} s ({last})")

    def _metadata_document(self) -> dict:
        def ask(client):
            module = _module(self.protocol)
            request = module.InferInput(protocol.METADATA_INPUT, [1, 1], "UINT8")
            request.set_data_from_numpy(np.zeros((1, 1), np.uint8))
            return client.infer(protocol.METADATA_MODEL, [request]).as_numpy(protocol.METADATA_OUTPUT)

        answer = self._call("reading the served model's medinfer metadata (is this a `medinfer serve` server?)", ask)
        try:
            document = json.loads(bytes(answer.reshape(-1)[0]))
        except (ValueError, IndexError) as exc:
            raise EngineError(f"{self.url}: the medinfer metadata is not JSON ({exc})") from None
        if not isinstance(document, dict) or document.get("format") != "medinfer.serve/1":
            raise EngineError(f"{self.url}: the medinfer metadata is not medinfer.serve/1")
        return document

    def _check_config(self) -> int:
        """The served model's max batch size, after checking its tensors are the metadata's."""
        def config(client):
            if self.protocol == "grpc":
                return client.get_model_config(self.model, as_json=True)["config"]
            return client.get_model_config(self.model)

        cfg = self._call(f"reading model {self.model}'s configuration", config)
        want = {protocol.INPUT: ("TYPE_FP32", list(self.input_shape)),
                protocol.OUTPUT: ("TYPE_FP32", [len(self.class_names)])}
        have = {t["name"]: (t.get("data_type"), [int(d) for d in t.get("dims", [])])
                for t in [*cfg.get("input", []), *cfg.get("output", [])]}
        for name, (dtype, dims) in want.items():
            if have.get(name) != (dtype, dims):
                raise EngineError(f"{self.url}: model {self.model} does not match its medinfer metadata: tensor "
                                  f"{name} is {have.get(name, 'missing')}, expected {dtype} {dims}")
        max_batch = int(cfg.get("max_batch_size", 0))
        if max_batch < 1:
            raise EngineError(f"{self.url}: model {self.model} does not batch (max_batch_size {max_batch})")
        return max_batch

    # Inference -------------------------------------------------------------------------------------------
    def _infer(self, batch: np.ndarray) -> np.ndarray:
        parts = [self._request(batch[i : i + self.max_batch]) for i in range(0, len(batch), self.max_batch)]
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def _request(self, batch: np.ndarray) -> np.ndarray:
        module = _module(self.protocol)

        def infer(client):
            request = module.InferInput(protocol.INPUT, list(batch.shape), "FP32")
            if self.protocol == "http":
                request.set_data_from_numpy(batch, binary_data=True)
                return client.infer(self.model, [request], outputs=[module.InferRequestedOutput(protocol.OUTPUT,
                                                                                               binary_data=True)])
            request.set_data_from_numpy(batch)
            return client.infer(self.model, [request], client_timeout=self.timeout)

        probs = self._call(f"inference of {len(batch)} slices on model {self.model}", infer).as_numpy(protocol.OUTPUT)
        if probs is None or probs.shape != (len(batch), len(self.class_names)):
            raise EngineError(f"{self.url}: model {self.model} answered {None if probs is None else probs.shape} for "
                              f"{len(batch)} slices, expected ({len(batch)}, {len(self.class_names)})")
        return probs.astype(np.float32, copy=False)

    def _submit(self, batch: np.ndarray) -> Future:
        return self._pool.submit(self._infer, batch)

    def close(self) -> None:
        """Ends the request threads and closes every connection."""
        self._pool.shutdown(wait=True)
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()

    def __enter__(self) -> RemoteEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _module(scheme: str):
    if scheme == "http":
        import tritonclient.http as module
    else:
        import tritonclient.grpc as module
    return module
