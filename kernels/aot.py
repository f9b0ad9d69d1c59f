"""Compile reports of the fused kernels, without a GPU.

``python -m medinfer.kernels.aot`` compiles, for sm_90, every Triton kernel specialisation ``ddc_resnet101``
uses (dtype × constexpr flags; ``--all`` also every distinct shape) and prints registers, spills
(local-memory stack) and shared memory per kernel — the numbers the block sizes in
``dilated_branches.config`` and ``octave_conv.config`` were chosen by. The calls are recorded from a
forward pass of the model on the ``meta`` device and planned by the launchers themselves, and each is
compiled with the specialisation Triton's launcher would give the same arguments on a GPU (16-byte-aligned
pointers, integers divisible by 16, integers equal to 1), so the table describes what the GPU would run.
Run it without ``TRITON_INTERPRET``. ``--cuda`` prints the same report for the CUDA kernels compiled into
``medinfer._C`` (every architecture it carries). Importing this module does not import Triton.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from medinfer.kernels.conv_common import Launch

TARGET_ARCH = 90  # sm_90 (Hopper), warp size 32
DTYPES = (torch.float16, torch.bfloat16, torch.float32)


@contextlib.contextmanager
def _recording() -> Iterator[list[tuple[str, tuple, dict]]]:
    """Record every ``medinfer.ops`` call made inside the block (the model looks the ops up at call time)."""
    from medinfer import ops

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
    from medinfer import models

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
    """The Triton launch the call would make in ``dtype``, or None when it runs the reference."""
    from medinfer.kernels import dilated_branches as dilated_kernel
    from medinfer.kernels import octave_conv as octave_kernel

    from medinfer.ops import dilated, octave

    name, args, kwargs = call
    args = _materialise(args, dtype)
    if name == "octave_conv":
        x_h, x_l, w_hh, w_hl, w_lh, w_ll = args
        # The op's own rule: else the reference runs (an ordinary convolution, another kernel size).
        if not octave.kernel_covers(x_l, w_hh, w_hl):
            return None
        return octave_kernel.plan(x_h, x_l, w_hh, w_hl, w_lh, w_ll, kwargs.get("stride", 1))
    x, weights, biases, dilations = args
    e = kwargs.get("epilogue")
    if e is not None:
        e = dilated.DDCEpilogue(*_materialise((e.weight, e.bias, e.residual), dtype), keep=e.keep)
    keep = dilated._validate(x, list(weights), list(biases), list(dilations), e)
    covered, fused_epilogue = dilated.kernel_covers(weights, e)
    if not covered:
        return None
    if not fused_epilogue:
        return dilated_kernel.plan(*args)
    return dilated_kernel.plan(*args, e.weight, e.bias, e.residual, keep)


def compile_launch(launch: Launch):
    """Compile ``launch`` for sm_90 with the specialisation its arguments would get at launch."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import create_function_from_signature

    target = GPUTarget("cuda", TARGET_ARCH, 32)
    kernel = launch.kernel
    backend = make_backend(target)
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialization, options = binder(*launch.args, **launch.kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(backend, launch.kwargs, bound, specialization, options)
    return triton.compile(ASTSource(kernel, signature, constexprs, attrs), target=target, options=options.__dict__)


def cuobjdump() -> str | None:
    """``cuobjdump`` from PATH, else the one Triton's wheel bundles (found without importing Triton)."""
    found = shutil.which("cuobjdump")
    spec = importlib.util.find_spec("triton")
    if found is None and spec is not None and spec.submodule_search_locations:
        bundled = Path(spec.submodule_search_locations[0]) / "backends" / "nvidia" / "bin" / "cuobjdump"
        found = str(bundled) if bundled.is_file() else None
    return found


def _run_cuobjdump(*args: str) -> str:
    tool = cuobjdump()
    if tool is None:
        raise FileNotFoundError("cuobjdump is neither on PATH nor bundled with Triton")
    return subprocess.run([tool, *args], capture_output=True, text=True, check=True).stdout


def list_elf(library: Path) -> list[str]:
    """The cubin architectures embedded in ``library`` (``cuobjdump --list-elf``), e.g. ['sm_80', 'sm_90']."""
    return sorted(set(re.findall(r"\.(sm_\d+)\.cubin", _run_cuobjdump("--list-elf", str(library)))))


def resource_usage(cubin_or_library: bytes | Path) -> list[dict]:
    """Per-kernel registers, stack (spills) and static shared memory from ``cuobjdump --dump-resource-usage``,
    for a cubin's bytes or a library holding cubins; each row names its kernel and architecture."""
    with tempfile.TemporaryDirectory() as tmp:
        path = cubin_or_library
        if isinstance(cubin_or_library, bytes):
            path = Path(tmp) / "kernel.cubin"
            path.write_bytes(cubin_or_library)
        text = _run_cuobjdump("--dump-resource-usage", str(path))
    demangle = shutil.which("c++filt")
    if demangle:
        text = subprocess.run([demangle], input=text, capture_output=True, text=True, check=True).stdout
    rows, arch, function = [], None, None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("arch ="):
            arch = line.split("=", 1)[1].strip()
        elif line.startswith("Function "):
            function = line[len("Function "):].rstrip(":").replace("(anonymous namespace)::", "")
        elif line.startswith("REG:") and function is not None:
            fields = dict(item.split(":", 1) for item in line.split() if ":" in item)
            rows.append({"function": function, "arch": arch, "registers": int(fields["REG"]),
                         "stack": int(fields["STACK"]), "shared": int(fields["SHARED"]),
                         "local": int(fields["LOCAL"])})
    return rows


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


def _short(value) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return "".join(_short(v) for v in value) if all(isinstance(v, bool) for v in value) else \
            ",".join(map(str, value))
    return str(value)


def format_table(rows: list[dict]) -> list[str]:
    """The rows as a fixed-width table (flags abbreviated: booleans as 0/1)."""
    hidden = {"PRECISION", "HAS_BIAS", "HAS_PBIAS"}
    lines = [f"{'kernel':<24} {'dtype':<8} {'flags':<44} {'x shape':<18} {'regs':>4} {'spill B':>7} {'smem B':>7}"]
    for r in rows:
        flags = " ".join(f"{k.removeprefix('HAS_').lower()}={_short(v)}" for k, v in r["flags"].items()
                         if k not in hidden)
        lines.append(f"{r['kernel'].strip('_'):<24} {r['dtype']:<8} {flags:<44} {str(r['shape']):<18} "
                     f"{r['registers']:>4} {r['spill_bytes']:>7} {r['shared']:>7}")
    return lines


def cuda_kernels() -> list[dict]:
    """Resource usage of the fused CUDA kernels compiled into ``medinfer._C``, per architecture."""
    from medinfer import _ext

    native = _ext.native()
    if native is None or not _ext.has_cuda():
        raise RuntimeError(_ext.unavailable_reason() or "medinfer._C was built without its CUDA sources")
    return [r for r in resource_usage(Path(native.__file__))
            if "dilated_branches_kernel" in r["function"] or "octave_conv_kernel" in r["function"]]


def format_cuda_table(rows: list[dict]) -> list[str]:
    lines = [f"{'kernel':<64} {'arch':<6} {'regs':>4} {'spill B':>7} {'smem B':>7}"]
    for r in rows:
        name = r["function"].split("(")[0].removeprefix("void ").removeprefix("medinfer::cuda::")
        lines.append(f"{name[:64]:<64} {r['arch']:<6} {r['registers']:>4} {r['stack']:>7} {r['shared']:>7}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medinfer.kernels.aot", description=__doc__.split("\n\n")[0])
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
