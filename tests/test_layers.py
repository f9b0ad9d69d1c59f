"""The building blocks of medinfer.models.layers against hand-written expectations.

The references here are written in numpy, independent of torch.nn.functional, in float64, so the
tolerance is float64 round-off (1e-10). Shapes are odd on purpose.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medinfer.models import layers as L
from medinfer.ops.dilated import dilated_branches_native
from medinfer.ops.octave import octave_conv_native

ATOL = 1e-10


# --- numpy references -------------------------------------------------------------------------------------
def np_conv2d(x, w, b=None, dilation=1, stride=1):
    """'Same'-padded direct convolution, x (N, C, H, W), w (O, C, k, k)."""
    n, c, h, wd = x.shape
    k = w.shape[-1]
    p = dilation * (k - 1) // 2
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    ho, wo = (h + 2 * p - dilation * (k - 1) - 1) // stride + 1, (wd + 2 * p - dilation * (k - 1) - 1) // stride + 1
    out = np.zeros((n, w.shape[0], ho, wo))
    for i in range(k):
        for j in range(k):
            patch = xp[:, :, i * dilation: i * dilation + stride * (ho - 1) + 1: stride,
                       j * dilation: j * dilation + stride * (wo - 1) + 1: stride]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return out if b is None else out + b[None, :, None, None]


def np_pool2(x):
    """2×2 average pool rounding odd sizes up; edge windows average only the pixels that exist."""
    n, c, h, w = x.shape
    out = np.zeros((n, c, (h + 1) // 2, (w + 1) // 2))
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            out[:, :, i, j] = x[:, :, 2 * i: 2 * i + 2, 2 * j: 2 * j + 2].mean(axis=(2, 3))
    return out


def np_up2(x, size):
    return x.repeat(2, axis=2).repeat(2, axis=3)[:, :, : size[0], : size[1]]


def sigmoid(v):
    return 1 / (1 + np.exp(-v))


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def delta_kernel(channels: int, k: int = 3) -> torch.Tensor:
    """Weights that make a k×k conv the identity on `channels` channels."""
    w = torch.zeros(channels, channels, k, k, dtype=torch.float64)
    w[range(channels), range(channels), k // 2, k // 2] = 1
    return w


def make_identity_bn(module: nn.Module) -> None:
    """BatchNorms that normalise to exactly x in eval mode: mean 0, var 1 - eps, affine (1, 0)."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.zero_()
            m.running_var.fill_(1 - m.eps)
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# --- octave convolution -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("channels", "alpha", "expected"),
                         [(16, 0.25, (12, 4)), (4, 0.25, (3, 1)), (2, 0.1, (1, 1)), (7, 0.0, (7, 0)), (1, 0.5, (1, 0))])
