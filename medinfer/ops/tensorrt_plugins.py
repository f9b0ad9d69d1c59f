"""TensorRT plugins for the ``medinfer::DilatedBranches`` and ``medinfer::OctaveConv`` ONNX nodes.

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
from types import ModuleType
from typing import TYPE_CHECKING, Any

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
    with _LOCK:
        if _CREATORS:
            return
        registry = trt.get_plugin_registry()
        for creator in (_Creator(_DilatedBranchesPlugin), _Creator(_OctaveConvPlugin)):
            if registry.get_creator(creator.name, PLUGIN_VERSION, PLUGIN_NAMESPACE) is None and \
                    not registry.register_creator(creator, PLUGIN_NAMESPACE):
                raise BackendUnavailable(f"TensorRT refused to register the {creator.name} plugin creator")
            _CREATORS.append(creator)


def _kernels() -> ModuleType:
    """``medinfer._C`` (present: :func:`register_plugins` checked before any plugin existed)."""
    native = _ext.native()
    if native is None:
        raise BackendUnavailable(_ext.unavailable_reason() or "medinfer._C is not available")
    return native


def _contiguous(dims) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    """Shape and row-major strides of a LINEAR TensorRT tensor, as (0, shape, strides) without its pointer."""
    shape = tuple(int(dims[i]) for i in range(len(dims)))
    strides = tuple(int(np.prod(shape[i + 1:], dtype=np.int64)) for i in range(len(shape)))
    return 0, shape, strides


def _at(ptr: int, dims) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    """How a LINEAR tensor at ``ptr`` crosses into ``medinfer._C``: (ptr, shape, strides)."""
    _, shape, strides = _contiguous(dims)
    return ptr, shape, strides


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

        NAME = ""
        FIELDS: tuple[str, ...] = ()  # integer (list) fields, the node's attributes

        def __init__(self, fields: dict[str, list[int]]):
            trt.IPluginV3.__init__(self)
            trt.IPluginV3OneCore.__init__(self)
            trt.IPluginV3OneBuild.__init__(self)
            trt.IPluginV3OneRuntime.__init__(self)
            missing = [f for f in self.FIELDS if f not in fields]
            if missing:
                raise ValueError(f"{self.NAME} plugin: missing fields {missing}")
            self.fields = {f: [int(v) for v in fields[f]] for f in self.FIELDS}
            self.plugin_name = self.NAME
            self.plugin_version = PLUGIN_VERSION
            self.plugin_namespace = PLUGIN_NAMESPACE
            self.num_outputs = self.output_count()

        def output_count(self) -> int:
            raise TypeError(f"{type(self).__name__} does not define its outputs")

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

    class _DilatedBranchesPlugin(_Plugin):
        """``medinfer::DilatedBranches``: inputs X, W_k…, B_k… [, P, PB, R]; fields dilations, epilogue, keep."""

        NAME = "DilatedBranches"
        FIELDS = ("dilations", "epilogue", "keep")

        def output_count(self) -> int:
            if self.fields["epilogue"][0]:
                return 1 + sum(1 for k in self.fields["keep"] if k)
            return len(self.fields["dilations"])

        def get_output_shapes(self, inputs: list[trt.DimsExprs], shape_inputs: list[trt.DimsExprs],
                              expr_builder: trt.IExprBuilder) -> list[trt.DimsExprs]:
            x, b = inputs[0], len(self.fields["dilations"])
            branch = trt.DimsExprs([x[0], inputs[1][0], x[2], x[3]])
            if not self.fields["epilogue"][0]:
                return [branch] * b
            out = trt.DimsExprs([x[0], inputs[1 + 2 * b][0], x[2], x[3]])
            return [out] + [branch for k in self.fields["keep"] if k]

        def enqueue(self, input_desc: list[trt.PluginTensorDesc], output_desc: list[trt.PluginTensorDesc],
                    inputs: list[int], outputs: list[int], workspace: int, stream: int) -> None:
            b = len(self.fields["dilations"])
            x_dims, w_dims = input_desc[0].dims, input_desc[1].dims
            absent = _contiguous([x_dims[0], w_dims[0], x_dims[2], x_dims[3]])
            pw = pb = 0
            residual = out = None
            if self.fields["epilogue"][0]:
                pw, pb = inputs[1 + 2 * b], inputs[2 + 2 * b]
                residual = _at(inputs[3 + 2 * b], input_desc[3 + 2 * b].dims)
                out = _at(outputs[0], output_desc[0].dims)
                kept = iter(range(1, len(outputs)))
                ys = [_at(outputs[i], output_desc[i].dims) if k else absent
                      for k, i in ((k, next(kept) if k else -1) for k in self.fields["keep"])]
            else:
                ys = [_at(outputs[i], output_desc[i].dims) for i in range(b)]
            _kernels().cuda_dilated_branches(
                _DTYPE_NAMES[input_desc[0].type], _at(inputs[0], x_dims), list(inputs[1:1 + b]), False,
                list(inputs[1 + b:1 + 2 * b]), self.fields["dilations"], ys, pw, pb, residual, out, stream)

    class _OctaveConvPlugin(_Plugin):
        """``medinfer::OctaveConv``: inputs X_h [, X_l], W_hh [, W_hl] [, W_lh] [, W_ll]; fields stride,
        high_to_low, low_to_high, low_to_low."""

        NAME = "OctaveConv"
        FIELDS = ("stride", "high_to_low", "low_to_high", "low_to_low")

        def output_count(self) -> int:
            return 2 if self.fields["high_to_low"][0] else 1

        def _layout(self) -> dict[str, int]:
            """Input index of each present tensor, in the node's order."""
            f = {k: v[0] for k, v in self.fields.items()}
            present = [("x_h", 1), ("x_l", f["low_to_high"] or f["low_to_low"]), ("w_hh", 1),
                       ("w_hl", f["high_to_low"]), ("w_lh", f["low_to_high"]), ("w_ll", f["low_to_low"])]
            names = [name for name, on in present if on]
            return {name: i for i, name in enumerate(names)}

        def get_output_shapes(self, inputs: list[trt.DimsExprs], shape_inputs: list[trt.DimsExprs],
                              expr_builder: trt.IExprBuilder) -> list[trt.DimsExprs]:
            at = self._layout()
            x = inputs[at["x_h"]]

            def half(e: trt.IDimensionExpr) -> trt.IDimensionExpr:
                return expr_builder.operation(trt.DimensionOperation.CEIL_DIV, e, expr_builder.constant(2))

            h, w = (half(x[2]), half(x[3])) if self.fields["stride"][0] == 2 else (x[2], x[3])
            shapes = [trt.DimsExprs([x[0], inputs[at["w_hh"]][0], h, w])]
            if "w_hl" in at:
                shapes.append(trt.DimsExprs([x[0], inputs[at["w_hl"]][0], half(h), half(w)]))
            return shapes

        def enqueue(self, input_desc: list[trt.PluginTensorDesc], output_desc: list[trt.PluginTensorDesc],
                    inputs: list[int], outputs: list[int], workspace: int, stream: int) -> None:
            at = self._layout()

            def tensor(name: str):
                return _at(inputs[at[name]], input_desc[at[name]].dims) if name in at else None

            def ptr(name: str) -> int:
                return inputs[at[name]] if name in at else 0

            y_l = _at(outputs[1], output_desc[1].dims) if len(outputs) > 1 else None
            _kernels().cuda_octave_conv(
                _DTYPE_NAMES[input_desc[0].type], tensor("x_h"), tensor("x_l"), ptr("w_hh"), ptr("w_hl"),
                ptr("w_lh"), ptr("w_ll"), False, int(input_desc[at["w_hh"]].dims[3]), self.fields["stride"][0],
                _at(outputs[0], output_desc[0].dims), y_l, stream)

    class _Creator(trt.IPluginCreatorV3One):
        """Creates one plugin type from its fields (at parse time and when an engine is deserialised)."""

        def __init__(self, plugin: type[_Plugin]):
            trt.IPluginCreatorV3One.__init__(self)
            self.plugin = plugin
            self.name = plugin.NAME
            self.plugin_version = PLUGIN_VERSION
            self.plugin_namespace = PLUGIN_NAMESPACE
            self.field_names = _fields({name: [] for name in plugin.FIELDS})

        def create_plugin(self, name: str, field_collection: trt.PluginFieldCollection_,
                          phase: trt.TensorRTPhase) -> trt.IPluginV3:
            # The ONNX parser passes integer attributes as INT32 or INT64 fields; take either.
            fields = (field_collection[i] for i in range(len(field_collection)))
            return self.plugin({f.name: np.asarray(f.data).reshape(-1).astype(np.int64).tolist() for f in fields})
