"""The fused kernels compile for the GPU on a machine without one; their resource reports land in the summary.

* Triton: every kernel specialisation ddc_resnet101 uses (dtype × constexpr flags, at the heaviest shape of
  each) compiles ahead of time for sm_90 (``python -m medinfer.bench.aot``, in a fresh interpreter
  because this session runs Triton in interpreter mode), without register spills and within the SM's shared
  memory. ``pytest -m slow`` compiles every distinct shape, NCHW and channels-last.
* CUDA: with nvcc on PATH the extension carries its CUDA sources for sm_80 and sm_90 (cuobjdump), including
  both fused kernels in every dtype.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from medinfer.kernels import aot

from medinfer.bench import aot as report

SM90_SHARED_MEMORY = 227 * 1024  # the most dynamic shared memory one block may use on an H100


def compile_report(tmp_path, *flags: str) -> list[dict]:
    pytest.importorskip("triton")
    if aot.cuobjdump() is None:
        pytest.skip("cuobjdump is neither on PATH nor bundled with Triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-m", "medinfer.bench.aot", "--json", *flags], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check_rows(rows: list[dict]) -> None:
    for r in rows:
        assert r["arch"] == "sm_90"
        assert r["spill_bytes"] == 0, f"{r['kernel']} {r['dtype']} {r['flags']} spills {r['spill_bytes']} bytes"
        assert 0 < r["registers"] <= 255
        assert r["shared"] <= SM90_SHARED_MEMORY, f"{r['kernel']} {r['flags']} needs {r['shared']} B of shared memory"


def test_triton_kernels_compile_for_sm90(tmp_path, terminal_report):
    rows = compile_report(tmp_path)
    check_rows(rows)
    flag_sets = {(r["kernel"], r["dtype"], json.dumps(r["flags"])) for r in rows}
    assert len(flag_sets) == len(rows)
    per_kernel = {k: {r["dtype"] for r in rows if r["kernel"] == k} for k in {r["kernel"] for r in rows}}
    # The DDC block's three calls; octave 3×3 at stride 1 and 2, and the 1×1 first and last layers.
    assert sorted(sum(r["kernel"] == k for r in rows) for k in per_kernel) == [9, 12]
    assert all(dtypes == {"float16", "bfloat16", "float32"} for dtypes in per_kernel.values())
    terminal_report("medinfer: Triton kernels compiled for sm_90, one per (dtype, flags) ddc_resnet101 uses",
                    aot.format_table(rows))


@pytest.mark.slow
def test_every_model_shape_compiles_for_sm90(tmp_path, terminal_report):
    rows = compile_report(tmp_path, "--all")
    check_rows(rows)
    terminal_report("medinfer: Triton kernels compiled for sm_90, every ddc_resnet101 shape", aot.format_table(rows))


def test_cuda_sources_compile_for_sm80_and_sm90(native, terminal_report):
    info = native.build_info()
    if not info["cuda"]:
        if shutil.which("nvcc"):
            pytest.fail("nvcc is on PATH but medinfer._C was built without its CUDA sources")
        pytest.skip("medinfer._C was built without CUDA: no nvcc on PATH")
    assert {"80", "90"} <= set(info["cuda_archs"].split(","))
    if aot.cuobjdump() is None:
        pytest.skip("cuobjdump is neither on PATH nor bundled with Triton")
    assert {"sm_80", "sm_90"} <= set(aot.list_elf(Path(native.__file__)))
    rows = report.cuda_kernels()
    for arch in ("sm_80", "sm_90"):
        names = {r["function"] for r in rows if r["arch"] == arch}
        for dtype in ("float", "__half", "__nv_bfloat16"):
            assert any(f"dilated_branches_kernel<{dtype}, 64, false>" in n for n in names), (arch, dtype)
            assert any(f"dilated_branches_kernel<{dtype}, 32, true>" in n for n in names), (arch, dtype)
            assert any(f"octave_conv_kernel<{dtype}>" in n for n in names), (arch, dtype)
    terminal_report("medinfer: CUDA kernels in medinfer._C (nvcc; dynamic shared memory not included)",
                    aot.format_cuda_table(rows))
