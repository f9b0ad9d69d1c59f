"""Building blocks of the model zoo, in plain PyTorch.

The octave convolution and the dense atrous block call the fused ops of :mod:`medinfer.ops`, which hold
their own references (``*_native``); on the CPU and while training those references run. Nothing here
depends on a GPU, Triton or the native extension, and everything exports to ONNX with standard operators.

Octave tensors travel as ``(high, low)`` pairs; ``low`` is ``None`` when a layer has no low-frequency
channels (``alpha = 0``), which makes every octave layer an ordinary one.
"""

from __future__ import annotations

import abc

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medinfer import ops
from medinfer.ops.dilated import dilated_branches_native

OctaveTensor = tuple[Tensor, Tensor | None]


# ---------------------------------------------------------------------------------------------------------
# Basic convolution blocks
# ---------------------------------------------------------------------------------------------------------
class ConvBnAct(nn.Sequential):
    """Conv (no bias) → BatchNorm → optional ReLU, padding chosen to keep the size at stride 1."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, dilation: int = 1,
                 act: bool = True):
        padding = dilation * (kernel_size - 1) // 2
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ClassifierHead(nn.Module):
    """Global average pooling → dropout → linear classifier (none when ``num_classes`` is 0: the model is
    then a feature extractor, as a pipe of a two-pipe network)."""

    def __init__(self, in_ch: int, num_classes: int, drop_rate: float = 0.0):
        super().__init__()
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_ch, num_classes) if num_classes else nn.Identity()

    def forward(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = x.mean((2, 3))
        return x if pre_logits else self.fc(self.drop(x))


class Classifier(nn.Module, abc.ABC):
    """timm's model interface. Subclasses define ``forward_features`` (a feature map with
    ``num_features`` channels) and ``self.head`` (a :class:`ClassifierHead`-like module)."""

    num_features: int
    head: nn.Module

    @abc.abstractmethod
    def forward_features(self, x: Tensor) -> Tensor: ...

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return self.head(x, pre_logits)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def init_weights(model: nn.Module, zero_init_last: bool = True) -> None:
    """Kaiming (fan-out) convolutions, unit BatchNorm, zero biases; then, when asked, every residual
    block's ``zero_init_last()`` so that fresh blocks start as identities (Goyal et al., 2017)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
    if zero_init_last:
        for m in model.modules():
            if m is not model and hasattr(m, "zero_init_last"):
                m.zero_init_last()


# ---------------------------------------------------------------------------------------------------------
# Attention: squeeze-and-excitation (eq. 10) and CBAM (eq. 3–8)
# ---------------------------------------------------------------------------------------------------------
def reduced_channels(channels: int, reduction: int) -> int:
    return max(channels // reduction, 1)


class SqueezeExcite(nn.Module):
    """SE gate, eq. 10: ``x · σ(fc(δ(fc(GAP(x)))))`` (Hu et al.); the two FC layers as 1×1 convs with bias."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = reduced_channels(channels, reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class ChannelAttention(nn.Module):
    """CBAM channel attention, eq. 5–6: ``σ(M(avg(F)) + M(max(F)))`` with ``M`` = 1×1 conv → ReLU → 1×1 conv
    shared by both pooled descriptors. Returns the attention map ``(N, C, 1, 1)``."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = reduced_channels(channels, reduction)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, channels, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.mlp(x.mean((2, 3), keepdim=True)) + self.mlp(x.amax((2, 3), keepdim=True)))


class SpatialAttention(nn.Module):
    """CBAM spatial attention, eq. 8: ``σ(f7×7([avg_c(G); max_c(G)]))``. Returns ``(N, 1, H, W)``."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


class CBAM(nn.Module):
    """Depth feature extraction (DFE), eq. 3 and 7: ``G = A_C(F)·F``; ``F' = A_S(G)·G``."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        g = x * self.channel(x)
        return g * self.spatial(g)


# ---------------------------------------------------------------------------------------------------------
# Octave convolution (Chen et al., ICCV 2019)
# ---------------------------------------------------------------------------------------------------------
def octave_split(channels: int, alpha: float) -> tuple[int, int]:
    """(high, low) channel counts for a fraction ``alpha`` of low-frequency channels.

    At least one channel lands on each side whenever ``0 < alpha < 1`` and ``channels >= 2``, so narrow
    test configurations still exercise all four paths.
    """
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"octave alpha must be in [0, 1), got {alpha}")
    if alpha == 0.0 or channels < 2:
        return channels, 0
    low = min(max(int(round(alpha * channels)), 1), channels - 1)
    return channels - low, low


