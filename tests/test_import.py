"""``import medinfer`` on a machine without the extension, a GPU, Triton or TensorRT."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

# Runs in a fresh interpreter where importing the named modules fails as it does on a machine without them
# (ModuleNotFoundError naming the module).
BLOCKER = textwrap.dedent("""
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def __init__(self, names): self.names = names
        def find_spec(self, name, path=None, target=None):
            if name in self.names or name.split(".")[0] in self.names:
                raise ModuleNotFoundError(name + " is hidden by the test", name=name)
    sys.meta_path.insert(0, Block(NAMES))
""")


def run_hidden(names: set[str], cwd, body: str, **values) -> dict:
    """Run ``body`` with ``names`` unimportable and ``values`` bound as globals; return its last line's JSON."""
    code = f"NAMES = {names!r}\n" + "".join(f"{k} = {v!r}\n" for k, v in values.items()) + BLOCKER \
        + textwrap.dedent(body)
    # cwd away from the checkout: `python -c` puts the working directory first on sys.path, and the
    # source tree's medinfer/ (no compiled module, no kernels/) would shadow the installed package.
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_is_light_and_lazy(tmp_path):
    out = run_hidden(set(), tmp_path, """
        import json, sys, medinfer
        print(json.dumps({"torch": "torch" in sys.modules, "version": medinfer.__version__}))
    """)
    assert out == {"torch": False, "version": out["version"]}


def test_works_without_extension_triton_and_tensorrt(tmp_path):
    out = run_hidden({"medinfer._C", "triton", "tensorrt"}, tmp_path, """
        import json
        import numpy as np
        import medinfer, medinfer.kernels
        from medinfer import backends, hu, info
        from medinfer.models import create
        hu_ok = hu.to_hu(np.full((2, 3, 3), 1000, np.int16), 1.0, -1024.0).tolist() == [[[-24.0] * 3] * 3] * 2
        model = create("msfe", layers=(1, 1, 1, 1), planes=(16, 16, 16, 16), stem_width=16)
        import torch
        from medinfer import ops
        from medinfer.ops import onnx, tensorrt_plugins
        x = torch.ones(1, 2, 5, 5)
        fused = ops.dilated_branches(x, [torch.ones(2, 2, 3, 3)], [None], [3])[0].shape == (1, 2, 5, 5)
        rep = info.environment_report()
        print(json.dumps({
            "hu": hu_ok,
            "model": type(model).__name__,
            "ext": rep["extension"],
            "reasons": {r["backend"]: r["reason"] for r in rep["backends"] if r["device"] == "cuda"},
            "engine": backends.select("engine", "cpu").name,
            "ops": fused and tensorrt_plugins.trt is None,
        }))
    """)
    assert out["hu"] and out["model"] == "DDCResNet" and out["engine"] == "onnxruntime" and out["ops"]
    assert out["ext"]["available"] is False
    assert "hidden by the test" in out["ext"]["reason"] and "fallbacks" in out["ext"]["reason"]
    assert "Triton is not installed" in out["reasons"]["triton"]
    assert "medinfer._C could not be imported" in out["reasons"]["cuda"]


def test_series_path_works_without_extension(tmp_path):
    out = run_hidden({"medinfer._C"}, tmp_path, """
        import json, sys
        import numpy as np
        import medinfer
        from medinfer.runtime import SeriesBatcher
        series = medinfer.load_series(np.full((3, 8, 8), 40.0, np.float32))
        batcher = SeriesBatcher(medinfer.Preprocess(size=(4, 4), window=(40, 400)), 2)
        with batcher.run([series]) as run:
            values = [round(float(b.data[: b.count].mean()), 6) for b in run]
        print(json.dumps({"backend": batcher.backend, "values": values, "torch": "torch" in sys.modules}))
    """)
    assert out == {"backend": "numpy", "values": [0.0, 0.0], "torch": False}


def test_onnx_inference_needs_neither_torch_nor_matplotlib(tmp_path, tiny_exports, chest_ct):
    # What a hospital's inference server runs: `pip install medinfer`, no [train] extra.
    onnx_path = str(tiny_exports("resdense_net")["onnx"])
    out = run_hidden({"torch", "matplotlib"}, tmp_path, """
        import contextlib, io, json, sys
        import medinfer
        from medinfer import backends
        from medinfer.cli import main
        result = medinfer.Engine(ONNX).predict(SERIES)
        openvino = (medinfer.Engine(ONNX, backend="openvino").predict(SERIES).label
                    if backends.BACKENDS["openvino"].is_available("cpu") else None)
        with contextlib.redirect_stdout(io.StringIO()) as table:
            cli_rc = main(["predict", SERIES, "--engine", ONNX, "--json", JSON])
        with contextlib.redirect_stdout(io.StringIO()) as info:
            info_rc = main(["info", "--json"])
        with contextlib.redirect_stderr(io.StringIO()) as train_err:
            train_rc = main(["export", ONNX, "-o", "x.onnx"])
        rep = json.loads(info.getvalue())
        print(json.dumps({
            "label": result.label, "slices": len(result.slice_probabilities), "cli": cli_rc, "info": info_rc,
            "openvino": openvino,
            "table": table.getvalue(), "json": json.load(open(JSON))["predictions"][0]["label"],
            "reasons": {r["backend"] + "/" + r["device"]: r["reason"] for r in rep["backends"]},
            "export": [train_rc, train_err.getvalue()],
            "loaded": sorted(m for m in ("torch", "matplotlib") if m in sys.modules),
        }))
    """, ONNX=onnx_path, SERIES=str(chest_ct), JSON=str(tmp_path / "out.json"))
    assert out["slices"] == 64 and out["label"] in ("covid", "non-covid")
    assert out["openvino"] in (None, out["label"])
    assert out["cli"] == 0 and out["json"] == out["label"] and out["label"] in out["table"]
    assert out["info"] == 0 and out["loaded"] == []
    assert out["reasons"]["onnxruntime/cpu"] is None
    assert "PyTorch cannot be imported" in out["reasons"]["torch/cpu"]
    assert "medinfer[train]" in out["reasons"]["torch/cpu"]
    assert all(out["reasons"][f"{name}/{device}"] for name in ("triton", "tensorrt") for device in ("cpu", "cuda"))
    assert out["export"][0] == 1 and "pip install 'medinfer[train]'" in out["export"][1]


def test_without_openvino_the_backend_says_which_extra_brings_it(tmp_path, tiny_exports):
    out = run_hidden({"openvino"}, tmp_path, """
        import json
        import medinfer
        try:
            medinfer.Engine(ONNX, backend="openvino")
            error = ""
        except medinfer.errors.MedinferError as exc:
            error = str(exc)
        print(json.dumps({"error": error, "auto": medinfer.Engine(ONNX).backend}))
    """, ONNX=str(tiny_exports("ddc_resnet101")["onnx"]))
    assert "pip install 'medinfer[openvino]'" in out["error"] and out["auto"] == "onnxruntime"
