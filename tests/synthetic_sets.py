"""Small labelled data sets written on the fly: learnable, and fast to train tiny models on.

ROIs (the DDC-ResNet paper's layout, ``.npy`` HU): liver-like tissue (60 HU ± noise) with a class-specific
disc — MET dark, HEM bright, HCC bright ring, healthy none. Series (MIA-COV19D's layout, 8-bit JPG): noise
slices, ``covid`` ones with a bright patch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from medinfer.tasks import COVID_CLASSES, LIVER_CLASSES


def roi_image(rng: np.random.Generator, label: str, size: int = 32) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    r = np.hypot(yy, xx)
    img = 60 + rng.normal(0, 10, (size, size))
    if label == "MET":
        img[r < size / 4] -= 80
    elif label == "HEM":
        img[r < size / 4] += 120
    elif label == "HCC":
        img[(r > size / 6) & (r < size / 3)] += 120
    return img.astype(np.float32)


def write_roi_set(root: Path, rng: np.random.Generator, train: int = 6, test: int = 2, size: int = 32) -> Path:
    for split, n in (("train", train), ("test", test)):
        for label in LIVER_CLASSES:
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                np.save(folder / f"{label}_{i}.npy", roi_image(rng, label, size))
    return root


def write_series_set(root: Path, rng: np.random.Generator, counts=(("train", 3), ("val", 1), ("test", 2)),
                     slices: int = 4, size: int = 48) -> Path:
    k = 0
    for split, n in counts:
        for label in COVID_CLASSES:
            for _ in range(n):
                folder = root / split / label / f"ct_scan_{k}"
                folder.mkdir(parents=True)
                for j in range(slices):
                    img = rng.normal(60, 8, (size, size))
                    if label == "covid":
                        y, x = rng.integers(4, size - 16, 2)
                        img[y : y + 12, x : x + 12] += 120
                    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{j}.jpg", quality=95)
                k += 1
    return root
