"""ONNX export: ``export_onnx(model_or_checkpoint, path)`` and ``medinfer export``.

The graph follows :mod:`medinfer.onnx_file` (the contract engines read, without PyTorch): it returns
``probabilities`` (softmax over the classes), so every engine built from it answers in probabilities. The
batch dimension is dynamic unless asked otherwise.

Each export is checked before it is handed back: ``onnx.checker`` full check (with shape inference), and a
parity run of ONNX Runtime against PyTorch on a fresh random batch (fp32, max abs difference of the
probabilities ≤ ``atol``, 1e-4 by default). The file carries :class:`~medinfer.metadata.ModelMetadata` in
``metadata_props`` plus a SHA-256 of the graph, which :class:`medinfer.Engine` verifies before use
(:func:`medinfer.onnx_file.read_export`).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from medinfer.errors import MedinferError
from medinfer.metadata import ModelMetadata, atomic_write
from medinfer.onnx_file import (
    CHECK_KEY,
    DIGEST_KEY,
    GRAPH_SHA_KEY,
    INPUT_NAME,
    OUTPUT_NAME,
    export_digest,
    graph_sha256,
    plugin_ops,
    set_props,
)
from medinfer.ops import onnx as ops_onnx
from medinfer.preprocess import Preprocess

DEFAULT_OPSET = 20  # inside TensorRT 10's 9..24 and ONNX Runtime's supported range


class ExportError(MedinferError, RuntimeError):
    """The exported graph failed its checks; the message says which and by how much."""


class Probabilities(nn.Module):
    """The model followed by a softmax over classes: what an exported engine returns."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(input), dim=1)


def _resolve(model_or_checkpoint, class_names, preprocess) -> tuple[nn.Module, ModelMetadata]:
    if isinstance(model_or_checkpoint, nn.Module):
        model = model_or_checkpoint
        meta = ModelMetadata.for_model(model, class_names=class_names, preprocess=preprocess)
        # A private eval-mode CPU copy: exporting must not move the caller's model or change its mode.
        model = copy.deepcopy(model).float().cpu().eval()
        model.creation = meta.model
        return model, meta
    from medinfer.checkpoint import load_checkpoint

    ckpt = load_checkpoint(model_or_checkpoint)
    meta = ckpt.metadata
    if class_names is not None or preprocess is not None:
        meta = ModelMetadata(model=meta.model, class_names=tuple(class_names or meta.class_names),
                             preprocess=preprocess or meta.preprocess, weights_sha256=meta.weights_sha256)
    return ckpt.model, meta


@contextlib.contextmanager
def _quiet_exporter():
    # torch.onnx prints progress lines and warns about optional torchvision ops and its own deprecated
    # internals (pytree LeafSpec); our own progress bar says what is happening, and its errors still propagate.
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            yield
    finally:
        logger.setLevel(level)


def _parity(proto: onnx.ModelProto, model: nn.Module, input_shape: tuple[int, int, int], batch: int,
            plugins: bool) -> tuple[float, str]:
    """Max abs difference of the exported graph's probabilities from PyTorch's on a fresh random batch, and
    what ran the graph: ONNX Runtime, or (for plugin graphs, which it cannot run) ONNX's reference evaluator
    with the plugin nodes evaluated by their PyTorch references."""
    x = torch.randn(batch, *input_shape, generator=torch.Generator().manual_seed(int.from_bytes(os.urandom(4))))
    with torch.no_grad():
        expected = Probabilities(model).eval()(x).numpy()
    if plugins:
        from onnx.reference import ReferenceEvaluator

        (got,) = ReferenceEvaluator(proto, new_ops=ops_onnx.reference_ops()).run(None, {INPUT_NAME: x.numpy()})
        runner = f"onnx.reference {onnx.__version__} (plugin nodes by their PyTorch references)"
    else:
        import onnxruntime as ort

        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {INPUT_NAME: x.numpy()})
        runner = f"onnxruntime {ort.__version__}"
    return float(np.abs(got - expected).max()), runner


def export_onnx(model_or_checkpoint, path: str | Path, *, opset: int | None = None, dynamic_batch: bool = True,
                class_names=None, preprocess: Preprocess | None = None, plugins: bool = False, atol: float = 1e-4,
                progress: bool | None = None) -> Path:
    """Export a model (made by :func:`medinfer.models.create`) or a checkpoint to ONNX at ``path``.

    Class names and preprocessing come from the checkpoint, or the model's registry entry, unless given.
    ``plugins=True`` records the fused DDC and octave ops as ``medinfer::`` custom nodes for medinfer's
    TensorRT plugins (such a graph is for ``medinfer build`` only: ONNX Runtime cannot run it). Raises
    :class:`ExportError` when the checker or the parity run fails; nothing is written then. Returns ``path``.
    """
    from medinfer.progress import progress_bar

    path = Path(path)
    model, meta = _resolve(model_or_checkpoint, class_names, preprocess)
    shape = meta.input_shape
    with progress_bar(total=3, desc=f"export {meta.name}", unit="step", progress=progress) as steps:
        steps.set_postfix_str("tracing")
        # Batch 2 in the example: torch.export specialises sizes 0 and 1.
        example = torch.randn(2, *shape)
        dynamic = {INPUT_NAME: {0: torch.export.Dim("batch", min=1)}} if dynamic_batch else None
        with torch.no_grad(), _quiet_exporter(), ops_onnx.plugin_nodes() if plugins else contextlib.nullcontext():
            program = torch.onnx.export(
                Probabilities(model).eval(), (example,), dynamo=True, input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME], dynamic_shapes=dynamic, opset_version=opset or DEFAULT_OPSET,
                external_data=False, verbose=False,
                custom_translation_table=ops_onnx.translation_table() if plugins else None)
        proto = program.model_proto
        steps.update()

        steps.set_postfix_str("onnx.checker")
        try:
            onnx.checker.check_model(proto, full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
            raise ExportError(f"{path}: the exported graph fails onnx.checker: {exc}") from None
        steps.update()

        steps.set_postfix_str("parity")
        diff, runner = _parity(proto, model, shape, 3 if dynamic_batch else 2, plugins)
        if not diff <= atol:
            raise ExportError(f"{path}: {runner} disagrees with PyTorch by {diff:.3g} (max abs difference of "
                              f"probabilities, tolerance {atol:g}); nothing was written")
        if plugins and not plugin_ops(proto):
            raise ExportError(f"{path}: plugins=True but the graph has no medinfer plugin node ({meta.name} uses no "
                              "fused op, or none the kernels cover); export without plugins")
        check = {"max_abs_diff": diff, "atol": atol, "checked_with": runner, "torch": torch.__version__,
                 "plugins": plugin_ops(proto)}
        graph_hash = graph_sha256(proto)
        onnx.helper.set_model_props(proto, {**meta.to_props(), GRAPH_SHA_KEY: graph_hash, CHECK_KEY: json.dumps(check)})
        set_props(proto, {DIGEST_KEY: export_digest(proto, graph_hash)})
        proto.doc_string = f"medinfer {meta.name}: {', '.join(meta.class_names)}"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, proto.SerializeToString())
        steps.update()
    return path
