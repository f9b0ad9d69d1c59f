"""Labelled data for training and evaluation: finding data sets on disk (``dataset``), reading ROI files
(``roi``), turning them into preprocessed tensors (``slices``) and the papers' augmentations
(``augment``)."""

from medinfer.data.dataset import DataSource, Item, discover

__all__ = ["DataSource", "Item", "discover"]
