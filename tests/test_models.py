"""The model zoo: shapes, gradients, batch independence, exact parameter counts, registry behaviour."""

from __future__ import annotations

import json

import pytest
import torch
from tiny import TINY

from medinfer.models import create, get_spec, list_models
from medinfer.models.layers import OctaveConv
from medinfer.models.summary import count_params

ALL = list_models()


def test_every_registered_model_has_a_tiny_config():
    assert sorted(TINY) == sorted(ALL)


def _input(name: str, batch: int, size: tuple[int, int] | None = None, in_chans: int = 1) -> torch.Tensor:
    return torch.randn(batch, in_chans, *(size or get_spec(name).input_size))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(("size", "in_chans", "num_classes"), [(None, 1, None), ((37, 45), 3, 5)])
def test_tiny_forward_shapes(name, size, in_chans, num_classes):
    model = create(name, num_classes=num_classes, in_chans=in_chans, **TINY[name]).eval()
    x = _input(name, 3, size, in_chans)
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model.forward_head(feats)
        pooled = model.forward_head(feats, pre_logits=True)
    expected_classes = num_classes or get_spec(name).num_classes
    assert logits.shape == (3, expected_classes)
    assert feats.shape[:2] == (3, model.num_features)
    assert pooled.shape[0] == 3 and pooled.ndim == 2
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", ALL)
def test_full_size_forward(name):
    spec = get_spec(name)
    model = create(name).eval()
    with torch.no_grad():
        out = model(_input(name, 2))
    assert out.shape == (2, spec.num_classes) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ALL)
def test_backward_reaches_every_parameter(name):
    model = create(name, **TINY[name]).train()
    # Open the zero-initialised residual branches so gradients flow through every block.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
    loss = torch.nn.functional.cross_entropy(model(_input(name, 4)), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    # None means the parameter is not in the graph at all (an unused layer); a zero gradient can be a
    # legitimately dead ReLU on this batch, so it only counts against the whole model.
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert not unused, f"parameters outside the forward graph: {unused[:5]}"
    grads = [p.grad for p in model.parameters()]
    assert all(torch.isfinite(g).all() for g in grads)
    assert sum(bool(g.abs().sum() > 0) for g in grads) >= 0.9 * len(grads)


@pytest.mark.parametrize("name", ALL)
def test_eval_outputs_do_not_depend_on_batch_mates(name):
    model = create(name, **TINY[name]).eval()
    with torch.no_grad():
        # BN running statistics away from their defaults, so a batch-statistics leak would show.
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        x = _input(name, 5)
        together = model(x)
        alone = torch.cat([model(x[i: i + 1]) for i in range(5)])
        shuffled = model(x.flip(0)).flip(0)
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(together, shuffled, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("name", "expected"), [
    ("resnet101", 44_549_160),  # torchvision.models.resnet101
    ("densenet121", 7_978_856),  # torchvision.models.densenet121
    ("se_resnet101", 49_326_872),  # SE-ResNet-101 (Hu et al.), as in timm's seresnet101
])
def test_imagenet_parameter_counts_match_the_reference_implementations(name, expected):
    assert count_params(create(name, num_classes=1000, in_chans=3)) == expected


def test_ablation_baseline_is_the_ddc_family_with_everything_off():
    # The Table 3 rows differ only by the components they add: switching them all off in the DDC family
    # must give back SE-ResNet-101 exactly (same parameter count, layer for layer).
    baseline = create("ddc_resnet101", scale=1, dfe=False, ddc=False, stem="conv7", octave_alpha=0.0,
                      inception_sampling=False)
    reference = create("se_resnet101")
    assert count_params(baseline) == count_params(reference)
    shapes = sorted(tuple(p.shape) for p in baseline.parameters())
    assert shapes == sorted(tuple(p.shape) for p in reference.parameters())


def test_ablation_components_change_the_network_as_described():
    params = {n: count_params(create(n)) for n in ("se_resnet101", "msfe", "msfe_dfe", "msfe_dfe_ddc")}
    assert params["msfe"] < params["se_resnet101"]  # Res2Net groups shrink the 3×3 convs
    assert params["se_resnet101"] > params["msfe_dfe"] > params["msfe"]  # CBAM adds its MLPs
    assert params["msfe_dfe_ddc"] > params["msfe_dfe"]
    full = create("ddc_resnet101")
    octave = [m for m in full.modules() if isinstance(m, OctaveConv)]
    assert octave and any(m.w_ll is not None for m in octave)
    assert not any(m.w_ll is not None for m in create("msfe_dfe_ddc").modules() if isinstance(m, OctaveConv))


def test_create_rejects_unknown_names_and_fields():
    with pytest.raises(ValueError, match="unknown model 'resnet50'.*ddc_resnet101"):
        create("resnet50")
    with pytest.raises(ValueError, match="has no field 'depth'.*layers"):
        create("resnet101", depth=50)
    with pytest.raises(ValueError, match="DenseNetCfg.densenet has no field 'growth'"):
        create("resdense_net", densenet={"growth": 8})
    with pytest.raises(ValueError, match="positive"):
        create("resnet101", num_classes=0)


def test_creation_record_rebuilds_the_same_model():
    model = create("ddc_resnet101", num_classes=3, **TINY["ddc_resnet101"])
    record = json.loads(json.dumps(model.creation))  # through JSON: tuples come back as lists
    rebuilt = create(record["name"], record["num_classes"], record["in_chans"], **record["overrides"])
    assert rebuilt.cfg == model.cfg
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(2, 1, 64, 64)
    torch.testing.assert_close(rebuilt.eval()(x), model.eval()(x))


def test_list_models_filters():
    assert list_models("msfe*") == ["msfe", "msfe_dfe", "msfe_dfe_ddc"]
    assert set(ALL) >= {"resnet101", "se_resnet101", "densenet121", "ddc_resnet101", "resdense_net",
                        "densenet_pair"}


def test_ddc_stage_blocks_and_head_are_where_the_paper_puts_them():
    model = create("ddc_resnet101", **TINY["ddc_resnet101"])
    from medinfer.models.ddc_resnet import DDCHead
    from medinfer.models.layers import DDCBlock, InceptionDownsample, InceptionUpsample

    assert [type(stage[-1]) for stage in model.stages] == [DDCBlock] * 4
    assert isinstance(model.head, DDCHead) and isinstance(model.head.entry, InceptionUpsample)
    assert sum(isinstance(m, InceptionDownsample) for m in model.modules()) == 3  # stages 2-4
    assert len(model.stem) == 4  # CSS: three 3×3 conv blocks and the max-pool
