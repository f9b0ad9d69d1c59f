"""Triton model repositories of medinfer engine files (``medinfer export-triton``), for Triton's native backends.

Each model gets ``DIR/<name>/config.pbtxt``, ``DIR/<name>/1/<model file>`` and ``DIR/<name>/medinfer.json``:

* an ONNX export → ``<name>`` on the ``onnxruntime`` backend, and with ``openvino=True`` also ``<name>_openvino``
  (Triton's OpenVINO backend reads the same ``model.onnx``);
* TensorRT plans → ``<name>_tensorrt``, one ``model_sm<XY>.plan`` per GPU generation, chosen by Triton through
  ``cc_model_filenames``.

Every file is checked with the checks its engine would make before anything is written. The config is built as
Triton's own ``ModelConfig`` protobuf (from tritonclient), so an unknown field or wrong type cannot be written.
Native backends run the exported graph as is, so the tensors keep the graph's names (``input``,
``probabilities``), not those of ``medinfer serve``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from medinfer.errors import EngineError, InputError
from medinfer.metadata import ModelMetadata, atomic_write
from medinfer.onnx_file import INPUT_NAME, OUTPUT_NAME, read_for_runtime
from medinfer.serve import protocol

DEFAULT_MAX_BATCH = 64
DEFAULT_QUEUE_DELAY_US = 500
KINDS = ("KIND_GPU", "KIND_CPU")


@dataclass
class RepositoryModel:
    """One model directory to write: its backend, files (name in the version dir → bytes) and sources."""

    name: str
    backend: str
    metadata: ModelMetadata
    files: dict[str, bytes] = field(default_factory=dict)
    sources: list[Path] = field(default_factory=list)
    cc_files: dict[str, str] = field(default_factory=dict)  # "9.0" -> "model_sm90.plan"
    profile_max: int | None = None  # the smallest max batch of its plans
    profile_opt: int | None = None
    tensorrt_version: str | None = None  # of its plans


def write_repository(engines, repository, *, max_batch: int | None = None, instances: int = 1,
                     kind: str = "KIND_GPU", max_queue_delay_us: int = DEFAULT_QUEUE_DELAY_US,
                     openvino: bool = False, force: bool = False) -> list[RepositoryModel]:
    """Check ``engines`` (``.onnx`` exports, ``.plan`` files with their ``.plan.json``) and write them as a Triton
    model repository under ``repository``. Returns the models written."""
    import tritonclient.grpc  # noqa: F401  (missing: fail, naming the [remote] extra, before any file is read)

    if kind not in KINDS:
        raise InputError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if instances < 1 or (max_batch is not None and max_batch < 1) or max_queue_delay_us < 0:
        raise InputError("instances and max batch must be positive, the queue delay not negative")
    models = collect(engines, openvino=openvino)
    repository = Path(repository)
    for model in models:  # refuse before writing anything
        target = repository / model.name
        if target.is_dir() and any(target.iterdir()) and not force:
            raise InputError(f"{target}: already holds a model; pass --force to replace it")
    for model in models:
        batch = model_max_batch(model, max_batch)
        config = model_config(model, batch, instances=instances, kind=kind, max_queue_delay_us=max_queue_delay_us)
        target = repository / model.name
        shutil.rmtree(target, ignore_errors=True)
        (target / "1").mkdir(parents=True)
        for name, data in model.files.items():
            atomic_write(target / "1" / name, data)
        atomic_write(target / "config.pbtxt", config_text(config).encode())
        doc = {"triton_model": model.name, "backend": model.backend, "max_batch_size": batch,
               "sources": [str(s) for s in model.sources], "metadata": model.metadata.to_dict()}
        atomic_write(target / "medinfer.json", (json.dumps(doc, indent=2) + "\n").encode())
    return models


def collect(engines, *, openvino: bool) -> list[RepositoryModel]:
    """The models the engine files make, checked: one per ONNX export and backend, one per model's plans."""
    models: dict[str, RepositoryModel] = {}
    for path in map(Path, engines):
        if path.suffix == ".onnx":
            data, _, meta = read_for_runtime(path, "Triton's ONNX Runtime backend")
            for backend, suffix in [("onnxruntime", "")] + ([("openvino", "_openvino")] if openvino else []):
                model = _model(models, protocol.model_name(meta.name) + suffix, backend, meta, path)
                if model.files:
                    raise InputError(f"{path}: a second ONNX export of model {meta.name!r} (the first is "
                                     f"{model.sources[0]}); Triton names models by name, export one at a time")
                model.files["model.onnx"] = data
                model.sources.append(path)
        elif path.suffix == ".plan":
            _add_plan(models, path)
        else:
            raise InputError(f"{path}: not an engine Triton runs natively (expected a .onnx export or a .plan)")
    if not models:
        raise InputError("no engine files given")
    return list(models.values())


