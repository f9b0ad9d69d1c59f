"""What every fused op of :mod:`medinfer.ops` shares: which implementation runs a call, the checks of its
arguments, the layout of what a launch writes, and how tensors cross into ``medinfer._C``."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

import numpy as np
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
    name = selected(device, requested, backends.probe_environment("ops"))
    if name == "torch" or not covered or torch.compiler.is_compiling():
        return "torch"
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return "torch"
    if tensors[0].dtype not in FUSED_DTYPES:
        return "torch"
    return name


@functools.cache
def selected(device: str, requested: str | None, environment: tuple[str | None, ...]) -> str:
    """The registry's pick for ``device``, probed once per (device, request, the environment the probes read):
    a model makes hundreds of op calls per forward pass, and the answer does not change between them.
    (A refusal raises and is not cached, so it is asked again, and refused again, on the next call.)"""
    return backends.select("ops", device, requested).name


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


def empty_output(x: Tensor, channels: int, h: int, w: int) -> Tensor:
    """An uninitialised (N, channels, h, w) result in ``x``'s memory format (NCHW or channels-last), so
    the kernels' strided stores follow the caller's layout."""
    fmt = torch.channels_last if x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last) \
        else torch.contiguous_format
    return torch.empty((x.shape[0], channels, h, w), device=x.device, dtype=x.dtype, memory_format=fmt)


def weight_layout(weights: Sequence[Tensor | None]) -> tuple[list[Tensor | None], bool]:
    """The weights in the one layout a launch reads them in, and whether it is channels-last: channels-last
    when the first weight is (``model.to(memory_format=torch.channels_last)`` makes them so), else
    contiguous. Weights already in that layout are passed through without a copy."""
    first = next(w for w in weights if w is not None)
    channels_last = not first.is_contiguous() and first.is_contiguous(memory_format=torch.channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return [w.contiguous(memory_format=fmt) if w is not None else None for w in weights], channels_last


# How tensors cross into medinfer._C, which never links against PyTorch: raw pointers, shapes and strides.
NATIVE_DTYPES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


def native_tensor(t: Tensor | None):
    """(data_ptr, shape, strides) of a torch tensor; ``None`` stays ``None``."""
    return None if t is None else (t.data_ptr(), tuple(t.shape), tuple(t.stride()))


def native_ptr(t: Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()


def linear_tensor(ptr: int, dims) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    """(ptr, shape, row-major strides) of a LINEAR TensorRT tensor of ``dims`` at ``ptr`` (0: no data)."""
    shape = tuple(int(dims[i]) for i in range(len(dims)))
    strides = tuple(int(np.prod(shape[i + 1:], dtype=np.int64)) for i in range(len(shape)))
    return ptr, shape, strides