class OctaveConv(nn.Module):
    """Octave convolution with explicit channel splits ``in_ch = (high, low)``, ``out_ch = (high, low)``.

    A zero on the input side is the "first" octave layer (ordinary input, octave output), a zero on the
    output side the "last" one; zeros on both sides make an ordinary convolution.
    """

    def __init__(self, in_ch: tuple[int, int], out_ch: tuple[int, int], kernel_size: int = 3, stride: int = 1):
        super().__init__()
        (ih, il), (oh, ol) = in_ch, out_ch
        if ih < 1 or oh < 1:
            raise ValueError(f"octave convolution needs high-frequency channels on both sides, got {in_ch}->{out_ch}")
        self.in_ch, self.out_ch, self.stride = (ih, il), (oh, ol), stride

        def weight(i: int, o: int) -> nn.Parameter | None:
            return nn.Parameter(torch.empty(o, i, kernel_size, kernel_size)) if i and o else None

        self.w_hh, self.w_hl, self.w_lh, self.w_ll = weight(ih, oh), weight(ih, ol), weight(il, oh), weight(il, ol)
        # The four paths partition one ordinary conv's weight: initialise them as that conv would be
        # (Kaiming, fan-out over all output channels), not each as a conv of its own.
        std = (2.0 / ((oh + ol) * kernel_size * kernel_size)) ** 0.5
        for w in (self.w_hh, self.w_hl, self.w_lh, self.w_ll):
            if w is not None:
                nn.init.normal_(w, 0.0, std)

    def forward(self, x: OctaveTensor) -> OctaveTensor:
        return ops.octave_conv(x[0], x[1], self.w_hh, self.w_hl, self.w_lh, self.w_ll, stride=self.stride)

    def extra_repr(self) -> str:
        return f"in_ch={self.in_ch}, out_ch={self.out_ch}, kernel_size={self.w_hh.shape[-1]}, stride={self.stride}"


class OctaveBnAct(nn.Module):
    """BatchNorm (and ReLU) applied to each frequency of an octave tensor."""

    def __init__(self, channels: tuple[int, int], act: bool = True):
        super().__init__()
        self.bn_h = nn.BatchNorm2d(channels[0])
        self.bn_l = nn.BatchNorm2d(channels[1]) if channels[1] else None
        self.act = act

    def forward(self, x: OctaveTensor) -> OctaveTensor:
        h = self.bn_h(x[0])
        low = self.bn_l(x[1]) if self.bn_l is not None and x[1] is not None else None
        if self.act:
            h = F.relu(h)
            low = F.relu(low) if low is not None else None
        return h, low


