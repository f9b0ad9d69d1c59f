"""TensorRT engines (``.plan``) and the ``.plan.json`` record that makes them safe to load.

A plan is tied to the TensorRT version and the GPU it was built on. ``medinfer build`` writes, next to
``ddc.plan``, ``ddc.plan.json``: TensorRT version, GPU name and compute capability, precision, batch profile,
the SHA-256 of the source ONNX and of the plan itself, the model metadata and the build command. Loading
checks all of it before TensorRT sees a byte of the plan, and refuses a mismatch with the command that
rebuilds it. medinfer's plugins are registered before deserialising.

TensorRT cannot be installed on the machines this package is developed on: this module is written
against TensorRT 10's documented Python API, type-checked with mypy against ``tensorrt-stubs`` in CI, and
exercised by the ``tensorrt``-marked tests wherever TensorRT is present.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medinfer import __version__, integrity, validation
from medinfer.engine.base import Engine
from medinfer.errors import EngineError
from medinfer.metadata import ModelMetadata, atomic_write, read_json_record, sha256_bytes
from medinfer.onnx_file import INPUT_NAME, OUTPUT_NAME

PLAN_FORMAT = "medinfer-tensorrt-plan"
PLAN_FORMAT_VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8")


def sidecar_path(plan: Path) -> Path:
    return plan.with_name(plan.name + ".json")


def current_gpu(index: int = 0) -> dict[str, Any]:
    """Name and compute capability of a visible GPU, as recorded in ``.plan.json``."""
    from medinfer.info import gpus

    found = [g for g in gpus() if g["index"] == index]
    if not found:
        raise EngineError(f"TensorRT plans need a GPU, and GPU {index} is not visible here")
    return {"name": found[0]["name"], "compute_capability": list(found[0]["compute_capability"])}


@dataclass(frozen=True)
class PlanRecord:
    """The contents of ``.plan.json``."""

    tensorrt_version: str
    gpu: dict[str, Any]
    precision: str
    profile: dict[str, int]  # batch sizes: min, opt, max
    onnx: dict[str, str]  # file, sha256, graph_sha256
    plan_sha256: str
    metadata: ModelMetadata
    build: dict[str, Any]  # command, seconds, calibration, ...
    medinfer_version: str = __version__
    signature: str | None = None  # HMAC-SHA256 of the record's digest (medinfer.integrity), once signed
    validation: dict[str, Any] = field(default_factory=dict)  # checks against fp32 (medinfer.validation)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT, "format_version": PLAN_FORMAT_VERSION, "medinfer_version": self.medinfer_version,
            "tensorrt_version": self.tensorrt_version, "gpu": self.gpu, "precision": self.precision,
            "profile": self.profile, "onnx": self.onnx, "plan_sha256": self.plan_sha256,
            "metadata": self.metadata.to_dict(), "build": self.build,
            # Only when present: records written before validations existed keep their digest.
            **({"validation": self.validation} if self.validation else {}),
        }

    @classmethod
    def read(cls, plan: Path, *, authenticate: bool = True, verify: bool = True) -> PlanRecord:
        """The record beside ``plan``, checked against its digest (``verify``) and (``authenticate``, with an
        engine key configured) its signature. Only signing passes either as False."""
        path = sidecar_path(plan)
        if not path.is_file():
            raise EngineError(f"{plan}: its record {path.name} is missing; medinfer only runs plans it built (with "
                              f"the record beside them): `medinfer build MODEL.onnx -o {plan.name}`")
        d = read_json_record(path, PLAN_FORMAT, "plan record")
        fix = f"rebuild the plan: `medinfer build MODEL.onnx -o {plan.name}`"
        computed = _record_digest(d)
        if verify:
            integrity.check_digest(path, d.get("digest"), computed, what="plan record", fix=fix, engine=plan)
        if authenticate:
            integrity.check_signature(path, computed, d.get("signature"), what="plan record", engine=plan)
        if d.get("format_version") != PLAN_FORMAT_VERSION:
            raise EngineError(f"{path}: plan record version {d.get('format_version')!r}, this medinfer reads "
                              f"{PLAN_FORMAT_VERSION}; rebuild the plan with this medinfer")
        try:
            profile = {k: int(d["profile"][k]) for k in ("min", "opt", "max")}
            return cls(tensorrt_version=str(d["tensorrt_version"]), gpu=dict(d["gpu"]), precision=str(d["precision"]),
                       profile=profile, onnx=dict(d["onnx"]), plan_sha256=str(d["plan_sha256"]),
                       metadata=ModelMetadata.from_dict(d["metadata"], path), build=dict(d.get("build", {})),
                       medinfer_version=str(d["medinfer_version"]), signature=d.get("signature"),
                       validation=dict(d.get("validation", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise EngineError(f"{path}: plan record lacks or garbles {exc}") from None

    def write(self, plan: Path) -> Path:
        path = sidecar_path(plan)
        doc = self.to_dict()
        doc["digest"] = _record_digest(doc)
        if self.signature is not None:
            doc["signature"] = self.signature
        atomic_write(path, (json.dumps(doc, indent=2) + "\n").encode())
        return path

    @classmethod
    def sign(cls, plan: Path, key: bytes | None, *, rehash: bool = False) -> Path:
        """Sign the plan's record in place (see :func:`medinfer.integrity.sign`; ``rehash`` adopts a record
        written before medinfer kept digests, as it stands); returns the record's path. The record covers the
        plan through its SHA-256, which is checked before anything is written."""
        record = cls.read(plan, authenticate=False, verify=not rehash)
        record.check_plan(plan, plan.read_bytes())
        signed = integrity.signature_or_none(_record_digest(record.to_dict()), key)
        return dataclasses.replace(record, signature=signed).write(plan)

    @classmethod
    def update(cls, plan: Path, **fields: Any) -> Path:
        """Replace fields of the checked record in place; its digest is recomputed and, with an engine key
        configured, its signature renewed (a signed record is refused without the key)."""
        record = cls.read(plan)
        key = integrity.key_to_resign(sidecar_path(plan), record.signature is not None)
        record = dataclasses.replace(record, **fields)
        return dataclasses.replace(record, signature=integrity.signature_or_none(_record_digest(record.to_dict()),
                                                                                 key)).write(plan)

    def check_plan(self, plan: Path, data: bytes) -> None:
        """Refuse plan bytes whose SHA-256 is not the one this record holds."""
        if sha256_bytes(data) != self.plan_sha256:
            raise EngineError(f"{plan}: SHA-256 differs from {sidecar_path(plan).name}: the plan is damaged or was "
                              f"replaced; {self.rebuild_hint()}")

    def rebuild_hint(self) -> str:
        command = self.build.get("command") or "medinfer build MODEL.onnx -o PLAN"
        return f"rebuild it on this machine: `{command}`"

    def check_machine(self, plan: Path, tensorrt_version: str, gpu: dict[str, Any]) -> None:
        """Refuse a plan built for another TensorRT or GPU, saying how to rebuild it."""
        if tensorrt_version != self.tensorrt_version:
            raise EngineError(f"{plan}: built with TensorRT {self.tensorrt_version}, this machine has TensorRT "
                              f"{tensorrt_version}; plans do not move between versions: {self.rebuild_hint()}")
        if (gpu["name"], list(gpu["compute_capability"])) != (self.gpu["name"], list(self.gpu["compute_capability"])):
            cc = "".join(map(str, self.gpu["compute_capability"]))
            here = "".join(map(str, gpu["compute_capability"]))
            raise EngineError(f"{plan}: built for {self.gpu['name']} (sm_{cc}), this machine has {gpu['name']} "
                              f"(sm_{here}): {self.rebuild_hint()}")


def _record_digest(doc: dict) -> str:
    return integrity.digest({k: v for k, v in doc.items() if k not in ("digest", "signature")})


def ensure_tensorrt() -> None:
    """Raise :class:`~medinfer.backends.BackendUnavailable`, saying why, unless TensorRT can run here."""
    from medinfer import backends

    reason = backends.BACKENDS["tensorrt"].unavailable_reason("cuda")
    if reason is not None:
        raise backends.BackendUnavailable(f"TensorRT cannot run here: {reason}")


def register_plugins() -> None:
    """medinfer's TensorRT plugins, registered before any parse or deserialisation (idempotent)."""
    from medinfer.ops.tensorrt_plugins import register_plugins as register

    register()


