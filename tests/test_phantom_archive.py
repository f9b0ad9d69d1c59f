"""The synthetic archive of CT studies: layout and manifest agree, every series loads or fails as the manifest
says, UIDs are fresh and unique, and the same seed writes the same bytes."""

from __future__ import annotations

import hashlib
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medinfer.errors import InputError, SeriesError
from medinfer.io import load_series
from medinfer.phantom import synthesize_archive
from medinfer.phantom.archive import BROKEN, ArchiveManifest

SMALL = {"n_series": 14, "broken": len(BROKEN), "size": 32, "slices": (3, 6), "progress": False}


def _load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_series(path)


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def archive(chest_ct, tmp_path_factory):
    return synthesize_archive(tmp_path_factory.mktemp("archive") / "a", seed=5, source=chest_ct, **SMALL)


def test_manifest_matches_the_files_on_disk(archive):
    root = archive.root
    assert len(archive.series) == SMALL["n_series"]
    on_disk = {p.relative_to(root).as_posix() for p in root.glob("study-*/series-*")}
    listed = {s.folder if s.kind != "multiframe" else str(Path(s.folder).parent) for s in archive.series}
    assert on_disk == listed and len(listed) == len(archive.series)
    assert {p.name for p in root.iterdir()} == {s.study for s in archive.series}
    for s in archive.series:
        assert s.folder.startswith(s.study + "/")
        if s.kind == "multiframe":
            assert (root / s.folder).is_file() and len(list((root / s.folder).parent.iterdir())) == 1
            assert int(pydicom.dcmread(root / s.folder, stop_before_pixels=True).NumberOfFrames) == s.slices
        else:
            assert len(list((root / s.folder).glob("*.dcm"))) == s.slices
    kinds = Counter(s.kind for s in archive.series)
    assert kinds == {"broken": len(BROKEN), "localizer": 1, "reconstruction": 2, "derived": 1, "multiframe": 1,
                     "good": SMALL["n_series"] - len(BROKEN) - 5}
    expected = {"good": "ok", "reconstruction": "ok", "multiframe": "ok", "broken": "error",
                "localizer": "excluded", "derived": "excluded"}
    assert all(s.expected == expected[s.kind] for s in archive.series)
    assert sorted(s.why for s in archive.by_expected("error")) == sorted(BROKEN.values())
    lo, hi = SMALL["slices"]
    assert all(lo <= s.slices <= hi for s in archive.series if s.kind != "localizer")
    # Plain studies hold 1-3 series; the special study the localizer, both reconstructions and the derived series.
    studies = Counter(s.study for s in archive.series)
    special = {s.study for s in archive.series if s.kind in ("localizer", "reconstruction", "derived")}
    assert len(special) == 1 and studies[special.pop()] == 4
    assert all(1 <= n <= 3 for study, n in studies.items() if n != 4)


def test_ok_and_excluded_series_load_with_their_slices_and_uid(archive):
    pixel = 0.841796875 * 512 / SMALL["size"]
    for s in archive.by_expected("ok") + archive.by_expected("excluded"):
        series = _load(archive.root / s.folder)
        assert len(series) == s.slices and series.uid == s.series_uid and not series.skipped, s
        assert series.spacing[2] == pytest.approx(pixel)
        first = archive.root / s.folder
        ds = pydicom.dcmread(first if first.is_file() else sorted(first.glob("*.dcm"))[0], stop_before_pixels=True)
        image_type = list(ds.ImageType)[:3]
        if s.kind == "localizer":
            assert image_type == ["ORIGINAL", "PRIMARY", "LOCALIZER"]
            assert series.meta["orientation"] == [1, 0, 0, 0, 0, -1] and series.shape[1:] == (64, SMALL["size"])
        else:
            assert series.meta["orientation"] == [1, 0, 0, 0, 1, 0]
            assert series.shape[1:] == (SMALL["size"],) * 2 and series.spacing[0] == pytest.approx(5.0)
            assert image_type == (["DERIVED", "SECONDARY", "AXIAL"] if s.kind == "derived"
                                  else ["ORIGINAL", "PRIMARY", "AXIAL"])
        assert series.meta["multiframe"] == (s.kind == "multiframe")
    recon = [pydicom.dcmread(sorted((archive.root / s.folder).glob("*.dcm"))[0], stop_before_pixels=True)
             for s in archive.series if s.kind == "reconstruction"]
    assert recon[0].FrameOfReferenceUID == recon[1].FrameOfReferenceUID  # one acquisition
    assert (recon[0].ConvolutionKernel, float(recon[0].SliceThickness)) != (recon[1].ConvolutionKernel,
                                                                            float(recon[1].SliceThickness))


