"""A medinfer ONNX file: the contract between :func:`medinfer.export_onnx`, which writes it, and the engines
that read it (ONNX Runtime, TensorRT's builder), kept free of PyTorch so that inference installs need none.

The graph takes ``input`` — a float32 ``(batch, C, H, W)`` batch made by the model's
:class:`~medinfer.preprocess.Preprocess` — and returns ``probabilities``. ``metadata_props`` carry the
:class:`~medinfer.metadata.ModelMetadata`, the SHA-256 of the graph and a record of the export's parity
check. :func:`read_export` checks all of that before an engine uses the file.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from medinfer.errors import EngineError
from medinfer.metadata import ModelMetadata, sha256_bytes

INPUT_NAME, OUTPUT_NAME = "input", "probabilities"
GRAPH_SHA_KEY = "medinfer.graph_sha256"
CHECK_KEY = "medinfer.export_check"
#: Domain of the custom nodes medinfer's TensorRT plugins run (``medinfer.ops.onnx`` writes them).
PLUGIN_DOMAIN = "medinfer"


def graph_sha256(model: onnx.ModelProto) -> str:
    """Hash of the graph (nodes, weights, inputs, outputs), independent of the metadata stored beside it."""
    return sha256_bytes(model.graph.SerializeToString(deterministic=True))


def plugin_ops(proto: onnx.ModelProto) -> list[str]:
    """The medinfer TensorRT plugin ops a graph contains (empty for a standard-operator graph)."""
    return sorted({n.op_type for n in proto.graph.node if n.domain == PLUGIN_DOMAIN})


def read_export(path: str | Path, *, verify: bool = True) -> tuple[bytes, onnx.ModelProto, ModelMetadata]:
    """Read a medinfer ONNX export: its bytes, graph and metadata, after checking that it parses, carries
    medinfer metadata and (``verify``) that its graph still hashes to the value recorded at export."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EngineError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        proto = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and friends: truncated or foreign bytes
        raise EngineError(f"{path}: not a valid ONNX file (truncated or damaged?): {exc}") from None
    if not proto.graph.node:
        raise EngineError(f"{path}: not a valid ONNX file (no graph; truncated, damaged or another format)")
    props = {p.key: p.value for p in proto.metadata_props}
    meta = ModelMetadata.from_props(props, path)
    if verify:
        recorded = props.get(GRAPH_SHA_KEY)
        if recorded != graph_sha256(proto):
            raise EngineError(f"{path}: the graph's SHA-256 does not match the one recorded at export: the file was "
                              "damaged or edited after export; re-export it with `medinfer export` (or pass "
                              "verify=False if you changed it on purpose)")
    names = ([i.name for i in proto.graph.input], [o.name for o in proto.graph.output])
    if names != ([INPUT_NAME], [OUTPUT_NAME]):
        raise EngineError(f"{path}: expected one input {INPUT_NAME!r} and one output {OUTPUT_NAME!r}, got {names}")
    return data, proto, meta