class TensorRTEngine(Engine):
    backend = "tensorrt"

    def __init__(self, path, *, device: str, gpu: int = 0):
        super().__init__(path, device=device)
        record = PlanRecord.read(self.path)
        plan = self.path.read_bytes()  # checked and deserialised from the same bytes
        record.check_plan(self.path, plan)
        ensure_tensorrt()
        if self.device != "cuda":
            raise EngineError(f"{self.path}: TensorRT plans run on a GPU only, not on {self.device}")
        import tensorrt as trt
        import torch

        record.check_machine(self.path, trt.__version__, current_gpu(gpu))
        self.record, self.metadata = record, record.metadata
        # A plan's precision was chosen when it was built: unchecked below fp32, it runs with a warning.
        self._decide(record.precision, stored=record.precision, reduced={},
                     validations=validation.parse(record.validation, self.path))
        register_plugins()
        self._torch = torch
        self._device = torch.device("cuda", gpu)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(plan)
        if self._engine is None:
            raise EngineError(f"{self.path}: TensorRT could not deserialise the plan (see its log above); "
                              f"{record.rebuild_hint()}")
        self._context = self._engine.create_execution_context()
        self._stream = torch.cuda.Stream(device=self._device)

    @property
    def preferred_batch(self) -> int:
        return self.record.profile["opt"]

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        torch = self._torch
        n, lo = len(chunk), self.record.profile["min"]
        size = max(n, lo)  # the profile's minimum batch: pad up to it
        x = torch.zeros((size, *self.input_shape), dtype=torch.float32, device=self._device)
        x[:n].copy_(torch.from_numpy(chunk))
        out = torch.empty((size, len(self.class_names)), dtype=torch.float32, device=self._device)
        ctx = self._context
        ctx.set_input_shape(INPUT_NAME, tuple(x.shape))
        ctx.set_tensor_address(INPUT_NAME, x.data_ptr())
        ctx.set_tensor_address(OUTPUT_NAME, out.data_ptr())
        self._stream.wait_stream(torch.cuda.current_stream(self._device))
        if not ctx.execute_async_v3(self._stream.cuda_stream):
            raise EngineError(f"{self.path}: TensorRT execution failed (see its log above)")
        self._stream.synchronize()
        return out[:n].cpu().numpy()

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        # One execution context: calls take turns.
        with self._lock:
            hi = self.record.profile["max"]
            return np.concatenate([self._run(batch[i: i + hi]) for i in range(0, len(batch), hi)])
