"""medinfer's TensorRT code, type-checked with mypy against ``tensorrt-stubs``.

TensorRT itself cannot be installed on the machines medinfer is developed and tested on, so this is how its
calls into TensorRT's Python API are checked here. ``tensorrt-stubs`` is installed with
``pip install --no-deps tensorrt-stubs`` (its dependency on ``tensorrt`` cannot be met without NVIDIA's index);
``.ci/run`` does so. The stubs as published do not parse (parameters named ``in``, a parameter without
default after defaulted ones, no ``py.typed``), so the test checks against a copy with those repaired.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

SOURCE_ROOT = Path(__file__).resolve().parents[1]
MODULES = ["medinfer.engine.tensorrt_backend", "medinfer.engine.tensorrt_build", "medinfer.ops.tensorrt_plugins",
           "medinfer.ops.dilated", "medinfer.ops.octave"]  # the last two: the plugins' op-specific halves
MYPY_CONFIG = """
[mypy]
python_version = 3.10
ignore_missing_imports = True
follow_imports = silent
# torch's own annotations are not what is checked here, and analysing them takes minutes.
[mypy-torch.*]
follow_imports = skip
# Errors inside the stubs themselves (undefined names, pybind11 artefacts) are NVIDIA's, not ours; their
# declarations are still used to check our calls.
[mypy-tensorrt.*,tensorrt_bindings.*]
ignore_errors = True
"""


def _split_params(params: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in params:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [*out, cur] if cur.strip() else out


def repair_stub_line(line: str) -> str:
    """Make one line of tensorrt-stubs valid Python: rename parameters called ``in``; give a default to
    parameters that follow defaulted ones."""
    m = re.match(r"(\s*def \w+\()(.*)(\) ->.*)$", line)
    if not m:
        return line
    params = [re.sub(r"^(\s*)in:", r"\1in_:", p) for p in _split_params(m.group(2))]
    seen_default = False
    for i, p in enumerate(params):
        if "=" in p:
            seen_default = True
        elif seen_default and not p.strip().startswith("*"):
            params[i] = f"{p} = ..."
    return m.group(1) + ",".join(params) + m.group(3)


@pytest.fixture(scope="session")
def tensorrt_stubs(tmp_path_factory) -> Path:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (it is in the `test` extra)")
    try:
        dist = metadata.distribution("tensorrt-stubs")
    except metadata.PackageNotFoundError:
        pytest.skip("tensorrt-stubs is not installed: pip install --no-deps tensorrt-stubs")
    root = tmp_path_factory.mktemp("stubs")
    for f in dist.files or []:
        if f.suffix == ".pyi" and f.parts[0] in ("tensorrt", "tensorrt_bindings"):
            target = root / f.parts[0] / Path(*f.parts[1:])
            target.parent.mkdir(parents=True, exist_ok=True)
            text = Path(dist.locate_file(f)).read_text()
            target.write_text("\n".join(repair_stub_line(line) for line in text.splitlines()) + "\n")
    (root / "tensorrt_libs").mkdir()
    (root / "tensorrt_libs" / "__init__.pyi").write_text("")
    (root / "mypy.ini").write_text(MYPY_CONFIG)
    return root


def test_stub_repair():
    assert repair_stub_line("    def f(self, in: list[int], out: dict[str, int]) -> None:") == \
        "    def f(self, in_: list[int], out: dict[str, int]) -> None:"
    assert repair_stub_line("    def g(self, a: int = None, b: int) -> X:") == \
        "    def g(self, a: int = None, b: int = ...) -> X:"


def run_mypy(stubs: Path, *files: str) -> subprocess.CompletedProcess:
    # One cache beside the stubs: the second run reuses the first's analysis of the stub tree.
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(stubs / "mypy.ini"), "--cache-dir", str(stubs / ".cache"),
         *files],
        capture_output=True, text=True, env={"MYPYPATH": str(stubs), "PATH": "/usr/bin:/bin"}, timeout=600,
    )


def test_tensorrt_code_typechecks(tensorrt_stubs):
    # The repository's sources, not the installed copy: given a file in site-packages, mypy takes
    # site-packages for a source root and stops at every library there that shadows a stub (mypy_extensions).
    sources = [str(SOURCE_ROOT / (m.replace(".", "/") + ".py")) for m in MODULES]
    proc = run_mypy(tensorrt_stubs, *sources)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success" in proc.stdout


def test_a_wrong_call_is_caught(tensorrt_stubs, tmp_path):
    # The check has teeth: a misspelt builder method and a wrong argument type are reported.
    bad = tmp_path / "bad_trt.py"
    bad.write_text("def f() -> None:\n    import tensorrt as trt\n"
                   "    config = trt.Builder(trt.Logger(trt.Logger.WARNING)).create_builder_config()\n"
                   "    config.set_flagg(trt.BuilderFlag.FP16)\n"
                   "    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 'lots')\n")
    proc = run_mypy(tensorrt_stubs, str(bad))
    assert 'has no attribute "set_flagg"' in proc.stdout
    assert "incompatible type" in proc.stdout
