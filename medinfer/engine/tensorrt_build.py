"""``medinfer build``: a TensorRT plan from a medinfer ONNX export.

One optimisation profile over the batch range (``--batch MIN:OPT:MAX``), fp32 / fp16 / int8 precision,
a timing cache kept per GPU and TensorRT version (later builds of similar graphs reuse its tactic
timings), a progress bar per build phase, medinfer's plugins registered before parsing, and the
``.plan.json`` record (:class:`~medinfer.engine.tensorrt_backend.PlanRecord`) written beside the plan.

INT8 uses TensorRT's entropy calibration (``IInt8EntropyCalibrator2``) on slices of the series in a
directory, preprocessed exactly as at inference. TensorRT 10 marks implicit calibration deprecated in
favour of explicit quantization (Q/DQ nodes from NVIDIA's Model Optimizer); it still builds, and the
calibration cache beside the plan lets a rebuild skip the calibration pass.

Like the backend, this module is written against TensorRT 10's documented Python API and type-checked
against ``tensorrt-stubs``; it cannot run where TensorRT is absent.
"""

from __future__ import annotations

import re
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from medinfer.engine.tensorrt_backend import PRECISIONS, PlanRecord, current_gpu, ensure_tensorrt, register_plugins
from medinfer.errors import EngineError, InputError
from medinfer.metadata import ModelMetadata, atomic_write, sha256_bytes
from medinfer.onnx_file import GRAPH_SHA_KEY, INPUT_NAME, read_export


def parse_batch_range(text: str) -> tuple[int, int, int]:
    """``"1:32:128"`` → (1, 32, 128); a single number fixes the batch size."""
    parts = text.split(":")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise InputError(f"--batch expects MIN:OPT:MAX (e.g. 1:32:128) or one size, got {text!r}") from None
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
        raise InputError(f"--batch expects 1 <= MIN <= OPT <= MAX, got {text!r}")
    return values[0], values[1], values[2]


def default_timing_cache(gpu: dict[str, Any], tensorrt_version: str) -> Path:
    from medinfer.samples import cache_dir

    tag = re.sub(r"[^A-Za-z0-9.]+", "_", f"{gpu['name']}-sm{''.join(map(str, gpu['compute_capability']))}")
    return cache_dir() / "tensorrt" / f"timing-{tag}-trt{tensorrt_version}.cache"


def calibration_batches(directory: Path, metadata: ModelMetadata, batch_size: int,
                        max_slices: int) -> Iterator[np.ndarray]:
    """Full float32 batches of preprocessed slices from the series under ``directory``, at most
    ``max_slices`` slices, spread over the series found."""
    from medinfer.io import load_study
    from medinfer.runtime import SeriesBatcher

    series = load_study(directory)
    if not series:
        raise InputError(f"{directory}: no series to calibrate INT8 with")
    taken = 0
    with SeriesBatcher(metadata.preprocess, batch_size).run(series) as run:
        for batch in run:
            if batch.count < batch_size or taken >= max_slices:
                break  # TensorRT calibrates with full batches only
            yield batch.data
            taken += batch_size


def _calibrator(batches: Iterator[np.ndarray], batch_size: int, shape: tuple[int, ...], cache: Path):
    import tensorrt as trt
    import torch

    class SeriesCalibrator(trt.IInt8EntropyCalibrator2):
        """Feeds preprocessed series slices to TensorRT's entropy calibration; caches the result."""

        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.device_batch = torch.empty((batch_size, *shape), dtype=torch.float32, device="cuda")

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names: list[str]) -> list[int]:
            data = next(batches, None)
            if data is None:
                return []  # an empty list tells TensorRT calibration data is exhausted
            self.device_batch.copy_(torch.from_numpy(data))
            return [int(self.device_batch.data_ptr())]

        def read_calibration_cache(self) -> Any:
            # None, not b"": TensorRT reads an empty buffer as a (broken) cache rather than "calibrate".
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data) -> None:
            cache.write_bytes(bytes(data))

    return SeriesCalibrator()


