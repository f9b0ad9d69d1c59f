"""The model zoo: ``create(name, num_classes=..., in_chans=1, **overrides)`` and ``list_models()``.

Families (one module each): ``resnet`` (resnet101, se_resnet101), ``densenet`` (densenet121),
``ddc_resnet`` (DDC-ResNet101 and its Table 3 ablation variants, from the DDC-ResNet paper,
shared/seeds/000), ``res_dense`` (resdense_net and densenet_pair, from the Res-Dense Net paper,
shared/seeds/003). The plain building blocks live in ``layers``. The tasks' class names and preprocessing
(:mod:`medinfer.tasks`) are re-exported here.
"""

from medinfer.models.registry import ModelSpec, apply_overrides, create, get_spec, list_models
from medinfer.tasks import CHEST_PREPROCESS, COVID_CLASSES, LIVER_CLASSES, LIVER_PREPROCESS

__all__ = ["CHEST_PREPROCESS", "COVID_CLASSES", "LIVER_CLASSES", "LIVER_PREPROCESS", "ModelSpec", "apply_overrides",
           "create", "get_spec", "list_models"]
