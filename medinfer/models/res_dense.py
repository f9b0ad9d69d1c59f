"""Res-Dense Net and the DenseNet pair (the Res-Dense Net paper, shared/seeds/003: "Custom Deep Neural
Network for 3D Covid Chest CT-scan Classification"), per-slice classifiers whose slice scores are averaged
over a series.

Two pipes see the same slice. ``resdense_net``: ResNet-101 features (2048 channels at 1/32) go through a
1×1 conv to DenseNet-121's 1024 channels and are added to its features; the sum is global-average-pooled
and classified. ``densenet_pair``: the DenseNet-only combination, two DenseNet-121 pipes (channels already
agree, so no alignment conv). Input 256×256.

The paper fine-tuned ImageNet weights on 3-channel JPEG slices; no pretrained weights can be fetched here,
so the default is one HU channel trained from scratch (``in_chans=3`` is available for users who bring
weights). The paper's two-phase fine-tuning freezes ``pipe_a``/``pipe_b`` first; ``head_modules()`` is what
stays trainable then.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from medinfer.models.densenet import DenseNet, DenseNetCfg
from medinfer.models.layers import Classifier, ClassifierHead, init_weights
from medinfer.models.registry import variant
from medinfer.models.resnet import ResNet, ResNetCfg
from medinfer.tasks import CHEST_PREPROCESS, COVID_CLASSES


@dataclass(frozen=True)
class DualPipeCfg:
    pipe_a: str = "resnet"  # "resnet" or "densenet"
    pipe_b: str = "densenet"
    resnet: ResNetCfg = ResNetCfg()
    densenet: DenseNetCfg = DenseNetCfg()
    drop_rate: float = 0.0


def _pipe(kind: str, cfg: DualPipeCfg, in_chans: int) -> nn.Module:
    if kind == "resnet":
        return ResNet(cfg.resnet, 0, in_chans)
    if kind == "densenet":
        return DenseNet(cfg.densenet, 0, in_chans)
    raise ValueError(f"unknown pipe {kind!r}; expected 'resnet' or 'densenet'")


class DualPipeNet(Classifier):
    def __init__(self, cfg: DualPipeCfg, num_classes: int, in_chans: int):
        super().__init__()
        self.cfg = cfg
        self.pipe_a = _pipe(cfg.pipe_a, cfg, in_chans)
        self.pipe_b = _pipe(cfg.pipe_b, cfg, in_chans)
        a_ch, b_ch = self.pipe_a.num_features, self.pipe_b.num_features
        self.align = nn.Conv2d(a_ch, b_ch, 1) if a_ch != b_ch else nn.Identity()
        self.num_features = b_ch
        self.head = ClassifierHead(b_ch, num_classes, cfg.drop_rate)
        for m in self.head_modules():
            init_weights(m)

    def head_modules(self) -> list[nn.Module]:
        """Everything but the two backbones: trainable in the frozen phase of the ``resdense2021`` recipe."""
        return [self.align, self.head]

    def forward_features(self, x: Tensor) -> Tensor:
        a = self.align(self.pipe_a.forward_features(x))
        b = self.pipe_b.forward_features(x)
        if a.shape[-2:] != b.shape[-2:]:
            # Odd input sizes round differently in the two stems (ResNet's strided convs vs DenseNet's
            # pooling); at the 256×256 of the paper the maps agree and this never runs.
            a = F.interpolate(a, size=b.shape[-2:], mode="bilinear", align_corners=False)
        return a + b


def _build(cfg: DualPipeCfg, num_classes: int, in_chans: int) -> DualPipeNet:
    return DualPipeNet(cfg, num_classes, in_chans)


_COVID = {"class_names": COVID_CLASSES, "preprocess": CHEST_PREPROCESS, "paper": "Res-Dense Net paper"}


@variant("dual_pipe", _build, DualPipeCfg(), **_COVID)
def resdense_net():
    """Res-Dense Net: ResNet-101 + DenseNet-121 pipes, 1×1 alignment, sum, GAP, classifier"""
    return {}


@variant("dual_pipe", _build, DualPipeCfg(), **_COVID)
def densenet_pair():
    """Two DenseNet-121 pipes, sum, GAP, classifier (the paper's DenseNet-only combination)"""
    return {"pipe_a": "densenet"}
