"""medinfer.ops.tensorrt_plugins: importable anywhere, explicit about what is missing, type-correct against
TensorRT's Python API, and — where TensorRT and a GPU exist (``-m tensorrt``) — running exported plugin nodes.

The type check needs ``mypy`` and TensorRT's stubs (``pip install --no-deps tensorrt-stubs``; CI installs
them). The stubs as published do not parse (parameters named ``in``, a required parameter after optional
ones), so the test type-checks against a copy with those two defects repaired, and first proves the stubs are
in effect by type-checking a misuse of the API that must fail.
"""

from __future__ import annotations

import ast
import importlib.util
import keyword
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from medinfer import backends
from medinfer.ops import tensorrt_plugins


def test_registration_without_tensorrt_says_why():
    if tensorrt_plugins.unavailable_reason() is None:
        pytest.skip("TensorRT and the CUDA kernels are available here")
    with pytest.raises(backends.BackendUnavailable, match="TensorRT plugins cannot be registered: .{20,}"):
        tensorrt_plugins.register_plugins()


def test_importable_when_tensorrt_is_absent(tmp_path):
    code = textwrap.dedent("""
        import importlib.abc, sys
        class Hide(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "tensorrt":
                    raise ImportError("hidden by the test")
        sys.meta_path.insert(0, Hide())
        from medinfer.ops import tensorrt_plugins
        assert tensorrt_plugins.trt is None
        try:
            tensorrt_plugins.register_plugins()
        except Exception as exc:
            print(type(exc).__name__, exc)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("BackendUnavailable") and "TensorRT is not installed" in proc.stdout


# --- type check against tensorrt-stubs -------------------------------------------------------------------------
def _split_parameters(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [*parts, current]


def _repair_signature(line: str) -> str | None:
    """The published stubs' two syntax defects, on one ``def`` line: keyword parameter names get a trailing
    underscore; a parameter without default after one with a default gets ``= ...``."""
    m = re.match(r"^(\s*def \w+\()(.*)(\)\s*(?:->.*)?:\s*)$", line)
    if not m:
        return None
    fixed, seen_default = [], False
    for p in _split_parameters(m.group(2)):
        name = p.split(":")[0].split("=")[0].strip()
        if keyword.iskeyword(name):
            p = p.replace(name, name + "_", 1)
        if "=" in p:
            seen_default = True
        elif seen_default and name and not name.startswith("*"):
            p += " = ..."
        fixed.append(p)
    return m.group(1) + ",".join(fixed) + m.group(3)


def repair_stub(path: Path) -> None:
    lines = path.read_text().split("\n")
    for _ in range(len(lines)):
        try:
            ast.parse("\n".join(lines))
            break
        except SyntaxError as exc:
            fixed = _repair_signature(lines[exc.lineno - 1])
            if fixed is None or fixed == lines[exc.lineno - 1]:
                raise AssertionError(f"unexpected syntax error in {path}:{exc.lineno}: {exc.msg}") from exc
            lines[exc.lineno - 1] = fixed
    path.write_text("\n".join(lines))


def stub_copy(tmp_path: Path) -> Path:
    root = tmp_path / "stubs"
    for package in ("tensorrt", "tensorrt_bindings"):
        spec = importlib.util.find_spec(package)
        source = Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else None
        if source is None or not (source / "__init__.pyi").is_file():
            pytest.skip("tensorrt-stubs is not installed: pip install --no-deps tensorrt-stubs")
        shutil.copytree(source, root / package, ignore=shutil.ignore_patterns("*.py", "*.so", "__pycache__"))
    for stub in root.rglob("*.pyi"):
        repair_stub(stub)
    return root


def mypy(tmp_path: Path, stubs: Path, *files: Path) -> tuple[str, int]:
    api = pytest.importorskip("mypy.api")
    config = tmp_path / "mypy.ini"
    config.write_text(textwrap.dedent(f"""
        [mypy]
        python_version = 3.10
        mypy_path = {stubs}
        follow_imports = silent
        ignore_missing_imports = true
        cache_dir = {tmp_path / "mypy-cache"}
        [mypy-tensorrt.*,tensorrt_bindings.*]
        ignore_errors = true
    """))
    out, err, status = api.run(["--config-file", str(config), *map(str, files)])
    return out + err, status


def test_plugins_type_check_against_tensorrt_stubs(tmp_path):
    stubs = stub_copy(tmp_path)
    probe = tmp_path / "misuse.py"
    probe.write_text(textwrap.dedent("""
        import tensorrt as trt

        class Wrong(trt.IPluginV3OneBuild):
            def get_output_data_types(self, input_types: list[trt.DataType]) -> list[trt.DataType]:
                return input_types[0]

        trt.DataType.NOT_A_TYPE
    """))
    report, status = mypy(tmp_path, stubs, probe)
    assert status == 1 and "misuse.py:6" in report and "NOT_A_TYPE" in report, report  # the stubs are in effect
    report, status = mypy(tmp_path, stubs, Path(tensorrt_plugins.__file__))
    assert status == 0, report


# --- with TensorRT and a GPU (not available where this was written) ------------------------------------------------
@pytest.mark.tensorrt
def test_register_plugins_is_idempotent():
    import tensorrt as trt

    tensorrt_plugins.register_plugins()
    tensorrt_plugins.register_plugins()
    registry = trt.get_plugin_registry()
    for name in ("DilatedBranches", "OctaveConv"):
        assert registry.get_creator(name, tensorrt_plugins.PLUGIN_VERSION, tensorrt_plugins.PLUGIN_NAMESPACE)


@pytest.mark.tensorrt
def test_exported_ddc_block_runs_in_tensorrt(tmp_path, rng):
    import tensorrt as trt

    from medinfer.models import layers as L
    from medinfer.ops import onnx as ops_onnx

    block = L.DenseAtrousBlock(16).eval()
    x = torch.from_numpy(rng.standard_normal((4, 16, 9, 11))).float()
    with ops_onnx.plugin_nodes():
        program = torch.onnx.export(block, (x,), dynamo=True, custom_translation_table=ops_onnx.translation_table())
    tensorrt_plugins.register_plugins()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(program.model_proto.SerializeToString()), [str(parser.get_error(i))
                                                                   for i in range(parser.num_errors)]
    plan = builder.build_serialized_network(network, builder.create_builder_config())
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    context = engine.create_execution_context()
    x_gpu = x.cuda()
    out = torch.empty((4, 16, 9, 11), device="cuda")
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    for name in names:
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        context.set_tensor_address(name, (x_gpu if is_input else out).data_ptr())
    assert context.execute_async_v3(torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    with torch.no_grad():
        expected = block(x)
    np.testing.assert_allclose(out.cpu().numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)
