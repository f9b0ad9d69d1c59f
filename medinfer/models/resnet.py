"""ResNet-101 and SE-ResNet-101, written here (there is no CPU build of torchvision to borrow from).

With ``num_classes=1000, in_chans=3`` ``resnet101`` has exactly torchvision's 44,549,160 parameters
(bottleneck v1.5: the stride sits on the 3×3 conv). :class:`ResNet` is also the trunk other families
extend: a subclass overrides :meth:`ResNet.make_block`, :meth:`ResNet.make_shortcut`,
:meth:`ResNet.make_stage_tail` or :meth:`ResNet.make_head` (see ``ddc_resnet.py``).

Both models here are the "classical networks" the DDC-ResNet paper compares against (Table 4), so their
registered defaults are its liver-ROI task: 64×64 single-channel HU input, four classes; ``se_resnet101``
is also the baseline row of its ablation (Table 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from medinfer.models.layers import Classifier, ClassifierHead, ConvBnAct, SqueezeExcite, init_weights
from medinfer.models.registry import variant
from medinfer.tasks import LIVER_CLASSES, LIVER_PREPROCESS

EXPANSION = 4  # bottleneck output channels per plane


@dataclass(frozen=True)
class ResNetCfg:
    layers: tuple[int, ...] = (3, 4, 23, 3)  # bottlenecks per stage
    planes: tuple[int, ...] = (64, 128, 256, 512)  # bottleneck widths; stage outputs are 4× these
    stem: str = "conv7"  # "conv7": one 7×7 stride-2 conv; "css": three 3×3 convs (the DDC-ResNet paper's CSS)
    stem_width: int = 64
    se_reduction: int | None = None  # squeeze-and-excitation in every bottleneck when set
    drop_rate: float = 0.0  # dropout before the classifier
    zero_init_last: bool = True  # residual branches start at zero


def make_stem(kind: str, in_chans: int, width: int) -> nn.Sequential:
    """Stride-4 stem: a conv stage then 3×3/2 max-pool.

    ``css`` (the convolution substitution of the DDC-ResNet paper, Table 1) replaces the 7×7 conv by three
    3×3 convs (stride 2, 1, 1; widths w/2, w/2, w) with BN and ReLU after each. Table 1 lists the ReLU only
    after the third; without the inner ones three linear 3×3 convs would collapse into one 7×7 linear map
    and the substitution would add parameters without adding depth.
    """
    if kind == "conv7":
        convs = [nn.Conv2d(in_chans, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
    elif kind == "css":
        half = max(width // 2, 1)
        convs = [ConvBnAct(in_chans, half, 3, 2), ConvBnAct(half, half, 3), ConvBnAct(half, width, 3)]
    else:
        raise ValueError(f"unknown stem {kind!r}; expected 'conv7' or 'css'")
    return nn.Sequential(*convs, nn.MaxPool2d(3, 2, 1))


class Bottleneck(nn.Module):
    """1×1 → 3×3 (stride) → 1×1 (4× planes), optional SE gate, residual add, ReLU."""

    def __init__(self, in_ch: int, planes: int, stride: int, shortcut: nn.Module | None,
                 se_reduction: int | None):
        super().__init__()
        out_ch = planes * EXPANSION
        self.conv1 = ConvBnAct(in_ch, planes, 1)
        self.conv2 = ConvBnAct(planes, planes, 3, stride)
        self.conv3 = ConvBnAct(planes, out_ch, 1, act=False)
        self.se = SqueezeExcite(out_ch, se_reduction) if se_reduction else nn.Identity()
        self.shortcut = shortcut if shortcut is not None else nn.Identity()

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv3[1].weight)

    def forward(self, x: Tensor) -> Tensor:
        y = self.se(self.conv3(self.conv2(self.conv1(x))))
        return F.relu(y + self.shortcut(x))


class ResNet(Classifier):
    """Stem → four stages of bottlenecks (stride 1, 2, 2, 2) → head. ``forward_features`` returns the
    last stage's map (``num_features`` channels at 1/32 of the input), ``forward_head`` the logits."""

    def __init__(self, cfg: ResNetCfg, num_classes: int, in_chans: int):
        super().__init__()
        if len(cfg.layers) != len(cfg.planes):
            raise ValueError(f"layers {cfg.layers} and planes {cfg.planes} must have the same length")
        self.cfg = cfg
        self.stem = make_stem(cfg.stem, in_chans, cfg.stem_width)
        ch = cfg.stem_width
        stages = []
        for i, (depth, planes) in enumerate(zip(cfg.layers, cfg.planes, strict=True)):
            blocks: list[nn.Module] = []
            out_ch = planes * EXPANSION
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                shortcut = self.make_shortcut(ch, out_ch, stride) if stride != 1 or ch != out_ch else None
                blocks.append(self.make_block(ch, planes, stride, shortcut))
                ch = out_ch
            blocks.extend(self.make_stage_tail(ch))
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.num_features = ch
        self.head = self.make_head(ch, num_classes)
        init_weights(self, cfg.zero_init_last)

    # Extension points ------------------------------------------------------------------------------------
    def make_shortcut(self, in_ch: int, out_ch: int, stride: int) -> nn.Module:
        return ConvBnAct(in_ch, out_ch, 1, stride, act=False)

    def make_block(self, in_ch: int, planes: int, stride: int, shortcut: nn.Module | None) -> nn.Module:
        return Bottleneck(in_ch, planes, stride, shortcut, self.cfg.se_reduction)

    def make_stage_tail(self, channels: int) -> list[nn.Module]:
        return []

    def make_head(self, channels: int, num_classes: int) -> nn.Module:
        return ClassifierHead(channels, num_classes, self.cfg.drop_rate)

    # Forward ---------------------------------------------------------------------------------------------
    def forward_features(self, x: Tensor) -> Tensor:
        return self.stages(self.stem(x))


def _build(cfg: ResNetCfg, num_classes: int, in_chans: int) -> ResNet:
    return ResNet(cfg, num_classes, in_chans)


_LIVER = {"class_names": LIVER_CLASSES, "preprocess": LIVER_PREPROCESS}


@variant("resnet", _build, ResNetCfg(), paper="DDC-ResNet paper, Table 4 (classical network)", **_LIVER)
def resnet101():
    """ResNet-101 (He et al., 2016)"""
    return {}


@variant("resnet", _build, ResNetCfg(), paper="DDC-ResNet paper, Table 3 (baseline)", paper_params_m=49.23, **_LIVER)
def se_resnet101():
    """SE-ResNet-101 (Hu et al.), reduction 16: the ablation baseline"""
    return {"se_reduction": 16}
