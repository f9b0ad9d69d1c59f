"""Compile reports of the fused kernels ``ddc_resnet101`` uses, without a GPU.

``python -m medinfer.bench.aot`` compiles, for sm_90, every Triton kernel specialisation the model uses
(dtype × constexpr flags; ``--all`` also every distinct shape) and prints registers, spills (local-memory
stack) and shared memory per kernel — the numbers the block sizes in ``medinfer.kernels``' ``config``
functions were chosen by. The calls are recorded from a forward pass of the model on the ``meta`` device
and each op plans its own launch (``planned_launch``), compiled by :mod:`medinfer.kernels.aot`. Run it
without ``TRITON_INTERPRET``. ``--cuda`` prints the same report for the CUDA kernels compiled into
``medinfer._C`` (every architecture it carries).
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from medinfer import _ext, models, ops
from medinfer.kernels.aot import compile_launch, format_cuda_table, format_table, resource_usage
from medinfer.ops import dilated, octave

if TYPE_CHECKING:
    from medinfer.kernels.conv_common import Launch

DTYPES = (torch.float16, torch.bfloat16, torch.float32)


@contextlib.contextmanager
def _recording() -> Iterator[list[tuple[str, tuple, dict]]]:
    """Record every ``medinfer.ops`` call made inside the block (the model looks the ops up at call time)."""
    calls: list[tuple[str, tuple, dict]] = []
    originals = {name: getattr(ops, name) for name in ("dilated_branches", "octave_conv")}

    def recorder(name):
        def call(*args, **kwargs):
            calls.append((name, args, kwargs))
            return originals[name](*args, **kwargs)
        return call

    try:
        for name in originals:
            setattr(ops, name, recorder(name))
        yield calls
    finally:
        for name, fn in originals.items():
            setattr(ops, name, fn)


def model_calls(model: str = "ddc_resnet101", batch: int = 256,
                memory_format: torch.memory_format = torch.contiguous_format) -> list[tuple[str, tuple, dict]]:
    """The fused-op calls of one forward pass at the model's input size, traced on the meta device, with the
    model and its input in ``memory_format`` (the GPU engine runs channels-last)."""
    spec = models.get_spec(model)
    with torch.device("meta"):
        net = models.create(model).eval().to(memory_format=memory_format)
        with _recording() as calls, torch.no_grad():
            net(torch.empty(batch, spec.in_chans, *spec.input_size).contiguous(memory_format=memory_format))
    return calls


def _materialise(value, dtype: torch.dtype):
    """A CPU stand-in of a recorded meta argument: same shape and strides, the given dtype, no data."""
    if isinstance(value, torch.Tensor):
        return torch.empty_strided(value.shape, value.stride(), dtype=dtype)
    if isinstance(value, (list, tuple)):
        return type(value)(_materialise(v, dtype) for v in value)
    return value


def plan(call: tuple[str, tuple, dict], dtype: torch.dtype) -> Launch | None:
    """The Triton launch the call would make in ``dtype`` (each op's own rules decide), or None when it runs
    the reference."""
    name, args, kwargs = call
    args = _materialise(args, dtype)
    if name == "octave_conv":
        return octave.planned_launch(*args, stride=kwargs.get("stride", 1))
    e = kwargs.get("epilogue")
    if e is not None:
        e = dilated.DDCEpilogue(*_materialise((e.weight, e.bias, e.residual), dtype), keep=e.keep)
    return dilated.planned_launch(*args, epilogue=e)


def _flags(launch: Launch) -> dict:
    return {k: v for k, v in launch.kwargs.items()
            if not k.startswith("BLOCK") and k not in ("num_warps", "num_stages", "enable_fp_fusion")}


def specializations(all_shapes: bool = False) -> list[tuple[dict, Launch]]:
    """One launch per (kernel, dtype, constexpr flags) the model uses, at its heaviest shape (the largest
    block configuration); with ``all_shapes`` one per distinct compiled specialisation, for the model in
    NCHW and in channels-last layout."""
    chosen: dict[str, tuple[dict, Launch, int]] = {}
    layouts = (torch.contiguous_format, torch.channels_last) if all_shapes else (torch.contiguous_format,)
    for call in (c for fmt in layouts for c in model_calls(memory_format=fmt)):
        for dtype in DTYPES:
            launch = plan(call, dtype)
            if launch is None:
                continue
            flags = _flags(launch)
            shape = tuple(launch.args[0].shape)
            # One per compiled specialisation (shape and configuration), or one per (kernel, dtype, flags).
            key = json.dumps([launch.kernel.__name__, str(dtype), flags] + (
                [shape, {k: v for k, v in launch.kwargs.items() if k not in flags}] if all_shapes else []), default=str)
            weight = sum(v for k, v in launch.kwargs.items() if k.startswith("BLOCK"))
            info = {"kernel": launch.kernel.__name__, "dtype": str(dtype).removeprefix("torch."),
                    "shape": shape, "flags": flags,
                    "config": {k: v for k, v in launch.kwargs.items() if k.startswith("BLOCK") or k.startswith("num_")}}
            if key not in chosen or weight > chosen[key][2]:
                chosen[key] = (info, launch, weight)
    return [(info, launch) for info, launch, _ in chosen.values()]


def compile_all(all_shapes: bool = False) -> list[dict]:
    """Compile :func:`specializations`; one row each with the compiler's resource report."""
    rows = []
    for info, launch in specializations(all_shapes):
        compiled = compile_launch(launch)
        (usage,) = resource_usage(compiled.asm["cubin"])
        rows.append({**info, "registers": usage["registers"], "spill_bytes": usage["stack"],
                     "shared": compiled.metadata.shared, "arch": f"sm_{compiled.metadata.target.arch}"})
    return rows


def cuda_kernels() -> list[dict]:
    """Resource usage of the fused CUDA kernels compiled into ``medinfer._C``, per architecture."""
    native = _ext.native()
    if native is None or not _ext.has_cuda():
        raise RuntimeError(_ext.unavailable_reason() or "medinfer._C was built without its CUDA sources")
    return [r for r in resource_usage(Path(native.__file__))
            if "dilated_branches_kernel" in r["function"] or "octave_conv_kernel" in r["function"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medinfer.bench.aot", description=__doc__.split("\n\n")[0])
    parser.add_argument("--all", action="store_true", help="every distinct shape, not one per flag set")
    parser.add_argument("--cuda", action="store_true", help="report medinfer._C's CUDA kernels instead")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    rows = cuda_kernels() if args.cuda else compile_all(args.all)
    table = format_cuda_table(rows) if args.cuda else format_table(rows)
    print(json.dumps(rows, default=str) if args.json else "\n".join(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
