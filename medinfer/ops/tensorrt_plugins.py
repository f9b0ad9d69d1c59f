"""TensorRT plugins for the ``medinfer::DilatedBranches`` and ``medinfer::OctaveConv`` ONNX nodes.

What both plugins share lives here; each op's own half (outputs, shapes, the kernel launch) is its
``TensorRTPlugin`` class, beside the op (:mod:`medinfer.ops.dilated`, :mod:`medinfer.ops.octave`).

Python ``IPluginV3`` plugins (``IPluginV3OneCore`` / ``IPluginV3OneBuild`` / ``IPluginV3OneRuntime``, one
``IPluginCreatorV3One`` each) whose ``enqueue`` launches the CUDA kernels of ``medinfer._C`` on TensorRT's
raw device pointers and stream — no PyTorch at run time. TensorRT's ONNX parser maps a node to the plugin
registered under the node's op type (``DilatedBranches`` / ``OctaveConv``, version ``"1"``, namespace
``""``) and hands the node's attributes over as plugin fields; the node schemas are documented in
:mod:`medinfer.ops.onnx`.

Call :func:`register_plugins` before parsing an ONNX file that contains the nodes and before deserialising
an engine built from one (TensorRT serialises the fields, :meth:`get_fields_to_serialize`, and recreates
the plugins through the creators at load time). It is idempotent and thread-safe.

Importing this module needs neither TensorRT nor a GPU; :func:`register_plugins` raises
:class:`medinfer.backends.BackendUnavailable` with the reason when they are missing. Nothing here has run
against a real TensorRT where it was written (TensorRT cannot be installed there): it is type-checked
against ``tensorrt-stubs`` (``tests/test_tensorrt_typecheck.py``), and the kernels it launches are the CUDA
backend's, tested against the references on a GPU by ``pytest -m gpu``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from medinfer import _ext, backends
from medinfer.backends import BackendUnavailable

try:
    import tensorrt as trt
except Exception:  # absent, or a broken install (a missing libnvinfer raises OSError)
    trt = None  # type: ignore[assignment]

PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = ""
_LOCK = threading.Lock()
_CREATORS: list[Any] = []  # TensorRT keeps raw pointers to the creators: they must stay alive


def unavailable_reason() -> str | None:
    """Why the plugins cannot be registered here, or ``None``: they need TensorRT and the CUDA kernels."""
    for name in ("tensorrt", "cuda"):
        reason = backends.BACKENDS[name].unavailable_reason("cuda")
        if reason is not None:
            return reason
    return None


def register_plugins() -> None:
    """Register both plugin creators with TensorRT's global plugin registry (once; later calls return)."""
    reason = unavailable_reason()
    if reason is not None:
        raise BackendUnavailable(f"medinfer's TensorRT plugins cannot be registered: {reason}")
    from medinfer.ops import dilated, octave  # their op-specific halves (importing them imports PyTorch)

    with _LOCK:
        if _CREATORS:
            return
        registry = trt.get_plugin_registry()
        for creator in (_Creator(_plugin(dilated.TensorRTPlugin)), _Creator(_plugin(octave.TensorRTPlugin))):
            if registry.get_creator(creator.name, PLUGIN_VERSION, PLUGIN_NAMESPACE) is None and \
                    not registry.register_creator(creator, PLUGIN_NAMESPACE):
                raise BackendUnavailable(f"TensorRT refused to register the {creator.name} plugin creator")
            _CREATORS.append(creator)


