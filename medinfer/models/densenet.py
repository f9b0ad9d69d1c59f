"""DenseNet-121 (Huang et al., 2017), written here without torchvision.

With ``num_classes=1000, in_chans=3`` it has exactly torchvision's 7,978,856 parameters. Its registered
default is the DDC-ResNet paper's liver-ROI comparison (Table 4): 64×64 single-channel input, four
classes; the Res-Dense Net paper uses it as one pipe of Res-Dense Net (``res_dense.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medinfer.models.layers import Classifier, ClassifierHead, init_weights
from medinfer.models.registry import variant
from medinfer.tasks import LIVER_CLASSES, LIVER_PREPROCESS


@dataclass(frozen=True)
class DenseNetCfg:
    growth_rate: int = 32
    block_config: tuple[int, ...] = (6, 12, 24, 16)  # dense layers per block
    num_init_features: int = 64
    bn_size: int = 4  # bottleneck width = bn_size × growth_rate
    compression: float = 0.5  # transition layers keep this fraction of channels
    drop_rate: float = 0.0  # dropout inside dense layers
    head_drop_rate: float = 0.0  # dropout before the classifier


class DenseLayer(nn.Module):
    """BN → ReLU → 1×1 (bn_size·k) → BN → ReLU → 3×3 (k); its output is concatenated to its input."""

    def __init__(self, in_ch: int, growth_rate: int, bn_size: int, drop_rate: float):
        super().__init__()
        mid = bn_size * growth_rate
        self.norm1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, mid, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, growth_rate, 3, padding=1, bias=False)
        self.drop = nn.Dropout(drop_rate)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv1(F.relu(self.norm1(x)))
        y = self.drop(self.conv2(F.relu(self.norm2(y))))
        return torch.cat([x, y], 1)


class Transition(nn.Sequential):
    """BN → ReLU → 1×1 conv (compression) → 2×2 average pool."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(nn.BatchNorm2d(in_ch), nn.ReLU(inplace=True), nn.Conv2d(in_ch, out_ch, 1, bias=False),
                         nn.AvgPool2d(2, 2))


class DenseNet(Classifier):
    """Stem (7×7/2 conv, 3×3/2 max-pool) → dense blocks with transitions → BN → ReLU → head.
    ``forward_features`` returns the post-ReLU map (``num_features`` channels at 1/32 of the input)."""

    def __init__(self, cfg: DenseNetCfg, num_classes: int, in_chans: int):
        super().__init__()
        self.cfg = cfg
        ch = cfg.num_init_features
        layers: list[nn.Module] = [
            nn.Conv2d(in_chans, ch, 7, 2, 3, bias=False), nn.BatchNorm2d(ch), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        ]
        for i, depth in enumerate(cfg.block_config):
            for _ in range(depth):
                layers.append(DenseLayer(ch, cfg.growth_rate, cfg.bn_size, cfg.drop_rate))
                ch += cfg.growth_rate
            if i != len(cfg.block_config) - 1:
                out_ch = int(ch * cfg.compression)
                layers.append(Transition(ch, out_ch))
                ch = out_ch
        layers += [nn.BatchNorm2d(ch), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.num_features = ch
        self.head = ClassifierHead(ch, num_classes, cfg.head_drop_rate)
        init_weights(self)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)


def _build(cfg: DenseNetCfg, num_classes: int, in_chans: int) -> DenseNet:
    return DenseNet(cfg, num_classes, in_chans)


@variant("densenet", _build, DenseNetCfg(), class_names=LIVER_CLASSES,
         preprocess=LIVER_PREPROCESS, paper="DDC-ResNet paper, Table 4 (classical network)")
def densenet121():
    """DenseNet-121 (Huang et al., 2017)"""
    return {}