def test_octave_split(channels, alpha, expected):
    assert L.octave_split(channels, alpha) == expected


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize(("h", "w"), [(13, 11), (8, 9), (1, 1)])
def test_octave_conv_follows_its_definition(rng, stride, h, w):
    ch, cl, oh, ol, n = 5, 3, 4, 2, 2
    x_h = rng.standard_normal((n, ch, h, w))
    x_l = rng.standard_normal((n, cl, (h + 1) // 2, (w + 1) // 2))
    ws = {k: rng.standard_normal(s) for k, s in
          {"hh": (oh, ch, 3, 3), "hl": (ol, ch, 3, 3), "lh": (oh, cl, 3, 3), "ll": (ol, cl, 3, 3)}.items()}
    y_h, y_l = octave_conv_native(t(x_h), t(x_l), t(ws["hh"]), t(ws["hl"]), t(ws["lh"]), t(ws["ll"]), stride)

    if stride == 2:  # both frequencies are pooled before the convolutions
        x_h, x_l = np_pool2(x_h), np_pool2(x_l)
    hh = np_conv2d(x_h, ws["hh"])
    exp_h = hh + np_up2(np_conv2d(x_l, ws["lh"]), hh.shape[2:])
    exp_l = np_conv2d(np_pool2(x_h), ws["hl"]) + np_conv2d(x_l, ws["ll"])
    np.testing.assert_allclose(y_h.numpy(), exp_h, atol=ATOL)
    np.testing.assert_allclose(y_l.numpy(), exp_l, atol=ATOL)


@torch.no_grad()
def test_octave_first_and_last_layers():
    x = torch.randn(2, 6, 9, 7, dtype=torch.float64)
    first = L.OctaveConv((6, 0), (5, 3), kernel_size=1).double()
    h, low = first((x, None))
    np.testing.assert_allclose(h.numpy(), np_conv2d(x.numpy(), first.w_hh.detach().numpy()), atol=ATOL)
    np.testing.assert_allclose(low.numpy(), np_conv2d(np_pool2(x.numpy()), first.w_hl.detach().numpy()), atol=ATOL)
    last = L.OctaveConv((5, 3), (4, 0), kernel_size=1).double()
    y, none = last((h, low))
    assert none is None
    hh = np_conv2d(h.detach().numpy(), last.w_hh.detach().numpy())
    exp = hh + np_up2(np_conv2d(low.detach().numpy(), last.w_lh.detach().numpy()), hh.shape[2:])
    np.testing.assert_allclose(y.detach().numpy(), exp, atol=ATOL)


@pytest.mark.parametrize("stride", [1, 2])
def test_octave_without_low_side_is_a_plain_conv(stride):
    conv = L.OctaveConv((5, 0), (7, 0), 3, stride).double()
    assert conv.w_hl is None and conv.w_lh is None and conv.w_ll is None
    x = torch.randn(2, 5, 13, 11, dtype=torch.float64)
    y, low = conv((x, None))
    assert low is None
    torch.testing.assert_close(y, F.conv2d(x, conv.w_hh, stride=stride, padding=1), atol=ATOL, rtol=0)


# --- Res2Net split (MSFE) ---------------------------------------------------------------------------------
def _identity_split(width, scale, stride, first):
    split = L.Res2NetSplit(width, scale, stride, first).double().eval()
    make_identity_bn(split)
    with torch.no_grad():
        for conv in split.convs:
            conv.w_hh.copy_(delta_kernel(conv.in_ch[0]))
            if conv.w_ll is not None:
                conv.w_ll.copy_(delta_kernel(conv.in_ch[1]))
                conv.w_hl.zero_()
                conv.w_lh.zero_()
    return split


@pytest.mark.parametrize("width", [(8, 0), (12, 4)])
def test_res2net_hierarchy_is_a_cumulative_sum(width):
    # With identity m_i, eq. 2 gives b_i = a_1 + ... + a_i, separately for each frequency.
    split = _identity_split(width, 4, 1, first=False)
    x_h = torch.rand(2, width[0], 9, 7, dtype=torch.float64)
    x_l = torch.rand(2, width[1], 5, 4, dtype=torch.float64) if width[1] else None
    y_h, y_l = split((x_h, x_l))
    for x, y in ((x_h, y_h), (x_l, y_l)):
        if x is None:
            assert y is None
            continue
        groups = torch.chunk(x, 4, dim=1)
        expected = torch.cat([sum(groups[: i + 1]) for i in range(4)], 1)
        torch.testing.assert_close(y, expected, atol=ATOL, rtol=0)


def test_res2net_stage_block_has_no_hierarchy():
    # First block of a stage with stride 2: b_1 = avgpool3×3/2(a_1), b_i = m_i(a_i) (identity m_i strided).
    split = _identity_split((8, 0), 4, 2, first=True)
    x = torch.rand(1, 8, 9, 7, dtype=torch.float64)
    y, _ = split((x, None))
    a = torch.chunk(x, 4, dim=1)
    expected = torch.cat([F.avg_pool2d(a[0], 3, 2, 1)] + [g[:, :, ::2, ::2] for g in a[1:]], 1)
    torch.testing.assert_close(y, expected, atol=ATOL, rtol=0)


def test_res2net_rejects_uneven_groups():
    with pytest.raises(ValueError, match="split evenly"):
        L.Res2NetSplit((10, 0), 4, 1, False)


# --- Dense dilated convolution ----------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "c", "h", "w"), [(2, 5, 13, 11), (1, 3, 7, 9)])
def test_dilated_branches_match_direct_convolution(rng, n, c, h, w):
    x = rng.standard_normal((n, c, h, w))
    dil = (1, 3, 5)
    ws = [rng.standard_normal((c, c, 3, 3)) for _ in dil]
    bs = [rng.standard_normal(c) for _ in dil]
    outs = dilated_branches_native(t(x), [t(a) for a in ws], [t(b) for b in bs], dil)
    for out, wt, b, d in zip(outs, ws, bs, dil, strict=True):
        np.testing.assert_allclose(out.numpy(), np_conv2d(x, wt, b, dilation=d), atol=ATOL)


def test_dense_atrous_receptive_fields_are_3_7_9_19():
    block = L.DenseAtrousBlock(2).double()
    for p in block.parameters():
        nn.init.uniform_(p, 0.1, 1.0)  # positive weights: no accidental cancellation in the gradient
    x = torch.randn(1, 2, 41, 41, dtype=torch.float64, requires_grad=True)
    fields = []
    for branch in block.branches(x):
        (grad,) = torch.autograd.grad(branch[0, 0, 20, 20], x, retain_graph=True)
        rows = grad.abs().sum((0, 1, 3)).nonzero()
        fields.append(int(rows.max() - rows.min() + 1))
    assert fields == [3, 7, 9, 19]


def test_dense_atrous_block_sums_branches_with_input(rng):
    c = 3
    block = L.DenseAtrousBlock(c).double()
    with torch.no_grad():
        block.project.weight.copy_(delta_kernel(c, 1))
        block.project.bias.zero_()
    x = rng.standard_normal((2, c, 11, 13))
    w = {d: getattr(block, f"d{d}") for d in (1, 3, 5)}
    wt = {d: m.weight.detach().numpy() for d, m in w.items()}
    bs = {d: m.bias.detach().numpy() for d, m in w.items()}
    t1 = np_conv2d(x, wt[1], bs[1], 1)
    t2 = np_conv2d(x, wt[3], bs[3], 3)
    t3 = np_conv2d(t1, wt[3], bs[3], 3)
    t4 = np_conv2d(t3, wt[5], bs[5], 5)
    expected = x + sum(np.maximum(v, 0) for v in (t1, t2, t3, t4))
    np.testing.assert_allclose(block(t(x)).detach().numpy(), expected, atol=1e-9)


def test_fresh_ddc_block_is_identity_then_relu():
    block = L.DDCBlock(16, 4).eval()
    x = torch.randn(2, 16, 7, 5)
    torch.testing.assert_close(block(x), F.relu(x))


# --- Attention ---------------------------------------------------------------------------------------------
def test_cbam_follows_equations_3_to_8(rng):
    c, r = 32, 16
    cbam = L.CBAM(c, r).double()
    for p in cbam.parameters():
        nn.init.normal_(p, 0, 0.5)
    x = rng.standard_normal((2, c, 9, 7))
    w1 = cbam.channel.mlp[0].weight.detach().numpy()[:, :, 0, 0]
    w2 = cbam.channel.mlp[2].weight.detach().numpy()[:, :, 0, 0]

    def mlp(v):  # v (N, C)
        return np.maximum(v @ w1.T, 0) @ w2.T

    a_c = sigmoid(mlp(x.mean((2, 3))) + mlp(x.max((2, 3))))  # eq. 6
    g = x * a_c[:, :, None, None]  # eq. 7
    pooled = np.stack([g.mean(1), g.max(1)], 1)
    conv = cbam.spatial.conv
    a_s = sigmoid(np_conv2d(pooled, conv.weight.detach().numpy(), conv.bias.detach().numpy()))  # eq. 8
    np.testing.assert_allclose(cbam(t(x)).detach().numpy(), g * a_s, atol=ATOL)


def test_squeeze_excite_follows_equation_10(rng):
    c = 20
    se = L.SqueezeExcite(c, 4).double()
    for p in se.parameters():
        nn.init.normal_(p, 0, 0.5)
    x = rng.standard_normal((3, c, 5, 6))
    w1, b1 = se.fc1.weight.detach().numpy()[:, :, 0, 0], se.fc1.bias.detach().numpy()
    w2, b2 = se.fc2.weight.detach().numpy()[:, :, 0, 0], se.fc2.bias.detach().numpy()
    gate = sigmoid(np.maximum(x.mean((2, 3)) @ w1.T + b1, 0) @ w2.T + b2)
    np.testing.assert_allclose(se(t(x)).detach().numpy(), x * gate[:, :, None, None], atol=ATOL)


# --- Inception-like sampling ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("h", "w"), [(13, 11), (2, 2), (1, 5)])
def test_inception_blocks_halve_and_double(h, w):
    x = torch.randn(2, 12, h, w)
    down = L.InceptionDownsample(12, 10)(x)
    assert down.shape == (2, 10, (h + 1) // 2, (w + 1) // 2)
    assert L.InceptionUpsample(12, 9)(x).shape == (2, 9, 2 * h, 2 * w)
