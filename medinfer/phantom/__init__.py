"""Phantoms made from real anatomy: labelled CT data (no labelled CT set can be downloaded) and an archive of studies.

* ``make_liver_roi`` (:mod:`medinfer.phantom.liver`): 64×64 HU ROIs, MET / HEM / HCC / healthy, lesions
  inserted into real liver tissue.
* ``make_covid_series`` (:mod:`medinfer.phantom.covid`): whole chest series with geometric and noise
  variation, half of them with ground-glass opacities in the lungs.
* ``synthesize_archive`` (:mod:`medinfer.phantom.archive`): folders of DICOM studies cut from the same chest
  CT — good, broken, localizer, reconstruction, derived and multi-frame series, with a manifest of what
  archive-scale classification should do with each.

The labelled sets are simulations: results on them say nothing about clinical accuracy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medinfer._lazy import lazy

if TYPE_CHECKING:
    from medinfer.phantom.archive import synthesize_archive
    from medinfer.phantom.covid import make_covid_series
    from medinfer.phantom.liver import make_liver_roi

# Imported on first access: the generators load numpy, pydicom and the image readers.
_ATTRIBUTES = {"make_liver_roi": "medinfer.phantom.liver", "make_covid_series": "medinfer.phantom.covid",
               "synthesize_archive": "medinfer.phantom.archive"}


__getattr__, __dir__ = lazy(__name__, globals(), _ATTRIBUTES)

__all__ = ["make_covid_series", "make_liver_roi", "synthesize_archive"]