# ---------------------------------------------------------------------------------------------------------
# Res2Net hierarchical split (multi-scale feature extraction, MSFE, eq. 2)
# ---------------------------------------------------------------------------------------------------------
class Res2NetSplit(nn.Module):
    """The 3×3 stage of an MSFE bottleneck: split into ``scale`` groups ``a_i``; ``b_1 = a_1`` and
    ``b_i = m_i(b_{i-1} + a_i)``; concatenate (eq. 2, 4).

    In the first block of a stage (``first=True``: a stride or a width change) the hierarchy is not used,
    as in Res2Net's "stage" blocks: ``b_1 = avgpool3×3(a_1)`` and ``b_i = m_i(a_i)``, because ``b_{i-1}``
    and ``a_i`` do not share a resolution once ``m_i`` strides. Each ``m_i`` is an :class:`OctaveConv`
    (ordinary when the low side is empty) followed by BN and ReLU. ``scale=1`` is one plain 3×3 conv.
    """

    def __init__(self, width: tuple[int, int], scale: int, stride: int, first: bool):
        super().__init__()
        if scale < 1 or width[0] % scale or width[1] % scale:
            raise ValueError(f"Res2Net width {width} must split evenly into scale={scale} groups")
        self.scale, self.first, self.stride = scale, first or stride != 1, stride
        group = (width[0] // scale, width[1] // scale)
        n_convs = 1 if scale == 1 else scale - 1
        self.convs = nn.ModuleList(OctaveConv(group, group, 3, stride) for _ in range(n_convs))
        self.bns = nn.ModuleList(OctaveBnAct(group) for _ in range(n_convs))
        self.pool = nn.AvgPool2d(3, stride, 1) if scale > 1 and self.first else None

    def _m(self, i: int, x: OctaveTensor) -> OctaveTensor:
        return self.bns[i](self.convs[i](x))

    def forward(self, x: OctaveTensor) -> OctaveTensor:
        if self.scale == 1:
            return self._m(0, x)
        hs = torch.chunk(x[0], self.scale, dim=1)
        ls = torch.chunk(x[1], self.scale, dim=1) if x[1] is not None else (None,) * self.scale
        if self.pool is not None:
            out = [(self.pool(hs[0]), self.pool(ls[0]) if ls[0] is not None else None)]
        else:
            out = [(hs[0], ls[0])]
        for i in range(1, self.scale):
            a = (hs[i], ls[i])
            if not self.first:
                prev = out[-1]
                a = (a[0] + prev[0], a[1] + prev[1] if a[1] is not None else None)
            out.append(self._m(i - 1, a))
        low = torch.cat([o[1] for o in out], 1) if x[1] is not None else None
        return torch.cat([o[0] for o in out], 1), low


# ---------------------------------------------------------------------------------------------------------
# Dense dilated convolution (DDC; CE-Net's dense atrous convolution block)
# ---------------------------------------------------------------------------------------------------------
class DenseAtrousBlock(nn.Module):
    """Four cascaded branches of 3×3 dilated convolutions with receptive fields 3, 7, 9 and 19.

    As in CE-Net's DAC block the three dilated convolutions (rates 1, 3, 5) are shared between branches:
    ``t1 = d1(x)``, ``t2 = d3(x)``, ``t3 = d3(t1)``, ``t4 = d5(t3)``. Each branch ends in the shared 1×1
    convolution and a ReLU (the paper's Sec. 3.3; CE-Net skips the 1×1 on its first branch) and the
    branches are summed with the input: ``x + Σ relu(c(t_k))``.

    ``forward`` runs as three :func:`medinfer.ops.dilated_branches` calls with the projection, ReLU, sum
    and residual fused (:class:`medinfer.ops.DDCEpilogue`): {d1, d3} over ``x`` keeping ``t1``, then
    d3 over ``t1`` keeping ``t3``, then d5 over ``t3``; ``t2`` and ``t4`` are never written. On the CPU
    (and while training) that is the reference, operation for operation.
    """

    dilations = (1, 3, 5)

    def __init__(self, channels: int):
        super().__init__()
        self.d1, self.d3, self.d5 = (nn.Conv2d(channels, channels, 3, padding=d, dilation=d) for d in self.dilations)
        self.project = nn.Conv2d(channels, channels, 1)
        for conv in (self.d1, self.d3, self.d5, self.project):
            nn.init.zeros_(conv.bias)

    def branches(self, x: Tensor) -> list[Tensor]:
        """The four branch tensors before the 1×1 projection."""
        t1, t2 = dilated_branches_native(x, (self.d1.weight, self.d3.weight), (self.d1.bias, self.d3.bias), (1, 3))
        t3 = self.d3(t1)
        t4 = self.d5(t3)
        return [t1, t2, t3, t4]

    def forward(self, x: Tensor) -> Tensor:
        p = self.project
        out, t1 = ops.dilated_branches(x, (self.d1.weight, self.d3.weight), (self.d1.bias, self.d3.bias), (1, 3),
                                       epilogue=ops.DDCEpilogue(p.weight, p.bias, x, keep=(True, False)))
        out, t3 = ops.dilated_branches(t1, (self.d3.weight,), (self.d3.bias,), (3,),
                                       epilogue=ops.DDCEpilogue(p.weight, p.bias, out, keep=(True,)))
        (out,) = ops.dilated_branches(t3, (self.d5.weight,), (self.d5.bias,), (5,),
                                      epilogue=ops.DDCEpilogue(p.weight, p.bias, out))
        return out


class DDCBlock(nn.Module):
    """A stage-level DDC: 1×1 reduce to ``width`` (BN, ReLU) → dense atrous block → 1×1 expand (BN) → add
    the input → ReLU.

    The reduction keeps the block affordable after the 1024- and 2048-channel stages (the atrous block
    costs ``28·width²`` weights); the expand BN starts at zero so a fresh block is the identity.
    """

    def __init__(self, channels: int, width: int):
        super().__init__()
        self.reduce = ConvBnAct(channels, width, 1)
        self.dac = DenseAtrousBlock(width)
        self.expand = ConvBnAct(width, channels, 1, act=False)
        self.zero_init_last()

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.expand[1].weight)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.expand(self.dac(self.reduce(x))))


