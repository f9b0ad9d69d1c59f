"""``Preprocess``: what turns a series' HU slices into a model's input, stored with every model and engine.

The steps, in this order, for each ``(H, W)`` slice in HU:

1. **window**: clip to ``[low, high]`` HU, given as ``window=(level, width)`` (``low = level - width/2``)
   or ``clip=(low, high)``; no clipping when neither is set;
2. **resize** to ``size`` with the triangle filter of :mod:`medinfer.resize` (antialiased when shrinking);
3. **normalise** with one affine map: ``"range"`` sends ``[low, high]`` onto ``out_range`` (the
   Res-Dense Net paper's ``[-1, 1]``), ``"mean_std"`` computes ``(x - mean) / std``, ``"none"`` keeps HU;
4. **channels**: 1, or the slice replicated to 3 (for backbones with RGB stems).

:meth:`Preprocess.apply` is the numpy reference that defines the exact numbers: float64 arithmetic on the
float32 HU, one rounding to float32 at the end. The native batcher computes in float32 and stays within
1e-5 of it: absolutely for window-normalised output (magnitudes up to 1), relative to the slice's largest
magnitude for unwindowed HU output.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from medinfer.errors import InputError
from medinfer.resize import resize

FORMAT_VERSION = 1
NORMALIZATIONS = ("range", "mean_std", "none")
MAX_SIZE = 4096  # per side; larger outputs are almost certainly a unit mistake
DISPLAY_MAX = 255.0  # 8-bit display images (JPG/PNG slices) run from 0 to 255


def _pair(value: Any, name: str, *, integer: bool = False) -> tuple:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise InputError(f"Preprocess.{name}: expected a pair, got {value!r}")
    out = tuple(_number(v, name) for v in value)  # finite first: int() of inf or NaN would raise
    if integer:
        if any(v != int(v) for v in out):
            raise InputError(f"Preprocess.{name}: expected integers, got {value!r}")
        return tuple(int(v) for v in out)
    return out


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"Preprocess.{name}: expected a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise InputError(f"Preprocess.{name}: must be finite, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Preprocess:
    """How HU slices become model input. Validated on construction (bad values raise ``InputError``)."""

    size: tuple[int, int]  # output (H, W)
    channels: int = 1  # 1, or 3 (the slice replicated)
    window: tuple[float, float] | None = None  # (level, width) in HU
    clip: tuple[float, float] | None = None  # (low, high) in HU; the alternative to `window`
    normalize: str = "range"  # "range" | "mean_std" | "none"
    out_range: tuple[float, float] = (-1.0, 1.0)  # "range": where [low, high] lands
    mean: float = 0.0  # "mean_std", in HU
    std: float = 1.0  # "mean_std", in HU
    antialias: bool = True

    def __post_init__(self) -> None:
        size = _pair(self.size, "size", integer=True)
        if not all(1 <= s <= MAX_SIZE for s in size):
            raise InputError(f"Preprocess.size: each side must be in 1..{MAX_SIZE}, got {self.size!r}")
        object.__setattr__(self, "size", size)
        if isinstance(self.channels, bool) or self.channels not in (1, 3):
            raise InputError(f"Preprocess.channels: must be 1 or 3, got {self.channels!r}")
        object.__setattr__(self, "channels", int(self.channels))
        if self.window is not None and self.clip is not None:
            raise InputError("Preprocess.window and Preprocess.clip are alternatives: give one of them")
        if self.window is not None:
            window = _pair(self.window, "window")
            if window[1] <= 0:
                raise InputError(f"Preprocess.window: width must be positive, got {self.window!r}")
            object.__setattr__(self, "window", window)
        if self.clip is not None:
            clip = _pair(self.clip, "clip")
            if clip[0] >= clip[1]:
                raise InputError(f"Preprocess.clip: need low < high, got {self.clip!r}")
            object.__setattr__(self, "clip", clip)
        if self.normalize not in NORMALIZATIONS:
            raise InputError(f"Preprocess.normalize: one of {', '.join(NORMALIZATIONS)}, got {self.normalize!r}")
        out_range = _pair(self.out_range, "out_range")
        if out_range[0] == out_range[1]:
            raise InputError(f"Preprocess.out_range: the two ends must differ, got {self.out_range!r}")
        object.__setattr__(self, "out_range", out_range)
        object.__setattr__(self, "mean", _number(self.mean, "mean"))
        std = _number(self.std, "std")
        if std <= 0:
            raise InputError(f"Preprocess.std: must be positive, got {self.std!r}")
        object.__setattr__(self, "std", std)
        if not isinstance(self.antialias, (bool, np.bool_)):
            raise InputError(f"Preprocess.antialias: expected true or false, got {self.antialias!r}")
        object.__setattr__(self, "antialias", bool(self.antialias))
        if self.normalize == "range" and self.hu_range is None:
            raise InputError("Preprocess.normalize='range' maps the HU window onto out_range: give "
                             "window=(level, width) or clip=(low, high), or choose 'mean_std' or 'none'")

    @property
    def hu_range(self) -> tuple[float, float] | None:
        """``(low, high)`` HU kept by the window or clip, or None when nothing is clipped."""
        if self.window is not None:
            level, width = self.window
            return (level - width / 2, level + width / 2)
        return self.clip

    def affine(self) -> tuple[float, float]:
        """``(scale, offset)`` of the normalisation: ``out = resized * scale + offset``."""
        if self.normalize == "range":
            (lo, hi), (a, b) = self.hu_range, self.out_range
            scale = (b - a) / (hi - lo)
            return scale, a - lo * scale
        if self.normalize == "mean_std":
            return 1.0 / self.std, -self.mean / self.std
        return 1.0, 0.0

    def display_rescale(self) -> tuple[float, float]:
        """``(slope, intercept)`` that spreads 8-bit display values (already windowed JPG/PNG slices, 0..255)
        over this window, so that ``"range"`` normalisation gives ``v / 127.5 - 1`` as in the Res-Dense Net paper."""
        if self.hu_range is None:
            raise InputError("8-bit display images (JPG/PNG slices) carry no HU: they can only be fed to a "
                             "Preprocess with a window or clip range, onto which they are spread")
        lo, hi = self.hu_range
        return (hi - lo) / DISPLAY_MAX, lo

    def apply(self, hu: np.ndarray) -> np.ndarray:
        """The reference: ``(N, H, W)`` HU (any real dtype; float32 expected) -> ``(N, C, *size)`` float32."""
        hu = np.asarray(hu)
        if hu.ndim != 3 or hu.dtype.kind not in "biuf":
            raise InputError(f"Preprocess.apply: expected a real (N, H, W) array, got {hu.dtype} {hu.shape}")
        x = hu.astype(np.float64)  # a private copy: the steps below work in place
        if self.hu_range is not None:
            np.clip(x, *self.hu_range, out=x)
        if x.shape[1:] != tuple(self.size):
            x = resize(x, self.size, self.antialias)
        scale, offset = self.affine()
        x *= scale
        x += offset
        out = x.astype(np.float32)
        return np.repeat(out[:, None], self.channels, axis=1)

    def to_dict(self) -> dict:
        """JSON-safe description, versioned; :meth:`from_dict` reads it back."""
        d = {"version": FORMAT_VERSION}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            d[f.name] = list(v) if isinstance(v, tuple) else v
        return d

    @classmethod
    def from_dict(cls, d: Any) -> Preprocess:
        """Validates a dict from :meth:`to_dict` (e.g. read from an engine file); names the bad field."""
        if not isinstance(d, dict):
            raise InputError(f"Preprocess.from_dict: expected a dict, got {type(d).__name__}")
        version = d.get("version")
        if version != FORMAT_VERSION:
            raise InputError(f"Preprocess.from_dict: field 'version' is {version!r}; this medinfer reads version "
                             f"{FORMAT_VERSION} (upgrade medinfer for newer files)")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields - {"version"})
        if unknown:
            raise InputError(f"Preprocess.from_dict: unknown field(s) {', '.join(map(repr, unknown))}; "
                             f"known: {', '.join(sorted(fields))}")
        if "size" not in d:
            raise InputError("Preprocess.from_dict: field 'size' is missing")
        return cls(**{k: v for k, v in d.items() if k != "version"})
