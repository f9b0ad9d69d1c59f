"""Image-folder series (the Res-Dense Net paper's MIA-COV19D layout): order by file-name number, bit depth, bad
files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medinfer import load_series, load_study
from medinfer.errors import MultipleSeriesError, SeriesError


def _save(path: Path, pixels: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode).save(path)
    return path


def _slices(rng, n, shape=(20, 24), dtype=np.uint8, high=256) -> list[np.ndarray]:
    return [rng.integers(0, high, shape).astype(dtype) for _ in range(n)]


def test_slices_are_ordered_by_the_number_in_the_name(rng, tmp_path):
    slices = _slices(rng, 12)
    for k in rng.permutation(12):  # written in random order; "10" sorts before "2" as text
        _save(tmp_path / "ct_scan_3" / f"{k}.png", slices[k])
    s = load_series(tmp_path / "ct_scan_3")
    np.testing.assert_array_equal(s.hu, np.stack(slices).astype(np.float32))
    assert [Path(f).name for f in s.files] == [f"{k}.png" for k in range(12)]
    assert s.units == "display" and s.meta["ordering"] == "number in the file name"
    assert s.uid == str((tmp_path / "ct_scan_3").resolve()) and np.isnan(s.spacing).all()


def test_prefixed_and_zero_padded_numbers(rng, tmp_path):
    slices = _slices(rng, 3)
    for k, name in enumerate(["slice_008.png", "slice_9.png", "slice_010.png"]):
        _save(tmp_path / name, slices[k])
    s = load_series(tmp_path)
    assert [Path(f).name for f in s.files] == ["slice_008.png", "slice_9.png", "slice_010.png"]


def test_sixteen_bit_png_is_hu_plus_1024(rng, tmp_path):
    hu = rng.integers(-1024, 3071, (3, 17, 19))
    for k in range(3):
        _save(tmp_path / f"{k}.png", (hu[k] + 1024).astype(np.uint16))
    s = load_series(tmp_path)
    assert s.units == "HU" and s.meta["encoding"] == "16-bit HU + 1024"
    np.testing.assert_array_equal(s.hu, hu.astype(np.float32))


def test_jpg_and_colour_slices(rng, tmp_path):
    grey = [np.full((16, 16), 10 * k + 5, np.uint8) for k in range(4)]
    for k in range(3):
        _save(tmp_path / f"{k}.jpg", grey[k])
    _save(tmp_path / "3.jpg", np.repeat(grey[3][..., None], 3, axis=2), "RGB")
    s = load_series(tmp_path)
    np.testing.assert_allclose(s.hu, np.stack(grey), atol=1)  # JPEG of a flat block is exact to ±1
    assert s.meta["converted_to_grey"] == 1 and s.units == "display"


def test_bad_files_are_skipped_with_reasons(rng, tmp_path):
    slices = _slices(rng, 5)
    for k, im in enumerate(slices):
        _save(tmp_path / f"{k}.png", im)
    _save(tmp_path / "cover.png", slices[0])
    (tmp_path / "7.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    _save(tmp_path / "8.png", _slices(rng, 1, shape=(10, 10))[0])
    _save(tmp_path / "9.png", np.zeros((20, 24), np.uint16))
    shutil.copy(tmp_path / "2.png", tmp_path / "02.png")
    s = load_series(tmp_path)
    assert len(s) == 5
    reasons = {Path(p).name: r for p, r in s.skipped}
    assert "no slice number" in reasons["cover.png"]
    assert "unreadable image" in reasons["7.png"]
    assert "image size 10×10 differs from the series' 20×24" in reasons["8.png"]
    assert "pixel format 16-bit HU + 1024 differs from the series' 8-bit display values" in reasons["9.png"]
    taken = reasons.get("2.png") or reasons["02.png"]
    assert "slice number 2 already taken" in taken
    assert len(s) + len(s.skipped) == len(list(tmp_path.iterdir()))


def test_an_implausible_first_copy_does_not_push_out_its_plausible_duplicate(rng, tmp_path):
    hu = rng.integers(-1000, 1000, (3, 12, 12))
    for k in range(3):
        _save(tmp_path / f"{k}.png", (hu[k] + 1024).astype(np.uint16))
    _save(tmp_path / "01.png", np.full((12, 12), 65535, np.uint16))  # sorts before 1.png: the first copy of 1
    s = load_series(tmp_path)
    assert [Path(f).name for f in s.files] == ["0.png", "1.png", "2.png"]
    np.testing.assert_array_equal(s.hu, hu.astype(np.float32))
    reasons = {Path(p).name: r for p, r in s.skipped}
    assert list(reasons) == ["01.png"] and "implausible HU" in reasons["01.png"]
    assert any("1 of 4 image slice(s) were set aside" in w for w in s.warnings)


def test_mia_cov19d_layout_is_one_series_per_folder(rng, tmp_path, ct5n):
    for label, n in (("covid", 4), ("non-covid", 6)):
        for k, im in enumerate(_slices(rng, n)):
            _save(tmp_path / label / f"ct_scan_{n}" / f"{k}.jpg", im)
    with pytest.raises(MultipleSeriesError, match="holds 2 series"):
        load_series(tmp_path)
    study = load_study(tmp_path)
    assert [len(s) for s in study] == [4, 6] and all(s.units == "display" for s in study)
    one = load_series(tmp_path, series_uid=study[1].uid)
    assert len(one) == 6 and sum("belongs to another series" in r for _, r in one.skipped) == 4
    shutil.copytree(ct5n, tmp_path / "dicom")
    assert [s.meta["source"] for s in load_study(tmp_path)] == ["dicom", "images", "images"]


def test_folder_of_unusable_images_says_why(tmp_path):
    (tmp_path / "a.png").write_bytes(b"not an image")
    (tmp_path / "1.jpg").write_bytes(b"neither")
    with pytest.raises(SeriesError, match="no usable CT series") as info:
        load_study(tmp_path)
    assert {Path(p).name for p, _ in info.value.skipped} == {"a.png", "1.jpg"}
