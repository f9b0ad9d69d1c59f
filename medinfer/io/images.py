"""Series stored as image files, one folder per series (the MIA-COV19D layout of the Res-Dense Net paper).

Slices are ordered by the number in the file name (the last run of digits: ``12.jpg``, ``slice_012.png``),
numerically, so ``10.jpg`` follows ``9.jpg``. What the grey values mean depends on the bit depth:

* **8-bit** (JPG, 8-bit PNG; colour images are converted to grey with ITU-R 601 luma): display values
  0..255 of slices that were already windowed when exported. They carry no HU; the series gets
  ``units="display"`` and the batcher spreads 0..255 over the model's window
  (:meth:`medinfer.preprocess.Preprocess.display_rescale`), which reproduces the Res-Dense Net paper's
  ``v / 127.5 - 1``.
* **16-bit** PNG/TIFF: HU + 1024 (the convention medinfer writes ROIs in), so HU = value - 1024.
* **32-bit float** TIFF: HU as stored.

Files without a number, unreadable files, slices whose size or bit depth differ from the folder's
majority, and 16-bit or float slices whose values are not plausible HU (:func:`medinfer.hu.implausible_hu`)
are listed in ``skipped``; colour images converted to grey and slices set aside for implausible values are
reported in ``Series.warnings``.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medinfer.errors import SeriesError
from medinfer.hu import implausible_hu
from medinfer.io.assemble import keep_first, keep_majority
from medinfer.io.dicom import MAX_SIDE, short_reason
from medinfer.io.series import Series

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
HU16_OFFSET = 1024.0
_NUMBER = re.compile(r"(\d+)(?!.*\d)")

# Pillow mode -> (kind, how the values become HU)
_KINDS = {
    "8-bit": "8-bit display values (already windowed)",
    "16-bit": "16-bit HU + 1024",
    "float": "32-bit float HU",
}


@dataclass
class _Image:
    path: str
    number: int
    pixels: np.ndarray
    kind: str  # a key of _KINDS
    converted: bool  # colour or palette image turned grey


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def slice_number(path: Path) -> int | None:
    """The last run of digits in the file name without its extension, or None."""
    match = _NUMBER.search(path.stem)
    return int(match.group(1)) if match else None


def _read(path: Path, number: int) -> _Image:
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as im:
            width, height = im.size
            if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
                raise ValueError(f"image size {height}×{width} outside 1..{MAX_SIDE}")
            im.load()
            mode = im.mode
            converted = False
            if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
                pixels, kind = np.asarray(im).astype(np.uint16), "16-bit"
            elif mode == "I":
                pixels = np.asarray(im)
                if pixels.min() < 0 or pixels.max() > 65535:
                    raise ValueError("32-bit integer image with values outside the 16-bit range")
                pixels, kind = pixels.astype(np.uint16), "16-bit"
            elif mode == "F":
                pixels, kind = np.asarray(im, dtype=np.float32), "float"
                if not np.all(np.isfinite(pixels)):
                    raise ValueError("float image with NaN or infinite values")
            elif mode == "L":
                pixels, kind = np.asarray(im), "8-bit"
            else:
                pixels, kind, converted = np.asarray(im.convert("L")), "8-bit", True
    return _Image(str(path), number, np.ascontiguousarray(pixels), kind, converted)


def load_image_series(files: list[Path], folder: Path) -> Series:
    """The series made of the image ``files`` of one ``folder``. Raises SeriesError when none is usable."""
    skipped: list[tuple[str, str]] = []
    images: list[_Image] = []
    for path in sorted(files):
        number = slice_number(path)
        if number is None and len(files) == 1:
            number = 0  # a single image (an ROI) needs no number to be ordered by
        if number is None:
            skipped.append((str(path), "no slice number in the file name: image slices are ordered by it"))
            continue
        try:
            images.append(_read(path, number))
        except Exception as exc:  # Pillow raises OSError, ValueError, SyntaxError, ... on broken files
            skipped.append((str(path), f"unreadable image ({type(exc).__name__}: {short_reason(exc)})"))
    if not images:
        raise SeriesError(f"no usable image slice in {folder}: " + "; ".join(f"{p}: {r}" for p, r in skipped[:5]),
                          skipped=skipped)
    warns: list[str] = []
    # Plausible HU first, before the majority votes and duplicate removal: an implausible first copy of a
    # slice number must not take its place from a plausible duplicate (as on the DICOM path).
    plausible, bad, checked = [], [], 0
    for im in images:
        if im.kind == "8-bit":
            plausible.append(im)
            continue
        checked += 1
        offset = -HU16_OFFSET if im.kind == "16-bit" else 0.0
        reason = implausible_hu(im.pixels, 1.0, offset, source="image")
        if reason is None:
            plausible.append(im)
        else:
            bad.append((im.path, f"{reason} (read as {_KINDS[im.kind]})", im.kind))
    if bad:
        skipped.extend((p, r) for p, r, _ in bad)
        read_as = " or ".join(_KINDS[k] for k in dict.fromkeys(k for _, _, k in bad))
        warns.append(f"{len(bad)} of {checked} image slice(s) were set aside because their values, read as "
                     f"{read_as}, are not plausible HU (e.g. {bad[0][0]}: {bad[0][1]}); they are listed "
                     "in skipped.")
    if not plausible:
        raise SeriesError(f"no usable image slice in {folder}: " + "; ".join(f"{p}: {r}" for p, r, _ in bad[:3]),
                          skipped=skipped)
    images = keep_majority(plausible, lambda im: im.kind, lambda im: _KINDS[im.kind], "pixel format", skipped)
    images = keep_majority(images, lambda im: im.pixels.shape, lambda im: "×".join(map(str, im.pixels.shape)),
                           "image size", skipped)
    images.sort(key=lambda im: (im.number, im.path))
    kept = keep_first(images, lambda im: im.number,
                      lambda im, first: f"slice number {im.number} already taken by {first.path}", skipped)
    kind = kept[0].kind
    units = "display" if kind == "8-bit" else "HU"
    converted = sum(im.converted for im in kept)
    if converted:
        warns.append(f"{converted} of {len(kept)} image slice(s) were colour or palette images, converted to grey "
                     "(ITU-R 601 luma): a CT slice is grey, so these may be screenshots or annotated images.")
    n = len(kept)
    return Series(
        pixels=np.stack([im.pixels for im in kept]),
        slopes=np.ones(n),
        intercepts=np.full(n, -HU16_OFFSET if kind == "16-bit" else 0.0),
        spacing=(np.nan, np.nan, np.nan),
        positions=np.full((n, 3), np.nan),
        files=[im.path for im in kept],
        uid=str(folder.resolve()),
        meta={"source": "images", "ordering": "number in the file name", "folder": str(folder),
              "encoding": _KINDS[kind], "units": units,
              "converted_to_grey": converted},
        skipped=skipped,
        units=units,
        warnings=warns,
    )
