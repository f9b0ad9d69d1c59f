"""Tiny variants of every registered model: the same code, fewer blocks and narrower layers."""

TINY_RESNET = {"layers": (1, 2, 1, 1), "planes": (16, 16, 32, 32), "stem_width": 16}
TINY_DENSENET = {"block_config": (2, 1, 2, 1), "growth_rate": 8, "num_init_features": 16}
TINY = {
    "resnet101": TINY_RESNET,
    "se_resnet101": TINY_RESNET,
    "msfe": TINY_RESNET,
    "msfe_dfe": TINY_RESNET,
    "msfe_dfe_ddc": {**TINY_RESNET, "head_width": 16},
    "ddc_resnet101": {**TINY_RESNET, "head_width": 16},
    "densenet121": TINY_DENSENET,
    "resdense_net": {"resnet": TINY_RESNET, "densenet": TINY_DENSENET},
    "densenet_pair": {"densenet": TINY_DENSENET},
}


def tiny_model(name: str):
    """``name`` built from TINY, seeded, in eval mode, with BatchNorm statistics that keep its probabilities
    away from one-hot (as trained statistics would)."""
    import torch

    from medinfer.models import create

    torch.manual_seed(0)
    model = create(name, **TINY[name]).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(1.0, 4.0)
    return model
