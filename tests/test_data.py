"""Labelled data sets: discovery, reading, preprocessing into slices, hold-out, augmentations."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from synthetic_sets import write_roi_set, write_series_set

from medinfer.data import discover
from medinfer.data.augment import augment
from medinfer.data.roi import read_roi
from medinfer.data.slices import holdout, load_split
from medinfer.errors import InputError
from medinfer.models import get_spec
from medinfer.tasks import COVID_CLASSES, LIVER_CLASSES


def test_roi_folder_layout(tmp_path, rng):
    src = discover(write_roi_set(tmp_path / "d", rng, train=3, test=1))
    assert src.kind == "roi" and src.labels == sorted(LIVER_CLASSES)
    assert len(src.items("train")) == 12 and len(src.items("test")) == 4
    assert src.has("train") and not src.has("val")
    with pytest.raises(InputError, match=r"no 'val' split \(splits found: test \(4\), train \(12\)\)"):
        src.items("val")


def test_mia_series_layout(tmp_path, rng):
    src = discover(write_series_set(tmp_path / "d", rng, counts=(("train", 1), ("val", 1))))
    assert src.kind == "series" and src.labels == sorted(COVID_CLASSES)
    assert all(it.path.is_dir() for it in src.items("val"))


def test_stray_entries_are_reported_not_dropped(tmp_path, rng):
    root = write_roi_set(tmp_path / "d", rng, train=1, test=1)
    (root / "valid").mkdir()
    (root / "notes.bin").write_bytes(b"x")
    (root / "train" / "stray.npy").write_bytes(b"x")
    (root / "manifest.csv").write_text("path,label\n")
    src = discover(root)
    reasons = dict(src.skipped)
    assert "unknown split 'valid'" in reasons[str(root / "valid")]
    assert "not a split folder" in reasons[str(root / "notes.bin")]
    assert "beside the class folders" in reasons[str(root / "train" / "stray.npy")]
    assert str(root / "manifest.csv") not in reasons


def test_mixed_rois_and_series_are_refused(tmp_path, rng):
    root = write_roi_set(tmp_path / "d", rng, train=1, test=1)
    (root / "train" / "MET" / "a_series").mkdir()
    with pytest.raises(InputError, match="mixes series folders .* and single-image files"):
        discover(root)


@pytest.mark.parametrize("with_split", [True, False])
def test_csv_data_set(tmp_path, rng, with_split):
    root = write_roi_set(tmp_path / "d", rng, train=2, test=1)
    lines = ["path,label" + (",split" if with_split else "")]
    for p in sorted(root.rglob("*.npy")):
        split = p.parts[-3]
        lines.append(f"{p.relative_to(tmp_path).as_posix()},{p.parent.name}" + (f",{split}" if with_split else ""))
    lines.append("d/missing.npy,MET" + (",train" if with_split else ""))
    csv = tmp_path / "labels.csv"
    csv.write_text("\n".join(lines) + "\n")
    src = discover(csv)
    assert src.kind == "roi"
    assert [r for _, r in src.skipped] == [f"listed in {csv}:{len(lines)} but does not exist"]
    if with_split:
        assert len(src.items("train")) == 8 and len(src.items("test")) == 4
    else:
        assert len(src.items("test")) == len(src.items("train")) == 12  # one split serves any


def test_csv_needs_path_and_label(tmp_path):
    bad = tmp_path / "x.csv"
    bad.write_text("file,class\na,b\n")
    with pytest.raises(InputError, match="needs the columns path and label.*found class, file"):
        discover(bad)


def test_read_roi_formats(tmp_path, rng):
    hu = rng.normal(40, 20, (20, 24)).astype(np.float32)
    np.save(tmp_path / "a.npy", hu)
    stored = np.clip(np.rint(hu + 1024), 0, 65535).astype(np.uint16)
    Image.fromarray(stored).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_roi(tmp_path / "a.npy").hu[0], hu)
    np.testing.assert_allclose(read_roi(tmp_path / "a.png").hu[0], np.rint(hu), atol=0)


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: np.save(p, np.array([{"a": 1}], dtype=object)), "without pickled objects"),
    (lambda p: np.save(p, np.zeros((2, 3, 4))), "one 2-D HU array, got shape"),
    (lambda p: np.save(p, np.full((4, 4), np.nan)), "non-finite"),
    (lambda p: p.write_bytes(b"not numpy"), "not a readable .npy"),
])
def test_bad_npy_names_file_and_problem(tmp_path, make, message):
    path = tmp_path / "bad.npy"
    make(path)
    with pytest.raises(InputError, match=message) as info:
        read_roi(path)
    assert str(path) in str(info.value)


def test_load_split_preprocesses_like_the_reference_and_reports_bad_files(tmp_path, rng):
    root = write_roi_set(tmp_path / "d", rng, train=2, test=1)
    bad = root / "train" / "HEM" / "broken.png"
    bad.write_bytes(b"\x89PNG broken")
    pp = get_spec("ddc_resnet101").preprocess
    with pytest.warns(UserWarning, match="1 file\\(s\\) not used"):
        data = load_split(discover(root), "train", pp, LIVER_CLASSES)
    assert [p for p, _ in data.skipped] == [str(bad)]
    assert data.x.shape == (8, 1, 64, 64) and data.x.dtype == np.float32
    assert sorted(np.bincount(data.y).tolist()) == [2, 2, 2, 2]
    first = data.items[0].path
    np.testing.assert_allclose(data.x[0], pp.apply(np.load(first)[None])[0], atol=1e-5)


def test_series_slices_carry_their_series_label(tmp_path, rng):
    root = write_series_set(tmp_path / "d", rng, counts=(("train", 2),), slices=3)
    pp = get_spec("densenet_pair").preprocess
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_split(discover(root), "train", pp, COVID_CLASSES)
    assert data.x.dtype == np.float16 and len(data) == 12 and len(data.items) == 4
    assert np.bincount(data.group).tolist() == [3, 3, 3, 3]
    for g, item in enumerate(data.items):
        assert set(data.y[data.group == g]) == {COVID_CLASSES.index(item.label)}
    assert data.x.min() >= -1 and data.x.max() <= 1


def test_unknown_label_is_refused(tmp_path, rng):
    root = write_roi_set(tmp_path / "d", rng, train=1, test=1)
    with pytest.raises(InputError, match="label\\(s\\) 'HCC', 'HEM', 'MET', 'healthy' are not classes"):
        load_split(discover(root), "train", get_spec("densenet_pair").preprocess, COVID_CLASSES)


def test_holdout_is_stratified_and_keeps_series_together(tmp_path, rng):
    root = write_series_set(tmp_path / "d", rng, counts=(("train", 4),), slices=3)
    data = load_split(discover(root), "train", get_spec("densenet_pair").preprocess, COVID_CLASSES)
    rest, val = holdout(data, 0.25, seed=3)
    assert len(rest.items) == 6 and len(val.items) == 2
    assert sorted(val.item_labels().tolist()) == [0, 1]
    assert not {it.path for it in rest.items} & {it.path for it in val.items}
    assert len(rest) + len(val) == len(data) and np.bincount(val.group).tolist() == [3, 3]
    again = holdout(data, 0.25, seed=3)[1]
    assert [it.path for it in again.items] == [it.path for it in val.items]


@pytest.mark.parametrize("kind", ["ddc2021", "resdense2021", "none"])
def test_augmentations_are_reproducible_and_keep_shape(kind):
    x = torch.linspace(-1, 1, 4 * 64 * 64).reshape(4, 1, 64, 64)
    a = augment(x, kind, torch.Generator().manual_seed(1))
    b = augment(x, kind, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b)
    assert float(a.min()) >= -1 - 1e-5 and float(a.max()) <= 1 + 1e-5  # reflected, never padded with new values
    assert torch.equal(a, x) == (kind == "none")


def test_unknown_augmentation():
    with pytest.raises(ValueError, match="unknown augmentation 'flip'"):
        augment(torch.zeros(1, 1, 8, 8), "flip", torch.Generator())
