"""Which ONNX operators TensorRT's ONNX parser accepts, and a check of an exported graph against them.

The table (``tensorrt_onnx_ops.json``, beside this file) is ONNX-TensorRT's operator support matrix for the
TensorRT version it names, with the restrictions that can bear on medinfer's graphs. Nodes of the
``medinfer`` domain are medinfer's own TensorRT plugins and are accepted as such.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import onnx

from medinfer.onnx_file import PLUGIN_DOMAIN

PLUGIN_OPS = frozenset({"DilatedBranches", "OctaveConv"})  # see medinfer.ops.tensorrt_plugins

_RESIZE_MODES = {"nearest", "linear"}
_RESIZE_COORDS = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
_RESIZE_NEAREST = {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}


@dataclass(frozen=True)
class OperatorTable:
    tensorrt_version: str
    source: str
    opset_min: int
    opset_max: int
    operators: dict[str, str]  # supported operator -> restrictions ("" when none)


@lru_cache(maxsize=1)
def operator_table() -> OperatorTable:
    doc = json.loads(resources.files("medinfer.export").joinpath("tensorrt_onnx_ops.json").read_text())
    return OperatorTable(doc["tensorrt_version"], doc["source"], doc["opset_min"], doc["opset_max"], doc["operators"])


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _constant_names(graph: onnx.GraphProto) -> set[str]:
    names = {init.name for init in graph.initializer}
    names.update(o for n in graph.node if n.op_type == "Constant" for o in n.output)
    return names


def _node_problems(node: onnx.NodeProto, constants: set[str], table: OperatorTable) -> list[str]:
    op = node.op_type
    if node.domain == PLUGIN_DOMAIN:
        return [] if op in PLUGIN_OPS else [f"unknown medinfer plugin op {op!r}"]
    if node.domain not in ("", "ai.onnx"):
        return [f"operator domain {node.domain!r} is not ONNX's and not medinfer's plugins"]
    if op not in table.operators:
        return [f"{op} is not supported by TensorRT {table.tensorrt_version}'s ONNX parser"]
    problems = []
    if op == "Resize":
        mode = _attr(node, "mode", b"nearest").decode()
        coords = _attr(node, "coordinate_transformation_mode", b"half_pixel").decode()
        nearest = _attr(node, "nearest_mode", b"round_prefer_floor").decode()
        if mode not in _RESIZE_MODES:
            problems.append(f"Resize mode {mode!r} (TensorRT: nearest, linear)")
        if coords not in _RESIZE_COORDS:
            problems.append(f"Resize coordinate_transformation_mode {coords!r}")
        if mode == "nearest" and nearest not in _RESIZE_NEAREST:
            problems.append(f"Resize nearest_mode {nearest!r}")
        if _attr(node, "antialias", 0):
            problems.append("Resize with antialiasing")
    elif op in ("AveragePool", "MaxPool"):
        if len(_attr(node, "kernel_shape", [])) not in (2, 3):
            problems.append(f"{op} must be 2D or 3D")
        if any(d != 1 for d in _attr(node, "dilations", [])):
            problems.append(f"{op} dilations must be ones")
        if op == "MaxPool" and len([o for o in node.output if o]) > 1:
            problems.append("MaxPool Indices output")
    elif op.startswith("Reduce") and len(node.input) > 1 and node.input[1] and node.input[1] not in constants:
        problems.append(f"{op} axes must be an initializer")
    return problems


def tensorrt_problems(model: onnx.ModelProto) -> list[str]:
    """Everything in ``model`` TensorRT's ONNX parser would refuse; empty when it can be built."""
    table = operator_table()
    problems = []
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and not table.opset_min <= imp.version <= table.opset_max:
            problems.append(f"opset {imp.version} outside TensorRT {table.tensorrt_version}'s "
                            f"{table.opset_min}..{table.opset_max}")
    graphs = [model.graph] + [g for f in model.functions for g in [onnx.helper.make_graph(f.node, f.name, [], [])]]
    for graph in graphs:
        constants = _constant_names(graph)
        for node in graph.node:
            problems += [f"node {node.name or '?'} ({node.op_type}): {p}"
                         for p in _node_problems(node, constants, table)]
    return problems

