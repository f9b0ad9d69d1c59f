"""A medinfer ONNX file: the contract between :func:`medinfer.export_onnx`, which writes it, and the engines
that read it (ONNX Runtime, TensorRT's builder), kept free of PyTorch so that inference installs need none.

The graph takes ``input`` — a float32 ``(batch, C, H, W)`` batch made by the model's
:class:`~medinfer.preprocess.Preprocess` — and returns ``probabilities``. ``metadata_props`` carry the
:class:`~medinfer.metadata.ModelMetadata`, the SHA-256 of the graph, a record of the export's parity check,
the digest over all of them (:mod:`medinfer.integrity`) and, once signed, its signature.
:func:`read_export` checks all of that before an engine uses the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from medinfer import integrity
from medinfer.errors import EngineError
from medinfer.metadata import ModelMetadata, atomic_write, sha256_bytes

if TYPE_CHECKING:  # onnx itself is imported where a file is read: `import medinfer.ops` needs only the names below
    import onnx

INPUT_NAME, OUTPUT_NAME = "input", "probabilities"
GRAPH_SHA_KEY = "medinfer.graph_sha256"
CHECK_KEY = "medinfer.export_check"
DIGEST_KEY, SIGNATURE_KEY = "medinfer.digest", "medinfer.signature"
#: Checks of reduced precision against fp32 (:mod:`medinfer.validation`), and how a quantized export was made.
VALIDATION_KEY, QUANTIZATION_KEY = "medinfer.validation", "medinfer.quantization"
_FIX = "re-export it with `medinfer export` (or pass verify=False if you changed it on purpose)"
#: Domain of the custom nodes medinfer's TensorRT plugins run (``medinfer.ops.onnx`` writes them).
PLUGIN_DOMAIN = "medinfer"


def graph_sha256(model: onnx.ModelProto) -> str:
    """Hash of the graph (nodes, weights, inputs, outputs), independent of the metadata stored beside it."""
    return sha256_bytes(model.graph.SerializeToString(deterministic=True))


def plugin_ops(proto: onnx.ModelProto) -> list[str]:
    """The medinfer TensorRT plugin ops a graph contains (empty for a standard-operator graph)."""
    return sorted({n.op_type for n in proto.graph.node if n.domain == PLUGIN_DOMAIN})


def export_digest(proto: onnx.ModelProto, graph_hash: str | None = None) -> str:
    """The digest over everything an engine reads from the file: the graph's actual hash (``graph_hash`` when
    the caller has it: hashing a full-size graph serialises all its weights) and every ``medinfer.*`` metadata
    entry (but the digest and signature themselves)."""
    props = {p.key: p.value for p in proto.metadata_props
             if p.key.startswith("medinfer.") and p.key not in (DIGEST_KEY, SIGNATURE_KEY)}
    return integrity.digest({"graph_sha256": graph_hash or graph_sha256(proto), "metadata_props": props})


def set_props(proto: onnx.ModelProto, props: dict[str, str]) -> None:
    """Set (add or replace) metadata entries, keeping the others."""
    import onnx

    merged = {p.key: p.value for p in proto.metadata_props} | props
    onnx.helper.set_model_props(proto, merged)


def read_export(path: str | Path, *, verify: bool = True,
                authenticate: bool = True) -> tuple[bytes, onnx.ModelProto, ModelMetadata]:
    """Read a medinfer ONNX export: its bytes, graph and metadata, after checking that it parses and carries
    medinfer metadata, that (``verify``) its graph and metadata still match the digest recorded at export,
    that (``authenticate``, with an engine key configured) it is signed with that key, and that the graph's
    input and output agree with its metadata. (Only signing passes ``authenticate=False``.)"""
    import onnx

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
    graph_hash = graph_sha256(proto)
    computed = export_digest(proto, graph_hash)
    if verify:
        if props.get(GRAPH_SHA_KEY) != graph_hash:
            raise EngineError(f"{path}: the graph's SHA-256 does not match the one recorded at export: the file was "
                              f"damaged or edited after export; {_FIX}")
        integrity.check_digest(path, props.get(DIGEST_KEY), computed, what="ONNX export", fix=_FIX,
                               engine=path)
    if authenticate:  # a file changed on purpose (verify=False) still has to be signed where a key demands it
        integrity.check_signature(path, computed, props.get(SIGNATURE_KEY), what="ONNX export", engine=path)
    check_interface(path, proto, meta)
    return data, proto, meta


def read_for_runtime(path: Path, runtime: str, *, verify: bool = True) -> tuple[bytes, dict[str, str], ModelMetadata]:
    """:func:`read_export` for a CPU runtime (``runtime`` names it in errors): also refuses graphs holding
    medinfer's TensorRT plugin nodes. Returns the bytes, the metadata entries and the metadata."""
    data, proto, meta = read_export(path, verify=verify)
    plugins = plugin_ops(proto)
    if plugins:
        raise EngineError(f"{path}: the graph holds medinfer TensorRT plugin nodes ({', '.join(plugins)}), which "
                          f"{runtime} cannot run; build a TensorRT plan from it (`medinfer build`), or export without "
                          "--plugins for CPU engines")
    return data, {p.key: p.value for p in proto.metadata_props}, meta


