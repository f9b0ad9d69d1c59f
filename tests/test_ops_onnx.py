"""The fused ops exported to ONNX: standard operators by default, ``medinfer::*`` custom nodes on request.

The custom-node graphs are evaluated with ``onnx.reference`` and medinfer's node implementations (backed by
the PyTorch references), so a graph's wiring — input order, attributes, outputs — is checked numerically
without TensorRT.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medinfer.models import layers as L
from medinfer.ops import onnx as ops_onnx

pytest.importorskip("onnxscript")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")


class Octave(nn.Module):
    """An octave layer with plain tensors in and out, as an exporter wants them."""

    def __init__(self, conv: L.OctaveConv):
        super().__init__()
        self.conv = conv

    def forward(self, *x):
        y_h, y_l = self.conv((x[0], x[1] if len(x) > 1 else None))
        return (y_h,) if y_l is None else (y_h, y_l)


def export(module: nn.Module, args: tuple, plugins: bool):
    module.eval()
    if not plugins:
        return torch.onnx.export(module, args, dynamo=True, verbose=False).model_proto
    with ops_onnx.plugin_nodes():
        return torch.onnx.export(module, args, dynamo=True, verbose=False,
                                 custom_translation_table=ops_onnx.translation_table()).model_proto


def run(model, args: tuple) -> list[np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    feeds = {i.name: a.numpy() for i, a in zip(model.graph.input, args, strict=True)}
    return ReferenceEvaluator(model, new_ops=ops_onnx.reference_ops()).run(None, feeds)


def custom_nodes(model) -> list:
    return [n for n in model.graph.node if n.domain == ops_onnx.DOMAIN]


def attributes(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def randomised(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.normal_(p, 0.0, 0.3)
    return module


def test_dense_atrous_block_exports_three_dilated_branches_nodes(rng):
    block = randomised(L.DenseAtrousBlock(5))
    x = torch.from_numpy(rng.standard_normal((2, 5, 13, 11))).float()
    model = export(block, (x,), plugins=True)
    nodes = custom_nodes(model)
    assert [n.op_type for n in nodes] == ["DilatedBranches"] * 3
    assert {"Conv", "Relu"}.isdisjoint(n.op_type for n in model.graph.node)  # everything fused
    assert [attributes(n) for n in nodes] == [
        {"dilations": [1, 3], "epilogue": 1, "keep": [1, 0]},
        {"dilations": [3], "epilogue": 1, "keep": [1]},
        {"dilations": [5], "epilogue": 1, "keep": [0]},
    ]
    assert [(len(n.input), len(n.output)) for n in nodes] == [(8, 2), (6, 2), (6, 1)]  # X, W…, B…, P, PB, R
    assert {(o.domain, o.version) for o in model.opset_import} >= {(ops_onnx.DOMAIN, ops_onnx.VERSION)}
    with torch.no_grad():
        expected = block(x).numpy()
    np.testing.assert_allclose(run(model, (x,))[0], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("in_ch", "out_ch", "k", "stride", "paths"), [
    ((5, 3), (4, 2), 3, 2, (1, 1, 1)),   # the MSFE 3×3 groups (strided in a stage's first block)
    ((6, 0), (5, 3), 1, 1, (1, 0, 0)),   # the bottleneck's first 1×1 layer
    ((5, 3), (7, 0), 1, 1, (0, 1, 0)),   # and its last
], ids=["full", "first", "last"])
def test_octave_layers_export_octave_conv_nodes(rng, in_ch, out_ch, k, stride, paths):
    conv = Octave(L.OctaveConv(in_ch, out_ch, k, stride))
    args = [torch.from_numpy(rng.standard_normal((2, in_ch[0], 13, 11))).float()]
    if in_ch[1]:
        args.append(torch.from_numpy(rng.standard_normal((2, in_ch[1], 7, 6))).float())
    model = export(conv, tuple(args), plugins=True)
    (node,) = custom_nodes(model)
    hl, lh, ll = paths
    assert node.op_type == "OctaveConv"
    assert attributes(node) == {"stride": stride, "high_to_low": hl, "low_to_high": lh, "low_to_low": ll}
    assert len(node.input) == 2 + (lh or ll) + hl + lh + ll and len(node.output) == 1 + hl
    with torch.no_grad():
        expected = conv(*args)
    for got, want in zip(run(model, tuple(args)), expected, strict=True):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5)


def test_default_export_uses_standard_operators_only(rng):
    block = randomised(L.DenseAtrousBlock(3))
    conv = Octave(L.OctaveConv((4, 2), (4, 2), 3, 1))
    x = torch.randn(1, 3, 7, 9)
    assert not custom_nodes(export(block, (x,), plugins=False))
    assert not custom_nodes(export(conv, (torch.randn(1, 4, 7, 9), torch.randn(1, 2, 4, 5)), plugins=False))


def test_ordinary_octave_convolutions_stay_standard_even_with_plugins():
    conv = Octave(L.OctaveConv((4, 0), (5, 0), 3, 2))  # no low-frequency side: a plain strided conv
    model = export(conv, (torch.randn(1, 4, 9, 9),), plugins=True)
    assert not custom_nodes(model) and "Conv" in {n.op_type for n in model.graph.node}
