"""The one backend registry: which implementation runs an op or an engine, and why others cannot.

Two roles share it:

* ``ops`` — the fused kernels of :mod:`medinfer.ops`: ``torch`` (the reference), ``triton``, ``cuda``.
* ``engine`` — whole-model inference: ``torch``, ``onnxruntime``, ``openvino``, ``tensorrt``.

:func:`select` resolves a request; :func:`choose_engine` picks among the backends that run one engine file.
An explicit choice (argument, or the environment variables
``MEDINFER_OPS_BACKEND`` / ``MEDINFER_ENGINE_BACKEND``) fails loudly with the reason when it cannot run;
an automatic choice takes the first available backend of :data:`AUTO_ORDER` for the device. Probes never
raise and never require the optional packages: they return ``None`` when the backend can run, or a
sentence saying why not. ``medinfer info`` prints them.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from medinfer import _ext
from medinfer.errors import MedinferError

ROLES = ("ops", "engine")
DEVICES = ("cpu", "cuda")

# Automatic picks, fastest first. Backends missing from a list can still be chosen explicitly
# (e.g. Triton on the CPU runs only in its slow interpreter, for testing).
AUTO_ORDER: dict[tuple[str, str], tuple[str, ...]] = {
    ("ops", "cpu"): ("torch",),
    ("ops", "cuda"): ("cuda", "triton", "torch"),
    ("engine", "cpu"): ("openvino", "onnxruntime", "torch"),
    ("engine", "cuda"): ("tensorrt", "onnxruntime", "torch"),
}


class BackendUnavailable(MedinferError, RuntimeError):
    """An explicitly requested backend cannot run here; the message says why."""


@dataclass(frozen=True)
class Backend:
    name: str
    roles: frozenset[str]
    description: str
    probe: Callable[[str], str | None]  # device -> None when usable there, else the reason
    install_hint: str = ""

    def unavailable_reason(self, device: str) -> str | None:
        return self.probe(device)

    def is_available(self, device: str) -> bool:
        return self.probe(device) is None


@functools.cache
def _import(name: str) -> ModuleType | str:
    """The module, or the import error as text (cached: optional imports are slow and do not change)."""
    try:
        return importlib.import_module(name)
    except Exception as exc:  # broken installs raise more than ImportError (OSError on missing .so, ...)
        return f"{type(exc).__name__}: {exc}"


def optional_import(name: str) -> ModuleType | None:
    """The module, or ``None`` when it cannot be imported here (see :func:`_import` for why)."""
    module = _import(name)
    return None if isinstance(module, str) else module


def _torch_reason() -> str | None:
    torch = _import("torch")
    return f"PyTorch cannot be imported ({torch}); pip install 'medinfer[train]'" if isinstance(torch, str) else None


def _torch_cuda_reason() -> str | None:
    reason = _torch_reason()
    if reason is not None:
        return reason
    torch = _import("torch")
    if torch.version.cuda is None:
        return f"PyTorch {torch.__version__} is a CPU-only build"
    if not torch.cuda.is_available():
        return f"PyTorch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU"
    return None


def _probe_torch(device: str) -> str | None:
    return _torch_cuda_reason() if device == "cuda" else _torch_reason()


def _probe_triton(device: str) -> str | None:
    triton = _import("triton")
    if isinstance(triton, str):
        return f"Triton is not installed ({triton}); pip install 'medinfer[gpu]'"
    if device == "cpu":
        if os.environ.get("TRITON_INTERPRET") != "1":
            return "Triton runs on the CPU only in its interpreter: set TRITON_INTERPRET=1 (slow; for testing)"
        return _torch_reason()  # the kernels run on PyTorch tensors
    return _torch_cuda_reason()


def _probe_cuda(device: str) -> str | None:
    if device == "cpu":
        return "the CUDA kernels run on GPU tensors only"
    native = _ext.native()
    if native is None:
        return _ext.unavailable_reason()
    if not _ext.has_cuda():
        return "medinfer._C was built without its CUDA sources (no nvcc at build time); rebuild with nvcc on PATH"
    count, error = native.cuda_device_count()
    if count == 0:
        return f"the CUDA runtime finds no usable GPU ({error})"
    return None


def _probe_onnxruntime(device: str) -> str | None:
    ort = _import("onnxruntime")
    if isinstance(ort, str):
        return f"ONNX Runtime cannot be imported ({ort}); pip install onnxruntime"
    providers = ort.get_available_providers()
    wanted = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
    if wanted not in providers:
        hint = "; install onnxruntime-gpu" if device == "cuda" else ""
        return f"onnxruntime {ort.__version__} lacks {wanted} (has {', '.join(providers)}){hint}"
    return None


def _probe_openvino(device: str) -> str | None:
    if device == "cuda":
        return "OpenVINO runs on the CPU here (its GPU plugin is for Intel GPUs)"
    ov = _import("openvino")
    if isinstance(ov, str):
        return f"OpenVINO cannot be imported ({ov}); pip install 'medinfer[openvino]'"
    try:
        devices = ov.Core().available_devices
    except RuntimeError as exc:
        return f"OpenVINO {ov.__version__} cannot start: {exc}"
    return None if "CPU" in devices else f"OpenVINO {ov.__version__} finds no CPU device (has {', '.join(devices)})"


def openvino_preference(passed: frozenset[str]) -> str | None:
    """``None`` when OpenVINO should run an export automatically, else why ONNX Runtime does.

    Measured (benchmarks/results/cpu-engines-epyc-2core.json; the issue's Xeon figures): OpenVINO bf16 and int8
    lead ONNX Runtime fp32 on both models (model throughput 1.8-3.4× on an AVX512-BF16/VNNI EPYC, 3.5-6.9× bf16
    on an AMX Xeon); at fp32 it leads on DDC-ResNet101 (1.9×) but not on Res-Dense Net (0.5-1.1×). So it is
    chosen where it runs a reduced precision that passed its check against fp32 for this export;
    ``backend="openvino"`` still runs any export."""
    from medinfer import cpu

    native = {"bf16": cpu.native_bf16(), "int8": cpu.native_int8()}
    runs = [f"{p} ({feature})" for p, feature in native.items() if feature and f"openvino/{p}" in passed]
    if runs:
        return None
    have = ", ".join(f"{p} on {f}" for p, f in native.items() if f) or "neither bf16 nor int8 natively"
    return (f"OpenVINO is chosen for an export whose bf16 or int8 check passed on it (this CPU runs {have}); "
            "at fp32 it is not faster than ONNX Runtime on every model")


def _probe_tensorrt(device: str) -> str | None:
    if device == "cpu":
        return "TensorRT runs on NVIDIA GPUs only"
    trt = _import("tensorrt")
    if isinstance(trt, str) or not hasattr(trt, "Builder"):
        # `tensorrt-stubs` alone leaves an importable namespace package with no runtime in it.
        detail = trt if isinstance(trt, str) else "only type stubs are installed"
        return (f"TensorRT is not installed ({detail}); on a machine with an NVIDIA GPU: "
                "pip install 'medinfer[tensorrt]' (NVIDIA's tensorrt wheels)")
    return _torch_cuda_reason()


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("torch", frozenset(ROLES), "PyTorch eager: the reference for every op and model", _probe_torch),
        Backend("triton", frozenset({"ops"}), "Triton kernels from medinfer.kernels", _probe_triton,
                "pip install 'medinfer[gpu]'"),
        Backend("cuda", frozenset({"ops"}), "CUDA kernels compiled into medinfer._C", _probe_cuda,
                "build from source with nvcc on PATH"),
        Backend("onnxruntime", frozenset({"engine"}), "ONNX Runtime sessions of exported .onnx files",
                _probe_onnxruntime, "pip install onnxruntime (or onnxruntime-gpu)"),
        Backend("openvino", frozenset({"engine"}), "OpenVINO on the CPU: exported .onnx files, fp32/bf16/int8",
                _probe_openvino, "pip install 'medinfer[openvino]'"),
        Backend("tensorrt", frozenset({"engine"}), "TensorRT engines (.plan) built by `medinfer build`",
                _probe_tensorrt, "pip install 'medinfer[tensorrt]'"),
    )
}


def _check(role: str, device: str) -> None:
    if role not in ROLES:
        raise ValueError(f"unknown backend role {role!r}; expected one of {ROLES}")
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; expected one of {DEVICES}")


def env_override(role: str) -> str | None:
    """The backend forced through ``MEDINFER_<ROLE>_BACKEND``, if any."""
    value = os.environ.get(f"MEDINFER_{role.upper()}_BACKEND", "").strip().lower()
    return value or None


def probe_environment(role: str) -> tuple[str | None, ...]:
    """The environment variables a choice for ``role`` depends on: its override, and what the probes read
    (Triton runs on the CPU only in its interpreter). A cached choice is valid while these stay the same."""
    return (env_override(role), os.environ.get("TRITON_INTERPRET"))


@contextlib.contextmanager
def forced(role: str, name: str):
    """``MEDINFER_<ROLE>_BACKEND=name`` for the duration of the block. Ops read it at every call (their cached
    choice is keyed on it), so it must be in force around the calls, not around the construction of what
    makes them (benchmarks use this)."""
    var = f"MEDINFER_{role.upper()}_BACKEND"
    previous = os.environ.get(var)
    os.environ[var] = name
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = previous


def select(role: str, device: str = "cpu", requested: str | None = None) -> Backend:
    """Resolve the backend for ``role`` on ``device``.

    ``requested`` (or the role's environment variable) is honoured or refused with the reason; without
    one, the first available backend of ``AUTO_ORDER[role, device]`` is returned (OpenVINO only where
    :func:`openvino_preference` says so).
    """
    _check(role, device)
    source = "argument"
    if requested is None:
        requested, source = env_override(role), f"MEDINFER_{role.upper()}_BACKEND"
    if requested is not None:
        backend = BACKENDS.get(requested)
        if backend is None or role not in backend.roles:
            valid = ", ".join(n for n, b in BACKENDS.items() if role in b.roles)
            raise BackendUnavailable(f"{requested!r} (from {source}) is not a {role} backend; choose one of {valid}")
        reason = backend.unavailable_reason(device)
        if reason is not None:
            raise BackendUnavailable(f"{role} backend {requested!r} (from {source}) cannot run on {device}: {reason}")
        return backend
    tried = []
    for name in AUTO_ORDER[(role, device)]:
        reason = _passed_over(name, device, frozenset())
        if reason is None:
            return BACKENDS[name]
        tried.append(f"{name}: {reason}")
    raise BackendUnavailable(f"no {role} backend can run on {device}:\n  " + "\n  ".join(tried))


def _passed_over(name: str, device: str, passed: frozenset[str]) -> str | None:
    """Why an automatic choice does not take ``name`` (unavailable, or not preferred), or ``None``."""
    reason = BACKENDS[name].unavailable_reason(device)
    if reason is None and name == "openvino":
        reason = openvino_preference(passed)
    return reason


def choose_engine(runners: tuple[str, ...], device: str, *, passed: frozenset[str] = frozenset()) -> tuple[str, str]:
    """The backend that runs an engine file automatically, of the ``runners`` that can run its kind, and why:
    the first available in :data:`AUTO_ORDER`, OpenVINO only by :func:`openvino_preference` (``passed``: the
    ``backend/precision`` checks the file passed). When none is available, the first runner (whose engine
    then says what is missing)."""
    notes = []
    for name in AUTO_ORDER[("engine", device)]:
        if name not in runners:
            continue
        reason = _passed_over(name, device, passed)
        if reason is None:
            return name, "; ".join(notes) or "the first that runs it here"
        notes.append(f"not {name}: {reason}")
    return runners[0], "; ".join(notes)


def report(device: str | None = None) -> list[dict]:
    """Every (backend, device) pair with its availability and reason, for ``medinfer info``."""
    rows = []
    for backend in BACKENDS.values():
        for dev in (device,) if device else DEVICES:
            reason = backend.unavailable_reason(dev)
            rows.append({
                "backend": backend.name,
                "roles": sorted(backend.roles),
                "device": dev,
                "available": reason is None,
                "reason": reason,
                "description": backend.description,
            })
    return rows
