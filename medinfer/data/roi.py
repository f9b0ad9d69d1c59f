"""Reading one ROI file of a classification data set as a one-slice :class:`~medinfer.io.Series`.

DICOM files and images go through :func:`medinfer.load_series` (so HU conversion, 16-bit PNG = HU + 1024
and 8-bit display values mean what they mean everywhere in medinfer); ``.npy`` files hold a 2-D array of HU
and are read with ``allow_pickle=False``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medinfer.errors import InputError
from medinfer.io import Series, load_series


def read_roi(path: str | Path) -> Series:
    """One ROI as a one-slice series. Raises :class:`~medinfer.errors.InputError` naming the file and the
    problem when it is not a usable 2-D image."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable .npy array without pickled objects ({exc})") from None
        if arr.ndim != 2:
            raise InputError(f"{path}: an ROI .npy must hold one 2-D HU array, got shape {arr.shape}")
        try:
            return Series.from_array(arr, uid=str(path))
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None
    series = load_series([path])
    if len(series) != 1:
        raise InputError(f"{path}: holds {len(series)} frames; an ROI is one image (put series in folders)")
    return series
