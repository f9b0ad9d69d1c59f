"""Phantom benchmarks: labelled CT data simulated on real anatomy (no labelled CT set can be downloaded).

* ``make_liver_roi`` (:mod:`medinfer.phantom.liver`): 64×64 HU ROIs, MET / HEM / HCC / healthy, lesions
  inserted into real liver tissue.
* ``make_covid_series`` (:mod:`medinfer.phantom.covid`): whole chest series with geometric and noise
  variation, half of them with ground-glass opacities in the lungs.

Both are simulations: results on them say nothing about clinical accuracy.
"""

from __future__ import annotations


def make_liver_roi(*args, **kwargs):
    """See :func:`medinfer.phantom.liver.make_liver_roi`."""
    from medinfer.phantom.liver import make_liver_roi as make

    return make(*args, **kwargs)


def make_covid_series(*args, **kwargs):
    """See :func:`medinfer.phantom.covid.make_covid_series`."""
    from medinfer.phantom.covid import make_covid_series as make

    return make(*args, **kwargs)


__all__ = ["make_covid_series", "make_liver_roi"]