def _progress_monitor(enabled: bool | None):
    import tensorrt as trt

    from medinfer.progress import progress_bar

    class TqdmMonitor(trt.IProgressMonitor):
        """One progress bar per TensorRT build phase."""

        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.bars: dict[str, Any] = {}

        def phase_start(self, phase_name: str, parent_phase: str, num_steps: int) -> None:
            self.bars[phase_name] = progress_bar(total=num_steps, desc=phase_name, leave=False,
                                                 position=len(self.bars), progress=enabled)

        def step_complete(self, phase_name: str, step: int) -> bool:
            bar = self.bars.get(phase_name)
            if bar is not None:
                bar.update(step + 1 - bar.n)
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            bar = self.bars.pop(phase_name, None)
            if bar is not None:
                bar.close()

    return TqdmMonitor()


def build_engine(onnx_path: str | Path, plan_path: str | Path, *, precision: str = "fp16",
                 batch: tuple[int, int, int] = (1, 32, 128), calibration: str | Path | None = None,
                 calibration_slices: int = 512, timing_cache: str | Path | None = None,
                 workspace_gib: float | None = None, progress: bool | None = None) -> Path:
    """Build ``plan_path`` (and its ``.plan.json``) from a medinfer ONNX export. Returns the plan path."""
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "int8" and calibration is None:
        raise InputError("int8 needs calibration data: pass a directory of series (--calibration DIR)")
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    onnx_bytes, proto, meta = read_export(onnx_path)
    ensure_tensorrt()
    import tensorrt as trt

    gpu = current_gpu()
    started = time.perf_counter()
    register_plugins()

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes, str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"{onnx_path}: TensorRT's ONNX parser refused the graph: {errors}")

    config = builder.create_builder_config()
    if workspace_gib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 2**30))
    lo, opt, hi = batch
    c, h, w = meta.input_shape
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, trt.Dims([lo, c, h, w]), trt.Dims([opt, c, h, w]), trt.Dims([hi, c, h, w]))
    config.add_optimization_profile(profile)
    calibration_info: dict[str, Any] = {}
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # int8 layers fall back to fp16, not fp32, where int8 loses
    if precision == "int8":
        assert calibration is not None
        cache = plan_path.with_name(plan_path.name + ".calibration")
        batches = calibration_batches(Path(calibration), meta, opt, calibration_slices)
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _calibrator(batches, opt, meta.input_shape, cache)
        config.set_calibration_profile(profile)
        calibration_info = {"directory": str(calibration), "max_slices": calibration_slices, "cache": cache.name}

    cache_path = Path(timing_cache) if timing_cache else default_timing_cache(gpu, trt.__version__)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    timing = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(timing, ignore_mismatch=False)
    config.progress_monitor = _progress_monitor(progress)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"{onnx_path}: TensorRT could not build a plan (see its log above)")
    plan = bytes(serialized)
    cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(plan_path, plan)
    command = shlex.join(["medinfer", "build", str(onnx_path), "-o", str(plan_path), "--precision", precision,
                          "--batch", f"{lo}:{opt}:{hi}"] + (["--calibration", str(calibration)] if calibration else []))
    PlanRecord(
        tensorrt_version=trt.__version__, gpu=gpu, precision=precision, profile={"min": lo, "opt": opt, "max": hi},
        onnx={"file": onnx_path.name, "sha256": sha256_bytes(onnx_bytes),
              "graph_sha256": {p.key: p.value for p in proto.metadata_props}[GRAPH_SHA_KEY]},
        plan_sha256=sha256_bytes(plan), metadata=meta,
        build={"command": command, "seconds": round(time.perf_counter() - started, 1), "timing_cache": str(cache_path),
               "calibration": calibration_info, "python": sys.version.split()[0]},
    ).write(plan_path)
    return plan_path
