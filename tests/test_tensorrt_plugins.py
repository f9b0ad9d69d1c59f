"""medinfer.ops.tensorrt_plugins: importable anywhere, explicit about what is missing, and — where TensorRT
and a GPU exist (``-m tensorrt``) — registering its creators and running exported plugin nodes. Its type
check against TensorRT's API (``tensorrt-stubs``) is in ``test_tensorrt_typecheck.py`` with the engine's."""

from __future__ import annotations

import subprocess
import sys
import textwrap

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
