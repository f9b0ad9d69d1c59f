"""Phantom benchmarks on the real chest CT: layout, determinism, split by source slice, lesion and GGO models."""

from __future__ import annotations

import csv
import hashlib
import json

import numpy as np
import pytest

from medinfer.errors import InputError
from medinfer.io import Series, load_series
from medinfer.phantom import make_covid_series, make_liver_roi
from medinfer.phantom.covid import ggo_field, lung_mask
from medinfer.phantom.imaging import dilate, gaussian_filter, label_components, noise_sigma
from medinfer.phantom.liver import LESION_MODELS, ROI, _Grid, liver_slices, make_roi
from medinfer.tasks import COVID_CLASSES, LIVER_CLASSES


def _digest(folder) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != "phantom.json":
            h.update(p.relative_to(folder).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def chest(chest_ct):
    return load_series(chest_ct)


@pytest.fixture(scope="module")
def small_chest(chest):
    """The chest CT at a quarter of its resolution (128², every other slice): the same anatomy, fast."""
    hu = chest.hu[::2].reshape(32, 128, 4, 128, 4).mean((2, 4))
    return Series.from_array(hu, spacing=(10.0, 4 * chest.spacing[1], 4 * chest.spacing[2]))


def test_liver_roi_layout_split_and_determinism(chest, tmp_path):
    a = make_liver_roi(tmp_path / "a", 5, seed=3, progress=False, source=chest)
    for split, n in (("train", 4), ("test", 1)):
        for label in LIVER_CLASSES:
            files = sorted((a / split / label).glob("*.png"))
            assert len(files) == n
    rows = list(csv.DictReader((a / "manifest.csv").read_text().splitlines()))
    assert len(rows) == 20 and {r["label"] for r in rows} == set(LIVER_CLASSES)
    train_slices = {r["source_slice"] for r in rows if r["split"] == "train"}
    test_slices = {r["source_slice"] for r in rows if r["split"] == "test"}
    assert train_slices and test_slices and not train_slices & test_slices  # no background in both
    doc = json.loads((a / "phantom.json").read_text())
    assert "say nothing about clinical accuracy" in doc["note"]
    assert set(doc["source_slices"]["test"]).isdisjoint(doc["source_slices"]["train"])
    roi = load_series([a / "train" / "HEM" / "HEM_00000.png"])
    assert roi.shape == (1, ROI, ROI) and roi.units == "HU"
    assert _digest(make_liver_roi(tmp_path / "b", 5, seed=3, progress=False, source=chest)) == _digest(a)
    assert _digest(make_liver_roi(tmp_path / "c", 5, seed=4, progress=False, source=chest)) != _digest(a)


def test_liver_slices_are_the_upper_abdomen(chest):
    slices = liver_slices(chest.hu, chest.positions)
    assert [s.index for s in slices] == list(range(12))
    for s in slices:
        assert 40 < np.median(s.hu[s.liver]) < 70  # unenhanced liver parenchyma
        cy, cx = s.centres[len(s.centres) // 2]
        assert s.liver[cy, cx]


@pytest.mark.parametrize("seed", range(6))
def test_lesion_models_have_their_class_signature(seed):
    grid = _Grid()
    rng = np.random.default_rng(seed)
    hcc, p_hcc = LESION_MODELS["HCC"](rng, grid, 0.84)
    hem, p_hem = LESION_MODELS["HEM"](rng, grid, 0.84)
    met, p_met = LESION_MODELS["MET"](rng, grid, 0.84)
    healthy, _ = LESION_MODELS["healthy"](rng, grid, 0.84)
    assert not healthy.any()
    assert 15 <= p_hcc["diameter_mm"] <= 35 and hcc[hcc != 0].mean() < 10  # washout, at most a thin rim brighter
    assert hem.max() >= p_hem["nodule_hu"] - 1e-9 >= 50  # blood-pool nodules
    assert all(6 <= les["diameter_mm"] <= 25 for les in p_met["lesions"])
    assert met.min() <= -35 and met.max() >= 10  # hypodense centre, enhancing rim


def test_roi_keeps_the_background_noise(rng):
    sigma = 30.0
    background = 55 + gaussian_filter(rng.standard_normal((ROI, ROI)), 0.7) * sigma / 0.4
    measured = noise_sigma(background)
    image, params = make_roi(rng, background, np.ones((ROI, ROI), bool), "healthy")
    assert params["noise_sigma_hu"] == pytest.approx(measured)
    assert noise_sigma(image) == pytest.approx(np.hypot(measured, params["extra_noise_hu"]), rel=0.25)


def test_label_components_2d_and_3d():
    mask = np.zeros((5, 7), bool)
    mask[0, :3] = mask[2:, 5] = mask[4, 0] = True
    labels, sizes = label_components(mask)
    assert sorted(sizes.tolist()) == [1, 3, 3] and labels.max() == 3 and labels[1, 1] == 0
    vol = np.zeros((3, 4, 4), bool)
    vol[0, 0, 0] = vol[1, 0, 0] = vol[2, 3, 3] = True
    assert sorted(label_components(vol)[1].tolist()) == [1, 2]


def test_lung_mask_and_ggo_stay_in_the_lungs(small_chest):
    lungs = lung_mask(small_chest.hu)
    assert 0.05 < lungs.mean() < 0.4
    assert not lungs[:, 0, :].any() and not lungs[:, :, 0].any()  # no air outside the body
    hu_coarse = small_chest.hu.reshape(32, 32, 4, 32, 4).mean((2, 4))
    assert np.median(hu_coarse[lungs]) < -700
    field, patches = ggo_field(np.random.default_rng(0), lungs, small_chest.spacing)
    assert 2 <= len(patches) <= 8 and all(200 <= p["hu"] <= 500 for p in patches)
    assert field.max() <= 500 and field.max() > 150
    assert field[~dilate(lungs, 3)].max() == 0  # the lung mask's soft edge (3σ of 0.7 px) and nothing beyond


def test_covid_series_layout_labels_and_determinism(small_chest, tmp_path):
    a = make_covid_series(tmp_path / "a", 6, seed=1, progress=False, source=small_chest)
    for split in ("train", "val", "test"):
        for label in COVID_CLASSES:
            (folder,) = (a / split / label).iterdir()
            s = load_series(folder)
            assert s.units == "display" and 8 <= len(s) <= 32 and s.meta["ordering"] == "number in the file name"
    rows = list(csv.DictReader((a / "manifest.csv").read_text().splitlines()))
    assert [("ggo_patches" in r["params"]) for r in rows] == [r["label"] == "covid" for r in rows]
    assert _digest(make_covid_series(tmp_path / "b", 6, seed=1, progress=False, source=small_chest)) == _digest(a)


@pytest.mark.parametrize(("call", "message"), [
    (lambda out: make_liver_roi(out, 1, 0), "per_class must be an integer of at least 2"),
    (lambda out: make_covid_series(out, 4, 0), "n_series must be an integer of at least 6"),
])
def test_bad_sizes(tmp_path, call, message):
    with pytest.raises(InputError, match=message):
        call(tmp_path)
