"""The model zoo: ``create(name, num_classes=..., in_chans=1, **overrides)`` and ``list_models()``.

Families (one module each): ``resnet`` (resnet101, se_resnet101), ``densenet`` (densenet121),
``ddc_resnet`` (seed 000's DDC-ResNet101 and its Table 3 ablation variants), ``res_dense`` (seed 003's
resdense_net and densenet_pair). The plain building blocks live in ``layers``.
"""

from medinfer.models.registry import (
    CHEST_PREPROCESS,
    COVID_CLASSES,
    LIVER_CLASSES,
    LIVER_PREPROCESS,
    ModelSpec,
    apply_overrides,
    create,
    get_spec,
    list_models,
)

__all__ = ["CHEST_PREPROCESS", "COVID_CLASSES", "LIVER_CLASSES", "LIVER_PREPROCESS", "ModelSpec", "apply_overrides",
           "create", "get_spec", "list_models"]
