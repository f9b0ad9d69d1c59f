"""Which implementation runs one call of a fused op, and the checks every backend shares."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from types import ModuleType

import torch
from torch import Tensor

from medinfer import backends
from medinfer.errors import InputError

#: Element types the Triton and CUDA kernels implement (fp32 accumulation for all three).
FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def backend_for(tensors: Iterable[Tensor | None], requested: str | None, covered: bool = True) -> str:
    """The backend that runs a call on ``tensors`` (the first one decides the device).

    The registry resolves ``requested`` (or ``MEDINFER_OPS_BACKEND``, or the automatic pick), so an
    explicit request that cannot run fails with its reason. The reference then runs instead of a fused
    kernel, on every backend, exactly when the kernels do not apply: the call is traced (``torch.compile``,
    ``torch.export``, ONNX export), autograd is recording (the kernels have no backward), the dtype is not
    fp32/fp16/bf16, or the caller says the call is not ``covered`` by the kernels.
    """
    tensors = [t for t in tensors if t is not None]
    device = tensors[0].device.type
    if device not in backends.DEVICES:  # e.g. mps: only the reference runs there
        return "torch"
    name = backends.select("ops", device, requested).name
    if name == "torch" or not covered or torch.compiler.is_compiling():
        return "torch"
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return "torch"
    if tensors[0].dtype not in FUSED_DTYPES:
        return "torch"
    return name


def check_like(name: str, t: Tensor | None, ref: Tensor, shape: tuple[int | None, ...]) -> None:
    """``t`` (when given) has ``ref``'s dtype and device and ``shape`` (``None`` entries match any size)."""
    if t is None:
        return
    if t.dtype != ref.dtype or t.device != ref.device:
        raise InputError(f"{name} is {t.dtype} on {t.device}; expected {ref.dtype} on {ref.device} like the input")
    if t.dim() != len(shape) or any(s is not None and s != n for s, n in zip(shape, t.shape, strict=True)):
        expected = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise InputError(f"{name} has shape {tuple(t.shape)}; expected {expected}")


def check_4d(name: str, t: Tensor) -> None:
    if t.dim() != 4:
        raise InputError(f"{name} must be a 4-D (N, C, H, W) tensor, got shape {tuple(t.shape)}")


def launcher(name: str) -> ModuleType:
    """The module whose ``dilated_branches`` / ``octave_conv`` launch backend ``name``'s kernels
    (``medinfer.ops._triton`` or ``medinfer.ops._cuda``), imported on first use."""
    return importlib.import_module(f"medinfer.ops._{name}")
