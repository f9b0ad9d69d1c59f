"""The C++ runtime's own tests (csrc/tests/test_runtime.cpp): thread pool, float16, batcher, prefetcher."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "csrc" / "tests" / "run.sh"


@pytest.mark.slow
def test_native_runtime_tests_pass(tmp_path):
    if shutil.which("cmake") is None or shutil.which("c++") is None:
        pytest.skip("needs CMake and a C++ compiler")
    proc = subprocess.run(["bash", str(SCRIPT), "plain"], capture_output=True, text=True, timeout=600,
                          env={"MEDINFER_NATIVE_TEST_BUILD": str(tmp_path), "PATH": os.environ["PATH"]})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 failed" in proc.stdout