if TYPE_CHECKING or (trt is not None and hasattr(trt, "IPluginV3")):
    _DTYPE_NAMES = {trt.DataType.FLOAT: "float32", trt.DataType.HALF: "float16", trt.DataType.BF16: "bfloat16"}

    def _fields(values: dict[str, list[int]]) -> trt.PluginFieldCollection_:
        """Integer plugin fields (INT32), as TensorRT serialises them and the creators declare them."""
        return trt.PluginFieldCollection_(trt.PluginFieldCollection([
            trt.PluginField(trt.FallbackString(name), np.asarray(v, dtype=np.int32), trt.PluginFieldType.INT32)
            for name, v in values.items()
        ]))

    class _Plugin(trt.IPluginV3, trt.IPluginV3OneCore, trt.IPluginV3OneBuild, trt.IPluginV3OneRuntime):
        """What both plugins share: integer fields, LINEAR fp32/fp16/bf16 I/O of one type, no workspace."""

        SPEC: ClassVar[Any]  # the op's TensorRTPlugin: NAME, FIELDS (the node's attributes), outputs, enqueue

        def __init__(self, fields: dict[str, list[int]]):
            trt.IPluginV3.__init__(self)
            trt.IPluginV3OneCore.__init__(self)
            trt.IPluginV3OneBuild.__init__(self)
            trt.IPluginV3OneRuntime.__init__(self)
            missing = [f for f in self.SPEC.FIELDS if f not in fields]
            if missing:
                raise ValueError(f"{self.SPEC.NAME} plugin: missing fields {missing}")
            self.fields = {f: [int(v) for v in fields[f]] for f in self.SPEC.FIELDS}
            self.plugin_name = self.SPEC.NAME
            self.plugin_version = PLUGIN_VERSION
            self.plugin_namespace = PLUGIN_NAMESPACE
            self.num_outputs = self.SPEC.output_count(self.fields)

        def get_capability_interface(self, type: trt.PluginCapabilityType) -> Any:
            return self

        def clone(self) -> _Plugin:
            return type(self)(self.fields)

        def get_fields_to_serialize(self) -> trt.PluginFieldCollection_:
            return _fields(dict(self.fields))

        def get_output_data_types(self, input_types: list[trt.DataType]) -> list[trt.DataType]:
            return [input_types[0]] * self.num_outputs

        def supports_format_combination(self, pos: int, in_out: list[trt.DynamicPluginTensorDesc],
                                        num_inputs: int) -> bool:
            desc = in_out[pos].desc
            return desc.format == trt.TensorFormat.LINEAR and desc.type in _DTYPE_NAMES and \
                desc.type == in_out[0].desc.type

        def configure_plugin(self, inp: list[trt.DynamicPluginTensorDesc],
                             out: list[trt.DynamicPluginTensorDesc]) -> None:
            return None

        def on_shape_change(self, inp: list[trt.PluginTensorDesc], out: list[trt.PluginTensorDesc]) -> None:
            return None

        def get_workspace_size(self, inp: list[trt.DynamicPluginTensorDesc],
                               out: list[trt.DynamicPluginTensorDesc]) -> int:
            return 0

        def get_valid_tactics(self) -> list[int]:
            return []

        def set_tactic(self, tactic: int) -> None:
            return None

        def attach_to_context(self, resource_context: Any) -> _Plugin:
            return self.clone()

        def get_output_shapes(self, inputs: list[trt.DimsExprs], shape_inputs: list[trt.DimsExprs],
                              expr_builder: trt.IExprBuilder) -> list[trt.DimsExprs]:
            return self.SPEC.output_shapes(self.fields, inputs, expr_builder)

        def enqueue(self, input_desc: list[trt.PluginTensorDesc], output_desc: list[trt.PluginTensorDesc],
                    inputs: list[int], outputs: list[int], workspace: int, stream: int) -> None:
            self.SPEC.enqueue(_ext.require(), self.fields, input_desc, output_desc, list(inputs), list(outputs),
                              _DTYPE_NAMES[input_desc[0].type], stream)

    def _plugin(spec: Any) -> type[_Plugin]:
        """The IPluginV3 class of one op, from its ``TensorRTPlugin`` half."""
        return type(f"_{spec.NAME}Plugin", (_Plugin,), {"SPEC": spec})

    class _Creator(trt.IPluginCreatorV3One):
        """Creates one plugin type from its fields (at parse time and when an engine is deserialised)."""

        def __init__(self, plugin: type[_Plugin]):
            trt.IPluginCreatorV3One.__init__(self)
            self.plugin = plugin
            self.name = plugin.SPEC.NAME
            self.plugin_version = PLUGIN_VERSION
            self.plugin_namespace = PLUGIN_NAMESPACE
            self.field_names = _fields({name: [] for name in plugin.SPEC.FIELDS})

        def create_plugin(self, name: str, field_collection: trt.PluginFieldCollection_,
                          phase: trt.TensorRTPhase) -> trt.IPluginV3:
            # The ONNX parser passes integer attributes as INT32 or INT64 fields; take either.
            fields = (field_collection[i] for i in range(len(field_collection)))
            return self.plugin({f.name: np.asarray(f.data).reshape(-1).astype(np.int64).tolist() for f in fields})