def stored_precision(props: dict[str, str]) -> str:
    """The precision an export holds: ``"int8"`` when :mod:`medinfer.quantize` made it, else ``"fp32"``."""
    return "int8" if props.get(QUANTIZATION_KEY) else "fp32"


def check_interface(path: Path, proto: onnx.ModelProto, meta: ModelMetadata) -> None:
    """The graph takes ``(batch, C, H, W)`` and returns ``(batch, K)`` as its metadata says (fixed sizes are
    compared; symbolic ones, such as the dynamic batch, are accepted)."""
    names = ([i.name for i in proto.graph.input], [o.name for o in proto.graph.output])
    if names != ([INPUT_NAME], [OUTPUT_NAME]):
        raise EngineError(f"{path}: expected one input {INPUT_NAME!r} and one output {OUTPUT_NAME!r}, got {names}")
    expected = {INPUT_NAME: (None, *meta.input_shape), OUTPUT_NAME: (None, len(meta.class_names))}
    fields = {INPUT_NAME: "preprocess (channels, size)", OUTPUT_NAME: "class_names"}
    for value in (*proto.graph.input, *proto.graph.output):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
        want = expected[value.name]
        if len(dims) != len(want) or any(d is not None and w is not None and d != w
                                         for d, w in zip(dims, want, strict=True)):
            raise EngineError(f"{path}: the graph's {value.name!r} has shape {_shape(dims, '?')}, but its metadata "
                              f"field {fields[value.name]} says {_shape(want, 'batch')}")


def _shape(dims, unknown: str) -> str:
    return "(" + ", ".join(unknown if d is None else str(d) for d in dims) + ")"


def sign_export(path: Path, key: bytes | None, *, rehash: bool = False) -> None:
    """Sign ``path`` in place with ``key`` (after the usual checks; ``rehash`` first records the digest of a
    file exported before medinfer kept one, trusting its metadata as it stands)."""
    _, proto, _ = read_export(path, verify=not rehash, authenticate=False)  # refuses what is damaged
    graph_hash = graph_sha256(proto)
    if rehash and {p.key: p.value for p in proto.metadata_props}.get(GRAPH_SHA_KEY) != graph_hash:
        raise EngineError(f"{path}: the graph's SHA-256 does not match the one recorded at export; {_FIX}")
    _write_signed(path, proto, key, graph_hash)


def write_export(path: Path, proto: onnx.ModelProto, props: dict[str, str]) -> None:
    """Write a graph derived from a medinfer export (a quantized one): ``props`` replace its ``medinfer.*``
    metadata, its graph's hash and digest are recorded, and with an engine key configured it is signed (so that
    it can be checked against fp32 at once)."""
    kept = [p for p in proto.metadata_props if not p.key.startswith("medinfer.")]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    graph_hash = graph_sha256(proto)
    set_props(proto, {**props, GRAPH_SHA_KEY: graph_hash})
    _write_signed(path, proto, integrity.configured_key(), graph_hash)


def update_export(path: Path, props: dict[str, str]) -> None:
    """Set metadata entries of a checked export in place, its digest recomputed and, with an engine key
    configured, its signature renewed (a signed export is refused without the key rather than left unsigned)."""
    _, proto, _ = read_export(path)
    key = integrity.key_to_resign(path, any(p.key == SIGNATURE_KEY for p in proto.metadata_props))
    set_props(proto, props)
    _write_signed(path, proto, key, None)


def _write_signed(path: Path, proto: onnx.ModelProto, key: bytes | None, graph_hash: str | None) -> None:
    digest = export_digest(proto, graph_hash)
    kept = [p for p in proto.metadata_props if p.key != SIGNATURE_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    signed = integrity.signature_or_none(digest, key)
    set_props(proto, {DIGEST_KEY: digest, **({SIGNATURE_KEY: signed} if signed else {})})
    atomic_write(path, proto.SerializeToString())
