"""Ahead-of-time compilation of Triton launches for the GPU, on a machine without one, and the compiler's
resource reports (registers, spills, shared memory) of what was compiled.

Given a planned launch (:class:`medinfer.kernels.conv_common.Launch`), :func:`compile_launch` compiles it for
sm_90 with the specialisation Triton's launcher would give the same arguments on a GPU (16-byte-aligned
pointers, integers divisible by 16, integers equal to 1), so its report describes what the GPU would run.
Which launches a model makes is the ops' business: ``python -m medinfer.bench.aot`` asks them and prints
the tables. Importing this module does not import Triton.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medinfer.kernels.conv_common import Launch

TARGET_ARCH = 90  # sm_90 (Hopper), warp size 32


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


def format_cuda_table(rows: list[dict]) -> list[str]:
    lines = [f"{'kernel':<64} {'arch':<6} {'regs':>4} {'spill B':>7} {'smem B':>7}"]
    for r in rows:
        name = r["function"].split("(")[0].removeprefix("void ").removeprefix("medinfer::cuda::")
        lines.append(f"{name[:64]:<64} {r['arch']:<6} {r['registers']:>4} {r['stack']:>7} {r['shared']:>7}")
    return lines
