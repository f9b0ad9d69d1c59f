"""The two papers' tasks: their class names and the ``Preprocess`` their models are registered with.

* liver-lesion ROIs, from the DDC-ResNet paper (shared/seeds/000): ``LIVER_CLASSES``, ``LIVER_PREPROCESS``;
* COVID-19 chest CT series, from the Res-Dense Net paper (shared/seeds/003): ``COVID_CLASSES``,
  ``CHEST_PREPROCESS``.

Free of PyTorch (numpy only, through :mod:`medinfer.preprocess`): the phantoms and inference without
PyTorch need these too.
"""

from __future__ import annotations

from medinfer.preprocess import Preprocess

LIVER_CLASSES = ("MET", "HEM", "HCC", "healthy")
COVID_CLASSES = ("covid", "non-covid")

# Liver-lesion ROIs (64×64, one HU channel). The DDC-ResNet paper only converts to HU (eq. 11). We window at the
# abdominal soft-tissue setting, level 40 / width 400 (−160..240 HU): it spans fat (about −100), liver
# parenchyma (50..70 in the portal phase) and enhancing HCC / haemangioma (up to ~200), where a narrower
# liver window (width 150) would saturate the enhancement that tells the lesions apart; air and bone carry
# no lesion information. [-1, 1] keeps the input centred.
LIVER_PREPROCESS = Preprocess(size=(64, 64), channels=1, window=(40.0, 400.0), normalize="range")
# Whole chest slices (256×256, scaled to [-1, 1]). MIA-COV19D's slices were exported already windowed; for
# DICOM input we use the lung window, level −600 / width 1500 (−1350..150 HU), which holds aerated lung
# (−900), ground-glass opacities (−700..−300) and consolidation (−100..50), the findings of COVID-19
# pneumonia. 8-bit JPG/PNG slices are spread over the same window, giving the Res-Dense Net paper's
# v/127.5 − 1.
CHEST_PREPROCESS = Preprocess(size=(256, 256), channels=1, window=(-600.0, 1500.0), normalize="range")

__all__ = ["CHEST_PREPROCESS", "COVID_CLASSES", "LIVER_CLASSES", "LIVER_PREPROCESS"]