def test_broken_series_are_refused_by_the_loader(archive):
    for s in archive.by_expected("error"):
        with pytest.raises((SeriesError, InputError)):
            _load(archive.root / s.folder)


def test_uids_are_fresh_and_unique(archive, chest_ct):
    source = pydicom.dcmread(sorted(chest_ct.glob("*.dcm"))[0], stop_before_pixels=True)
    series_uids = [s.series_uid for s in archive.series if s.series_uid]
    assert len(series_uids) == len(set(series_uids)) == len(archive.series) - 2  # random bytes, empty files
    mixed = next(s.folder for s in archive.series if s.why == BROKEN["mixed-studies"])
    sops, study_of = [], {}
    for path in archive.root.rglob("*.dcm"):
        if path.stat().st_size == 0:
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # the random-bytes series
            continue
        sops.append(ds.SOPInstanceUID)
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert source.SeriesInstanceUID != ds.SeriesInstanceUID and source.StudyInstanceUID != ds.StudyInstanceUID
        if path.parent.relative_to(archive.root).as_posix() != mixed:
            study_of.setdefault(path.relative_to(archive.root).parts[0], set()).add(ds.StudyInstanceUID)
    assert len(sops) == len(set(sops)) > 0
    # One StudyInstanceUID per study folder, none shared between folders.
    assert all(len(uids) == 1 for uids in study_of.values())
    assert len(set.union(*study_of.values())) == len(study_of)


def test_same_seed_same_archive_and_json_round_trip(archive, chest_ct, tmp_path):
    again = synthesize_archive(tmp_path / "b", seed=5, source=chest_ct, **SMALL)
    assert again.series == archive.series and _digest(again.root) == _digest(archive.root)
    other = synthesize_archive(tmp_path / "c", seed=6, source=chest_ct, **SMALL)
    assert {s.series_uid for s in other.series}.isdisjoint(s.series_uid for s in archive.series if s.series_uid)
    assert ArchiveManifest.from_json(archive.to_json()) == archive
    path = archive.write(tmp_path / "manifest.json")
    assert ArchiveManifest.read(path) == archive and "pickle" not in path.read_text()


def test_full_size_pixels_are_the_source_slices(chest_ct, tmp_path):
    m = synthesize_archive(tmp_path / "a", 1, slices=(2, 3), broken=0, special_study=False, multiframe=False,
                           source=chest_ct, progress=False)
    (s,) = m.series
    series, source = _load(m.root / s.folder), _load(chest_ct)
    start = int(np.flatnonzero(source.positions[:, 2] == series.positions[0, 2])[0])
    assert np.array_equal(series.hu, source.hu[start:start + len(series)])
    assert series.spacing == source.spacing and s.kind == "good" and s.expected == "ok"


def test_bad_arguments_are_refused(chest_ct, tmp_path):
    with pytest.raises(InputError, match="n_series"):
        synthesize_archive(tmp_path / "a", 7, source=chest_ct, progress=False)  # 3 broken + 4 special + 1 multiframe
    with pytest.raises(InputError, match="broken"):
        synthesize_archive(tmp_path / "a", 20, broken=len(BROKEN) + 1, source=chest_ct, progress=False)
    with pytest.raises(InputError, match="slices"):
        synthesize_archive(tmp_path / "a", 9, slices=(5, 4), source=chest_ct, progress=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(InputError, match="not an empty folder"):
        synthesize_archive(tmp_path / "full", 9, source=chest_ct, progress=False)