def _model(models: dict[str, RepositoryModel], name: str, backend: str, meta: ModelMetadata,
           path: Path) -> RepositoryModel:
    model = models.setdefault(name, RepositoryModel(name=name, backend=backend, metadata=meta))
    if _identity(model.metadata) != _identity(meta):  # one Triton name, two models: one would hide the other
        raise InputError(f"{path}: its model {meta.name!r} (weights {meta.weights_sha256[:12]}) differs from the one "
                         f"in {model.sources[0]} (weights {model.metadata.weights_sha256[:12]}) but would get the "
                         f"same Triton name {name!r}")
    return model


def _identity(meta: ModelMetadata) -> tuple:
    """What makes two engine files the same model (the medinfer version that wrote them does not)."""
    return meta.model, meta.class_names, meta.preprocess, meta.weights_sha256


def _add_plan(models: dict[str, RepositoryModel], path: Path) -> None:
    from medinfer.engine.tensorrt_backend import PlanRecord

    record = PlanRecord.read(path)
    data = path.read_bytes()
    record.check_plan(path, data)
    cc = record.gpu.get("compute_capability")
    if not (isinstance(cc, list) and len(cc) == 2 and all(isinstance(v, int) for v in cc)):
        raise EngineError(f"{path}: its record names no compute capability of the GPU it was built for, which "
                          f"Triton needs to pick the plan per GPU (cc_model_filenames); {record.rebuild_hint()}")
    if record.profile["min"] > 1:
        raise EngineError(f"{path}: its batch profile starts at {record.profile['min']}, but Triton sends batches "
                          f"from 1; rebuild it with `--batch 1:{record.profile['opt']}:{record.profile['max']}`")
    meta = record.metadata
    model = _model(models, protocol.model_name(meta.name) + "_tensorrt", "tensorrt", meta, path)
    key, filename = f"{cc[0]}.{cc[1]}", f"model_sm{cc[0]}{cc[1]}.plan"
    if key in model.cc_files:
        raise InputError(f"{path}: a second plan of {meta.name!r} for compute capability {key} (the first is "
                         f"{model.sources[list(model.cc_files).index(key)]})")
    if model.tensorrt_version not in (None, record.tensorrt_version):  # one Triton container has one TensorRT
        raise InputError(f"{path}: built with TensorRT {record.tensorrt_version}, the other plans of {meta.name!r} "
                         f"with {model.tensorrt_version}; one server loads plans of one TensorRT version")
    model.tensorrt_version = record.tensorrt_version
    model.cc_files[key] = filename
    model.files[filename] = data
    model.sources.append(path)
    model.profile_max = min(filter(None, (model.profile_max, record.profile["max"])))
    model.profile_opt = min(filter(None, (model.profile_opt, record.profile["opt"])))


def model_max_batch(model: RepositoryModel, requested: int | None) -> int:
    """``requested`` (default 64), or for plans their profile's max; more than a plan takes is refused."""
    if model.profile_max is None:
        return requested or DEFAULT_MAX_BATCH
    if requested is not None and requested > model.profile_max:
        raise InputError(f"--max-batch {requested}: the plans of {model.name} take batches of "
                         f"{model.profile_max} at most (their profile); rebuild them or ask for less")
    return requested or model.profile_max


def model_config(model: RepositoryModel, max_batch: int, *, instances: int, kind: str, max_queue_delay_us: int):
    """The model's Triton ``ModelConfig`` message."""
    from tritonclient.grpc import model_config_pb2 as pb

    meta = model.metadata
    config = pb.ModelConfig(name=model.name, backend=model.backend, max_batch_size=max_batch)
    # Native backends feed the graph's own tensors, and a plan's IO stays float32 whatever its precision.
    config.input.add(name=INPUT_NAME, data_type=pb.TYPE_FP32, dims=list(meta.input_shape))
    config.output.add(name=OUTPUT_NAME, data_type=pb.TYPE_FP32, dims=[len(meta.class_names)])
    preferred = sorted({min(model.profile_opt or max_batch, max_batch), max_batch})
    config.dynamic_batching.preferred_batch_size.extend(preferred)
    config.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_us
    # Plans run on GPUs only; Triton's OpenVINO backend on CPUs only.
    group_kind = {"tensorrt": "KIND_GPU", "openvino": "KIND_CPU"}.get(model.backend, kind)
    config.instance_group.add(count=instances, kind=pb.ModelInstanceGroup.Kind.Value(group_kind))
    for n in sorted({1, max_batch}):
        warmup = config.model_warmup.add(name=f"zeros_batch_{n}", batch_size=n)
        warmup.inputs[INPUT_NAME].CopyFrom(pb.ModelWarmup.Input(data_type=pb.TYPE_FP32, dims=list(meta.input_shape),
                                                                zero_data=True))
    if model.cc_files:
        config.cc_model_filenames.update(model.cc_files)
    config.parameters[protocol.METADATA_PARAMETER].string_value = json.dumps(meta.to_dict(), sort_keys=True)
    return config


def config_text(config) -> str:
    """``config.pbtxt``: the message in protobuf text format, as Triton parses it."""
    from google.protobuf import text_format  # tritonclient brings protobuf

    return text_format.MessageToString(config)