# ---------------------------------------------------------------------------------------------------------
# Inception-like down- and up-sampling (Fig. 5)
# ---------------------------------------------------------------------------------------------------------
def _branch_widths(out_ch: int, n: int = 4) -> list[int]:
    base = out_ch // n
    if base < 1:
        raise ValueError(f"an inception block needs at least {n} output channels, got {out_ch}")
    return [base + (1 if i < out_ch % n else 0) for i in range(n)]


class InceptionDownsample(nn.Module):
    """Fig. 5a: parallel 1×1, 1×1→3×3, 1×1→5×5 convolutions and 3×3 max-pool→1×1, all at ``stride``,
    concatenated and batch-normalised. Replaces the single strided 1×1 projection of a ResNet shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 2):
        super().__init__()
        w1, w3, w5, wp = _branch_widths(out_ch)
        mid3, mid5 = max(w3 // 4, 1), max(w5 // 4, 1)
        self.b1 = nn.Conv2d(in_ch, w1, 1, stride, bias=False)
        self.b3 = nn.Sequential(ConvBnAct(in_ch, mid3, 1), nn.Conv2d(mid3, w3, 3, stride, 1, bias=False))
        self.b5 = nn.Sequential(ConvBnAct(in_ch, mid5, 1), nn.Conv2d(mid5, w5, 5, stride, 2, bias=False))
        self.bp = nn.Sequential(nn.MaxPool2d(3, stride, 1), nn.Conv2d(in_ch, wp, 1, bias=False))
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1))


class InceptionUpsample(nn.Module):
    """Fig. 5b, the mirror of :class:`InceptionDownsample`: transposed convolutions (2×2, 1×1→3×3,
    1×1→5×5, all stride 2) and nearest upsampling→1×1 in parallel, concatenated, BN, ReLU; output exactly
    twice the input size. (A 1×1 transposed conv at stride 2 would leave every other pixel empty, so the
    point-wise branch uses a 2×2 kernel.)"""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        w1, w3, w5, wp = _branch_widths(out_ch)
        mid3, mid5 = max(w3 // 4, 1), max(w5 // 4, 1)
        self.b1 = nn.ConvTranspose2d(in_ch, w1, 2, 2, bias=False)
        self.b3 = nn.Sequential(ConvBnAct(in_ch, mid3, 1),
                                nn.ConvTranspose2d(mid3, w3, 3, 2, 1, output_padding=1, bias=False))
        self.b5 = nn.Sequential(ConvBnAct(in_ch, mid5, 1),
                                nn.ConvTranspose2d(mid5, w5, 5, 2, 2, output_padding=1, bias=False))
        self.bp = nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(in_ch, wp, 1, bias=False))
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)))
