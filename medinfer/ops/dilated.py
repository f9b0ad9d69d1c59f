"""``medinfer.ops.dilated_branches``: several dilated 3×3 convolutions of one input, with the DDC epilogue."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

from medinfer.errors import InputError
from medinfer.models import layers
from medinfer.ops._dispatch import backend_for, check_4d, check_like, launcher

#: Widest projection the fused epilogue holds on chip; wider ones run the branches fused and the epilogue
#: as the reference.
MAX_PROJECT_WIDTH = 256


@dataclass(frozen=True)
class DDCEpilogue:
    """What the DDC block does with the branch outputs ``t_k``:
    ``out = residual + Σ_k relu(conv1x1(t_k, weight, bias))`` (reference:
    :func:`medinfer.models.layers.ddc_project_sum`).

    ``weight`` is the 1×1 convolution's ``(CO, O, 1, 1)`` weight, ``residual`` is ``(N, CO, H, W)``, and
    ``keep`` says which ``t_k`` the caller still needs (default: none); the others are never written.
    """

    weight: Tensor
    bias: Tensor | None
    residual: Tensor
    keep: Sequence[bool] = ()


def dilated_branches(x: Tensor, weights: Sequence[Tensor], biases: Sequence[Tensor | None],
                     dilations: Sequence[int], *, epilogue: DDCEpilogue | None = None,
                     backend: str | None = None) -> list[Tensor]:
    """3×3 convolutions of ``x`` with each ``(weight, bias, dilation)`` (padding = dilation, stride 1),
    computed in one kernel that reads the input once for all branches.

    Returns the branch outputs, like :func:`medinfer.models.layers.dilated_branches`; with an
    ``epilogue``, returns ``[out, *(t_k for k where epilogue.keep[k])]`` instead.

    ``backend`` is ``"torch"`` (the reference), ``"triton"``, ``"cuda"`` or ``None`` for the fastest
    available on ``x``'s device (``medinfer.backends``; ``MEDINFER_OPS_BACKEND`` overrides). The fused
    kernels cover fp32/fp16/bf16 with branches of equal width; the reference runs instead — on any backend
    — for other dtypes, branches of different widths, calls traced by ``torch.compile``/``torch.export``,
    and while autograd records (the kernels are inference-only: run under ``torch.inference_mode()``).
    An epilogue projecting to more than :data:`MAX_PROJECT_WIDTH` channels runs the branches fused and
    the epilogue as the reference.
    """
    weights, biases, dilations = list(weights), list(biases), [int(d) for d in dilations]
    keep = _validate(x, weights, biases, dilations, epilogue)
    from medinfer.ops import onnx as _onnx

    covered, fused_epilogue = kernel_covers(weights, epilogue)
    if covered and _onnx.emitting_plugin_nodes(x):
        if epilogue is None or fused_epilogue:
            return _onnx.dilated_branches_node(x, weights, biases, dilations, epilogue, keep)
        return _with_epilogue(_onnx.dilated_branches_node(x, weights, biases, dilations), epilogue, keep)
    tensors = [x, *weights, *biases]
    if epilogue is not None:
        tensors += [epilogue.weight, epilogue.bias, epilogue.residual]
    name = backend_for(tensors, backend, covered)
    if name == "torch":
        ts = layers.dilated_branches(x, weights, biases, dilations)
        return ts if epilogue is None else _with_epilogue(ts, epilogue, keep)
    run = launcher(name).dilated_branches
    if fused_epilogue:
        return run(x, weights, biases, dilations, epilogue.weight, epilogue.bias, epilogue.residual, keep)
    ts = run(x, weights, biases, dilations)
    return ts if epilogue is None else _with_epilogue(ts, epilogue, keep)


def kernel_covers(weights: Sequence[Tensor], epilogue: DDCEpilogue | None) -> tuple[bool, bool]:
    """Whether the fused kernels take a (validated) call — branches of one width — and whether they also
    fuse its epilogue (projections of at most :data:`MAX_PROJECT_WIDTH` channels)."""
    return (len({w.shape[0] for w in weights}) == 1,
            epilogue is not None and epilogue.weight.shape[0] <= MAX_PROJECT_WIDTH)


def _with_epilogue(ts: list[Tensor], epilogue: DDCEpilogue, keep: tuple[bool, ...]) -> list[Tensor]:
    out = layers.ddc_project_sum(epilogue.residual, ts, epilogue.weight, epilogue.bias)
    return [out, *(t for t, k in zip(ts, keep, strict=True) if k)]


def _validate(x: Tensor, weights: list[Tensor], biases: list[Tensor | None], dilations: list[int],
              epilogue: DDCEpilogue | None) -> tuple[bool, ...]:
    """Check the call; return the epilogue's ``keep`` flags, one per branch."""
    check_4d("x", x)
    if not weights or not len(weights) == len(biases) == len(dilations):
        raise InputError(f"dilated_branches needs one weight, bias and dilation per branch; got {len(weights)} "
                         f"weights, {len(biases)} biases, {len(dilations)} dilations")
    c = x.shape[1]
    for k, (w, b, d) in enumerate(zip(weights, biases, dilations, strict=True)):
        check_like(f"weights[{k}]", w, x, (None, c, 3, 3))
        check_like(f"biases[{k}]", b, x, (w.shape[0],))
        if d < 1:
            raise InputError(f"dilations[{k}] must be a positive integer, got {d}")
    if epilogue is None:
        return ()
    o = weights[0].shape[0]
    if any(w.shape[0] != o for w in weights):
        raise InputError(f"the DDC epilogue projects branches of one width; got {[w.shape[0] for w in weights]}")
    co = epilogue.weight.shape[0]
    check_like("epilogue.weight", epilogue.weight, x, (co, o, 1, 1))
    check_like("epilogue.bias", epilogue.bias, x, (co,))
    check_like("epilogue.residual", epilogue.residual, x, (x.shape[0], co, *x.shape[2:]))
    keep = tuple(bool(k) for k in epilogue.keep) or (False,) * len(weights)
    if len(keep) != len(weights):
        raise InputError(f"epilogue.keep has {len(keep)} flags for {len(weights)} branches")
    return keep
