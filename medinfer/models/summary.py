"""Parameter and FLOP counts of registered models.

FLOPs are 2 × multiply-accumulates of a batch-1 forward at the variant's input size, as counted by
``torch.utils.flop_counter`` (convolutions and matrix products; element-wise work excluded). Models are
built on the CPU: on the ``meta`` device PyTorch's Python decompositions of the initialisers and
operators make counting several times slower, not faster.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from medinfer.models.registry import create, get_spec


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_size: tuple[int, int], in_chans: int) -> int:
    device = next(model.parameters()).device
    x = torch.zeros(1, in_chans, *input_size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(x)
    return counter.get_total_flops()


@dataclass(frozen=True)
class ModelSummary:
    name: str
    family: str
    params: int
    flops: int
    input_size: tuple[int, int]
    in_chans: int
    num_classes: int
    paper: str
    paper_params_m: float | None
    description: str


def summarize(name: str, **overrides) -> ModelSummary:
    spec = get_spec(name)
    with torch.no_grad():
        model = create(name, **overrides)
    return ModelSummary(
        name=name, family=spec.family, params=count_params(model),
        flops=count_flops(model, spec.input_size, model.creation["in_chans"]), input_size=spec.input_size,
        in_chans=model.creation["in_chans"], num_classes=model.creation["num_classes"], paper=spec.paper,
        paper_params_m=spec.paper_params_m, description=spec.description,
    )
