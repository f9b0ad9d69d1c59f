"""DDC-ResNet101 (the DDC-ResNet paper, shared/seeds/000: "A novel ResNet101 model based on dense dilated
convolution") and the variants of its ablation (Table 3).

The network is SE-ResNet-101 (stages of 3, 4, 23, 3 bottlenecks) whose bottleneck is rebuilt as

    x ─ 1×1 ─ MSFE (Res2Net split, s=4, octave 3×3 convs) ─ 1×1 ─ DFE (CBAM) ─ SE ─ (+ shortcut) ─ ReLU

with a DDC block after every stage ("DDC:256/512/1024/2048", Table 1) and the "DDC:4" head before the
softmax. Registered variants, one per Table 3 row:

=================  =========================================================================
``se_resnet101``   baseline (in ``resnet.py``; identical to this family with everything off)
``msfe``           + multi-scale feature extraction (Res2Net split, scale 4)
``msfe_dfe``       + depth feature extraction (CBAM, reduction 16)
``msfe_dfe_ddc``   + dense dilated convolution blocks and the DDC:4 head
``ddc_resnet101``  + CSS stem, octave convolution (alpha 0.25), inception-like down/up-sampling
=================  =========================================================================

Choices where the paper is ambiguous, and why:

* **Where octave convolution applies.** It replaces the 3×3 convolutions of MSFE (the ``m_i`` of eq. 2),
  which carry most of the network's 3×3 work. The octave representation lives inside the bottleneck: the
  first 1×1 conv is a "first octave" layer (high: conv(x); low: conv(avgpool(x))), the hierarchical split
  runs on (high, low) pairs, the last 1×1 conv is a "last octave" layer (high + upsampled low). The
  bottleneck's interface stays an ordinary tensor, so CBAM, SE, the shortcut and the DDC blocks are
  unchanged. The stem, the DDC's dilated convs and the inception blocks stay ordinary: a 1-channel input
  has no frequency split to speak of, and the dilated convs are the fused DDC kernel's business.
  ``octave_alpha=0`` turns it off exactly (an octave conv without a low side is a plain conv).
* **DDC per stage.** CE-Net's dense atrous block (dilations 1, 3, 5 shared across four branches with
  receptive fields 3, 7, 9, 19, a shared 1×1 + ReLU ending each branch, summed with the input). At
  2048 channels it would cost 117 M weights, far from the paper's +2.7 M for the whole DDC row, so each
  stage's DDC runs at ``channels / ddc_reduction`` (8) between a 1×1 reduction and a zero-initialised
  1×1 expansion with its own shortcut (:class:`~medinfer.models.layers.DDCBlock`).
* **"DDC:4".** Read with the same convention as DDC:256…2048 (the block's channel count): the last DDC
  has as many output channels as classes (four in the paper) and feeds the softmax directly (Fig. 6 has
  no fully connected layer). Implemented as entry → dense atrous block at ``head_width`` → global
  average pool → linear map to ``num_classes`` (a 1×1 conv to the classes followed by pooling, which is
  the same linear map, taken in the cheaper order).
* **Up-sampling block in a classifier.** The network never needs to regain resolution except in one
  place: at the paper's 64×64 input the last stage is 2×2, where a 3×3 conv dilated by 3 or 5 sees only
  padding around the centre. The inception-like up-sampling block (Fig. 5b) is the DDC:4 head's entry and
  doubles the map (2×2 → 4×4) while narrowing 2048 channels to ``head_width``. The down-sampling block
  (Fig. 5a) replaces the strided 1×1 projection of every downsampling shortcut. Without
  ``inception_sampling`` the head's entry is a 1×1 reduction and shortcuts are the usual projections.
* **MSFE in a stage's first block.** ``b_i = m_i(b_{i-1} + a_i)`` (eq. 2) cannot hold when ``m_i`` strides;
  as in Res2Net's "stage" blocks, the first block of each stage uses ``b_i = m_i(a_i)`` and average-pools
  ``a_1``. MSFE keeps the bottleneck width (``base_width`` 64) and splits it into 4 groups, which is what
  makes the MSFE row *smaller* than the baseline, in Table 3 as in ours (`medinfer models`).
* **CSS stem.** Three 3×3 convs (stride 2, 1, 1) with BN and ReLU after each; see ``resnet.make_stem``.
* **SE after CBAM.** Eq. 10 applies the SE gate to F'', the DFE output, before the residual add.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from medinfer.models.layers import (
    CBAM,
    ClassifierHead,
    ConvBnAct,
    DDCBlock,
    DenseAtrousBlock,
    InceptionDownsample,
    InceptionUpsample,
    OctaveBnAct,
    OctaveConv,
    Res2NetSplit,
    SqueezeExcite,
    octave_split,
)
from medinfer.models.registry import variant
from medinfer.models.resnet import EXPANSION, ResNet, ResNetCfg
from medinfer.tasks import LIVER_CLASSES, LIVER_PREPROCESS


@dataclass(frozen=True)
class DDCResNetCfg(ResNetCfg):
    se_reduction: int | None = 16
    scale: int = 1  # MSFE: Res2Net groups (4 in the paper); 1 = an ordinary 3×3 conv
    base_width: int = 64  # MSFE width per 64 planes (64 keeps the bottleneck width)
    dfe: bool = False  # CBAM after the bottleneck's last 1×1 conv
    cbam_reduction: int = 16
    ddc: bool = False  # a DDC block after every stage and the DDC:4 head
    ddc_reduction: int = 8  # a stage DDC runs at channels / ddc_reduction
    head_width: int = 256  # channels of the DDC:4 head's atrous block
    octave_alpha: float = 0.0  # fraction of low-frequency channels in MSFE's 3×3 convs; 0 = off
    inception_sampling: bool = False  # inception-like down-sampling shortcuts and up-sampling head


class DDCBottleneck(nn.Module):
    """MSFE (octave) → 1×1 → DFE → SE → residual add → ReLU."""

    def __init__(self, in_ch: int, planes: int, stride: int, shortcut: nn.Module | None, cfg: DDCResNetCfg):
        super().__init__()
        out_ch = planes * EXPANSION
        width = planes * cfg.base_width // 64
        if width % cfg.scale:
            raise ValueError(f"bottleneck width {width} is not divisible by scale={cfg.scale}")
        hi, lo = octave_split(width // cfg.scale, cfg.octave_alpha)
        split = (hi * cfg.scale, lo * cfg.scale)
        self.conv1 = OctaveConv((in_ch, 0), split, kernel_size=1)
        self.bn1 = OctaveBnAct(split)
        self.msfe = Res2NetSplit(split, cfg.scale, stride, first=shortcut is not None)
        self.conv3 = OctaveConv(split, (out_ch, 0), kernel_size=1)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.dfe = CBAM(out_ch, cfg.cbam_reduction) if cfg.dfe else nn.Identity()
        self.se = SqueezeExcite(out_ch, cfg.se_reduction) if cfg.se_reduction else nn.Identity()
        self.shortcut = shortcut if shortcut is not None else nn.Identity()

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn3.weight)

    def forward(self, x: Tensor) -> Tensor:
        y = self.msfe(self.bn1(self.conv1((x, None))))
        y = self.bn3(self.conv3(y)[0])
        return F.relu(self.se(self.dfe(y)) + self.shortcut(x))


class DDCHead(nn.Module):
    """"DDC:4": entry (inception up-sampling ×2, or a 1×1 reduction) → dense atrous block → GAP → linear."""

    def __init__(self, in_ch: int, width: int, num_classes: int, upsample: bool, drop_rate: float):
        super().__init__()
        self.entry = InceptionUpsample(in_ch, width) if upsample else ConvBnAct(in_ch, width, 1)
        self.dac = DenseAtrousBlock(width)
        self.classifier = ClassifierHead(width, num_classes, drop_rate)

    def forward(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return self.classifier(self.dac(self.entry(x)), pre_logits)


class DDCResNet(ResNet):
    cfg: DDCResNetCfg

    def make_shortcut(self, in_ch: int, out_ch: int, stride: int) -> nn.Module:
        if self.cfg.inception_sampling and stride != 1:
            return InceptionDownsample(in_ch, out_ch, stride)
        return super().make_shortcut(in_ch, out_ch, stride)

    def make_block(self, in_ch: int, planes: int, stride: int, shortcut: nn.Module | None) -> nn.Module:
        return DDCBottleneck(in_ch, planes, stride, shortcut, self.cfg)

    def make_stage_tail(self, channels: int) -> list[nn.Module]:
        return [DDCBlock(channels, max(channels // self.cfg.ddc_reduction, 1))] if self.cfg.ddc else []

    def make_head(self, channels: int, num_classes: int) -> nn.Module:
        if not self.cfg.ddc:
            return super().make_head(channels, num_classes)
        return DDCHead(channels, self.cfg.head_width, num_classes, self.cfg.inception_sampling, self.cfg.drop_rate)


def _build(cfg: DDCResNetCfg, num_classes: int, in_chans: int) -> DDCResNet:
    return DDCResNet(cfg, num_classes, in_chans)


_TABLE3 = {"class_names": LIVER_CLASSES, "preprocess": LIVER_PREPROCESS,
           "paper": "DDC-ResNet paper, Table 3"}
_MSFE = {"scale": 4}
_DFE = {**_MSFE, "dfe": True}
_DDC = {**_DFE, "ddc": True}


@variant("ddc_resnet", _build, DDCResNetCfg(), paper_params_m=34.64, **_TABLE3)
def msfe():
    """SE-ResNet-101 + MSFE (Res2Net split, scale 4)"""
    return _MSFE


@variant("ddc_resnet", _build, DDCResNetCfg(), paper_params_m=56.25, **_TABLE3)
def msfe_dfe():
    """SE-ResNet-101 + MSFE + DFE (CBAM)"""
    return _DFE


@variant("ddc_resnet", _build, DDCResNetCfg(), paper_params_m=58.94, **_TABLE3)
def msfe_dfe_ddc():
    """SE-ResNet-101 + MSFE + DFE + DDC blocks and the DDC:4 head"""
    return _DDC


@variant("ddc_resnet", _build, DDCResNetCfg(), paper_params_m=55.27, **_TABLE3)
def ddc_resnet101():
    """DDC-ResNet101: MSFE + DFE + DDC + CSS stem, octave convolution, inception down/up-sampling"""
    return {**_DDC, "stem": "css", "octave_alpha": 0.25, "inception_sampling": True}
