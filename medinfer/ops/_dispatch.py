"""Which implementation runs one call of a fused op, and the checks every backend shares."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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
    if not covered and requested is None and backends.env_override("ops") is None:
        return "torch"  # the reference runs whatever the automatic pick; skip probing the devices (hot path)
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


@dataclass
class BranchBuffers:
    """What a kernel launch of ``dilated_branches`` reads and writes, allocated and laid out on the host."""

    weights: list[Tensor]  # (O, C, 3, 3), all contiguous or all channels-last
    weights_channels_last: bool
    biases: list[Tensor | None]
    outputs: list[Tensor | None]  # per branch; None: not written (an epilogue that does not keep it)
    project_weight: Tensor | None  # contiguous (CO, O)
    project_bias: Tensor | None
    out: Tensor | None  # (N, CO, H, W), with the epilogue

    def results(self) -> list[Tensor]:
        """The op's return value: branch outputs, or ``[out, *kept branches]``."""
        kept = [y for y in self.outputs if y is not None]
        return kept if self.out is None else [self.out, *kept]


def branch_buffers(x: Tensor, weights: Sequence[Tensor], biases: Sequence[Tensor | None],
                   project_weight: Tensor | None, project_bias: Tensor | None,
                   keep: Sequence[bool] | None) -> BranchBuffers:
    n, _, h, w = x.shape
    o = weights[0].shape[0]
    store = [bool(k) for k in keep] if project_weight is not None else [True] * len(weights)
    pw = project_weight.reshape(project_weight.shape[0], o).contiguous() if project_weight is not None else None
    laid_out, channels_last = weight_layout(weights)
    return BranchBuffers(
        weights=laid_out,
        weights_channels_last=channels_last,
        biases=[b.contiguous() if b is not None else None for b in biases],
        outputs=[empty_output(x, o, h, w) if s else None for s in store],
        project_weight=pw,
        project_bias=project_bias.contiguous() if project_bias is not None else None,
        out=empty_output(x, pw.shape[0], h, w) if pw is not None else None,
    )


@dataclass
class OctaveBuffers:
    """What a kernel launch of ``octave_conv`` reads and writes; absent paths are ``None``."""

    w_hh: Tensor  # (O, C, k, k); the four all contiguous or all channels-last
    w_hl: Tensor | None
    w_lh: Tensor | None
    w_ll: Tensor | None
    weights_channels_last: bool
    y_h: Tensor
    y_l: Tensor | None


def octave_buffers(x_h: Tensor, x_l: Tensor | None, w_hh: Tensor, w_hl: Tensor | None, w_lh: Tensor | None,
                   w_ll: Tensor | None, stride: int) -> OctaveBuffers:
    """Buffers for the reference's semantics: L→H needs x_l and w_lh, H→L needs w_hl, L→L all three."""
    h, w = x_h.shape[2:]
    if stride == 2:
        h, w = (h + 1) // 2, (w + 1) // 2
    (w_hh, w_hl, w_lh, w_ll), channels_last = weight_layout(
        [w_hh, w_hl, w_lh if x_l is not None else None, w_ll if x_l is not None and w_hl is not None else None])
    return OctaveBuffers(
        w_hh=w_hh,
        w_hl=w_hl,
        w_lh=w_lh,
        w_ll=w_ll,
        weights_channels_last=channels_last,
        y_h=empty_output(x_h, w_hh.shape[0], h, w),
        y_l=empty_output(x_h, w_hl.shape[0], (h + 1) // 2, (w + 1) // 2) if w_hl is not None else None,
    )
