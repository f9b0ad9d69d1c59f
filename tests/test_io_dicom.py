"""Loading DICOM series: real scanner data, shuffled names, foreign and broken files, several series, geometry."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import MPEG2MPML, JPEGLSLossless, generate_uid

from medinfer import load_series, load_study
from medinfer.errors import InputError, MultipleSeriesError, SeriesError
from medinfer.samples import pydicom_test_file

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"


def _write(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path)
    return path


def _edit(src: Path, dst: Path, **changes) -> Path:
    """A copy of ``src`` with attributes set (or deleted, for None) and a new SOPInstanceUID."""
    ds = pydicom.dcmread(src, force=True)
    ds.SOPInstanceUID = generate_uid()
    for key, value in changes.items():
        if value is None:
            if key in ds:
                delattr(ds, key)
        else:
            setattr(ds, key, value)
            if key.startswith("PixelPadding"):  # 'US or SS': explicit VR files need the one that applies
                ds[key].VR = "SS" if ds.PixelRepresentation else "US"
    return _write(ds, dst)


def _hu_from_pydicom(path: str) -> np.ndarray:
    ds = pydicom.dcmread(path)
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def _link_shuffled(folder: Path, dst: Path, rng) -> list[Path]:
    """Links to every file of ``folder`` under names whose order has nothing to do with the anatomy."""
    files = sorted(folder.iterdir())
    dst.mkdir(parents=True, exist_ok=True)
    names = []
    for f, k in zip(files, rng.permutation(len(files)), strict=True):
        names.append(dst / f"IMG{k:03d}")
        names[-1].symlink_to(f)
    return names


def test_chest_ct_loads_in_anatomical_order(chest_ct):
    s = load_series(chest_ct)
    assert len(s) == 64 and s.hu.shape == (64, 512, 512) and s.hu.dtype == np.float32
    assert s.skipped == [] and s.meta["ordering"] == "ImagePositionPatient"
    assert s.spacing == pytest.approx((5.0, 0.841796875, 0.841796875))
    # Ascending along the slice normal (+z for axial): InstanceNumber 64 at z = -439 comes first.
    np.testing.assert_allclose(s.positions[:, 2], np.arange(-439, -123, 5))
    assert Path(s.files[0]).name == "1-64.dcm" and Path(s.files[-1]).name == "1-01.dcm"
    for i in (0, 31, 63):
        np.testing.assert_array_equal(s.hu[i], _hu_from_pydicom(s.files[i]).astype(np.float32))
    assert s.hu.min() == -1024 and 1500 < s.hu.max() < 3100
    assert s.uid == pydicom.dcmread(s.files[0], stop_before_pixels=True).SeriesInstanceUID
    assert s.meta["rescale"] == {"slope": 1.0, "intercept": -1024.0, "type": ["HU"], "assumed_identity_slices": 0}
    assert s.meta["description"] == "5mm" and s.meta["modality"] == "CT"
    json.dumps(s.meta)


def test_shuffled_file_names_do_not_change_the_order(chest_ct, tmp_path, rng):
    reference = load_series(chest_ct)
    _link_shuffled(chest_ct, tmp_path / "shuffled", rng)
    s = load_series(tmp_path / "shuffled")
    np.testing.assert_array_equal(s.hu, reference.hu)
    np.testing.assert_array_equal(s.positions, reference.positions)


def test_pydicom_ct_series(ct5n):
    s = load_series(ct5n)
    assert len(s) == 5 and s.shape == (5, 16, 16)
    assert s.spacing == pytest.approx((2.5, 0.488281, 0.488281))
    assert np.all(np.diff(s.positions[:, 2]) > 0)
    for i, f in enumerate(s.files):
        np.testing.assert_array_equal(s.hu[i], _hu_from_pydicom(f).astype(np.float32))


def _broken_study(ct5n: Path, root: Path) -> dict[str, str]:
    """CT5N plus files that must each be skipped; returns {file name: expected reason fragment}."""
    first = sorted(ct5n.iterdir())[0]
    for f in ct5n.iterdir():
        shutil.copy(f, root / f"slice-{f.name}")
    data = first.read_bytes()
    expected = {}

    def add(name: str, fragment: str, content: bytes | None = None, src: Path | None = None):
        if content is not None:
            (root / name).write_bytes(content)
        elif src is not None:
            shutil.copy(src, root / name)
        expected[name] = fragment

    add("notes.txt", "not a DICOM file", b"radiology report, not an image\n" * 20)
    add("empty.dcm", "empty file", b"")
    add("cut-pixels.dcm", "truncated pixel data", data[:-100])
    add("cut-header.dcm", "no SOPClassUID and no Modality", data[:300])
    add("rtstruct.dcm", "RTSTRUCT object (RT Structure Set Storage), not a CT image",
        src=pydicom_test_file("rtstruct.dcm"))
    add("sr.dcm", "SR object (Comprehensive SR Storage), not a CT image", src=pydicom_test_file("test-SR.dcm"))
    add("seg.dcm", "SEG object (Segmentation Storage), not a CT image", src=pydicom_test_file("liver_1frame.dcm"))
    add("mr.dcm", "MR object (MR Image Storage), not a CT image", src=pydicom_test_file("MR_small.dcm"))
    add("DICOMDIR", "DICOMDIR", src=pydicom_test_file("dicomdirtests/DICOMDIR"))
    uid = pydicom.dcmread(first).SeriesInstanceUID
    ct_small = pydicom_test_file("CT_small.dcm")
    _edit(ct_small, root / "big.dcm", SeriesInstanceUID=uid, ImagePositionPatient=[-72.2, -143.0, 50.0],
          ImageOrientationPatient=[1, 0, 0, 0, 1, 0])
    expected["big.dcm"] = "image size 128×128 differs from the series' 16×16"
    _edit(first, root / "sagittal.dcm", ImageOrientationPatient=[0, 1, 0, 0, 0, -1],
          ImagePositionPatient=[0.0, 0.0, 30.0])
    expected["sagittal.dcm"] = "ImageOrientationPatient [0.0, 1.0, 0.0, 0.0, 0.0, -1.0] differs"
    _edit(first, root / "again.dcm", InstanceNumber=99)
    expected["again.dcm"] = "duplicate position"
    _edit(first, root / "optical.dcm", RescaleType="OD", ImagePositionPatient=[-72.2, -143.0, 40.0])
    expected["optical.dcm"] = "RescaleType 'OD'"
    _edit(first, root / "flat.dcm", RescaleSlope=0, ImagePositionPatient=[-72.2, -143.0, 41.0])
    expected["flat.dcm"] = "RescaleSlope is 0"
    _edit(first, root / "tiny.dcm", RescaleSlope="1e-9", ImagePositionPatient=[-72.2, -143.0, 42.0])
    expected["tiny.dcm"] = "RescaleSlope 1e-09 is outside"
    _edit(first, root / "nopos.dcm", ImagePositionPatient=None)
    expected["nopos.dcm"] = "no valid ImagePositionPatient"
    # A CT slice compressed as JPEG-LS: no decoder for it is installed here.
    jls = pydicom.dcmread(pydicom_test_file("MR_small_jpeg_ls_lossless.dcm"))
    jls.Modality, jls.SOPClassUID, jls.SeriesInstanceUID = "CT", CT_IMAGE, uid
    jls.file_meta.MediaStorageSOPClassUID = CT_IMAGE
    jls.RescaleSlope, jls.RescaleIntercept = 1, -1024
    _write(jls, root / "jpegls.dcm")
    from pydicom.pixels import get_decoder

    expected["jpegls.dcm"] = ("image size 64×64 differs" if get_decoder(JPEGLSLossless).is_available
                              else "no decoder is installed; any of these would decode it: gdcm")
    # The same slice labelled MPEG-2 video: a transfer syntax pydicom has no decoder for at all.
    jls.file_meta.TransferSyntaxUID = MPEG2MPML
    _write(jls, root / "mpeg2.dcm")
    expected["mpeg2.dcm"] = "pixel data compressed as MPEG2 Main Profile / Main Level (1.2.840.10008.1.2.4.100), " \
                            "which pydicom cannot decode"
    return expected


def test_broken_and_foreign_files_are_skipped_with_reasons(ct5n, tmp_path):
    expected = _broken_study(ct5n, tmp_path)
    s = load_series(tmp_path)
    np.testing.assert_array_equal(s.hu, load_series(ct5n).hu)
    reasons = {Path(p).name: r for p, r in s.skipped}
    assert len(reasons) == len(s.skipped), "each input listed once"
    for name, fragment in expected.items():
        assert fragment in reasons.get(name, ""), (name, reasons.get(name))
    assert "pyjpegls" in reasons["jpegls.dcm"] or "differs" in reasons["jpegls.dcm"]
    # Nothing silently dropped: every input file is a slice or a skipped entry.
    inputs = {p.name for p in tmp_path.iterdir()}
    assert {Path(f).name for f in s.files} | set(reasons) == inputs


def test_several_series_in_one_folder(chest_ct, ct5n, tmp_path, rng):
    _link_shuffled(chest_ct, tmp_path / "a", rng)
    _link_shuffled(ct5n, tmp_path / "b" / "nested", rng)
    (tmp_path / "readme.txt").write_text("two series")
    chest_uid = load_series(chest_ct).uid
    small_uid = load_series(ct5n).uid
    with pytest.raises(MultipleSeriesError) as info:
        load_series(tmp_path)
    listed = {s["uid"]: s for s in info.value.series}
    assert listed[chest_uid]["slices"] == 64 and listed[chest_uid]["description"] == "5mm"
    assert listed[small_uid]["slices"] == 5
    assert chest_uid in str(info.value) and "series_uid=" in str(info.value)

    small = load_series(tmp_path, series_uid=small_uid)
    assert len(small) == 5
    others = [r for _, r in small.skipped if r.startswith("belongs to another series")]
    assert len(others) == 64 and chest_uid in others[0]
    assert any("not a DICOM file" in r for _, r in small.skipped)

    study = load_study(tmp_path)
    assert [s.uid for s in study] == [chest_uid, small_uid]  # SeriesNumber 2, then the unnumbered one
    assert [len(s) for s in study] == [64, 5]
    assert all(any("readme.txt" in p for p, _ in s.skipped) for s in study)
    with pytest.raises(SeriesError, match="no series '1.2.3'.*5mm, 64 slices"):
        load_series(tmp_path, series_uid="1.2.3")


def test_order_follows_the_slice_normal_not_z(ct5n, tmp_path, rng):
    # Sagittal slices: rows along +y, columns along -z, so the normal is -x; positions shuffled against
    # InstanceNumber and file names. (One AcquisitionNumber: CT5N's 1, 1, 1, 2, 2 at shuffled positions
    # would be two interleaved acquisitions, which are split.)
    files = sorted(ct5n.iterdir())
    xs = rng.permutation(len(files)) * 3.0 - 6.0
    for k, (f, x) in enumerate(zip(files, xs, strict=True)):
        _edit(f, tmp_path / f"{k}.dcm", ImageOrientationPatient=[0, 1, 0, 0, 0, -1],
              ImagePositionPatient=[float(x), -10.0, 20.0], AcquisitionNumber=1)
    s = load_series(tmp_path)
    np.testing.assert_array_equal(s.positions[:, 0], np.sort(xs)[::-1])
    assert s.spacing[0] == pytest.approx(3.0) and not s.meta["irregular_gaps"]


def test_instance_number_fallback(ct5n, tmp_path):
    for f in sorted(ct5n.iterdir()):
        _edit(f, tmp_path / f"z{f.name}", ImagePositionPatient=None)
    s = load_series(tmp_path)
    assert s.meta["ordering"].startswith("InstanceNumber")
    instances = [pydicom.dcmread(f, stop_before_pixels=True).InstanceNumber for f in s.files]
    assert instances == sorted(instances)
    assert s.spacing[0] == pytest.approx(2.5) and s.meta["spacing_source"]["slice"] == "SliceThickness"
    assert np.isnan(s.positions).all()


def test_slices_without_any_order_are_an_error(ct5n, tmp_path):
    for f in sorted(ct5n.iterdir())[:2]:
        _edit(f, tmp_path / f.name, ImagePositionPatient=None, InstanceNumber=None)
    with pytest.raises(SeriesError, match="cannot order the 2 slices") as info:
        load_series(tmp_path)
    assert len(info.value.skipped) == 2


def test_hu_uses_each_slice_rescale(ct5n, tmp_path, rng):
    files = sorted(ct5n.iterdir())
    params = [(float(rng.choice([0.5, 1, 2])), float(rng.integers(-2048, 0))) for _ in files]
    for f, (slope, intercept) in zip(files, params, strict=True):
        _edit(f, tmp_path / f.name, RescaleSlope=slope, RescaleIntercept=intercept)
    s = load_series(tmp_path)
    for i, f in enumerate(s.files):
        np.testing.assert_array_equal(s.hu[i], _hu_from_pydicom(f).astype(np.float32))
    assert s.meta["rescale"]["intercept"] == "per slice"


def test_padding_pixels_become_air(ct5n, tmp_path):
    first = sorted(ct5n.iterdir())[0]
    px = pydicom.dcmread(first).pixel_array
    pad = int(px.min())
    _edit(first, tmp_path / "a.dcm", PixelPaddingValue=pad)
    s = load_series(tmp_path / "a.dcm")
    mask = px == pad
    assert s.meta["padding"] == {"pixels_replaced": int(mask.sum()), "hu": -1024.0}
    np.testing.assert_array_equal(s.hu[0][mask], -1024.0)
    np.testing.assert_array_equal(s.hu[0][~mask], (px[~mask] - 1024.0).astype(np.float32))
    # A range of padding values, and an intercept that makes the air value fractional: float storage.
    _edit(first, tmp_path / "b.dcm", PixelPaddingValue=pad, PixelPaddingRangeLimit=pad + 40, RescaleSlope=3,
          RescaleIntercept=-1000)
    s = load_series(tmp_path / "b.dcm")
    mask = (px >= pad) & (px <= pad + 40)
    np.testing.assert_allclose(s.hu[0][mask], -1024.0, atol=1e-3)
    np.testing.assert_array_equal(s.hu[0][~mask], (px[~mask] * 3.0 - 1000).astype(np.float32))


def test_missing_rescale_is_reported(ct5n, tmp_path):
    first = sorted(ct5n.iterdir())[0]
    _edit(first, tmp_path / "a.dcm", RescaleSlope=None, RescaleIntercept=None)
    with pytest.warns(UserWarning, match="no RescaleSlope/RescaleIntercept"):
        s = load_series(tmp_path)
    assert s.meta["rescale"]["assumed_identity_slices"] == 1
    np.testing.assert_array_equal(s.hu[0], pydicom.dcmread(first).pixel_array.astype(np.float32))


def _enhanced_ct(ct5n: Path, order) -> Dataset:
    """An Enhanced CT multi-frame file holding CT5N's slices in the given frame order."""
    slices = [pydicom.dcmread(f) for f in sorted(ct5n.iterdir())]
    ds = copy.deepcopy(slices[0])
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = ENHANCED_CT
    ds.SOPInstanceUID = generate_uid()
    ds.NumberOfFrames = len(order)
    for key in ("ImagePositionPatient", "ImageOrientationPatient", "RescaleSlope", "RescaleIntercept",
                "PixelSpacing", "SliceThickness"):
        delattr(ds, key)
    shared = Dataset()
    orient, measures = Dataset(), Dataset()
    orient.ImageOrientationPatient = slices[0].ImageOrientationPatient
    measures.PixelSpacing, measures.SliceThickness = slices[0].PixelSpacing, slices[0].SliceThickness
    shared.PlaneOrientationSequence, shared.PixelMeasuresSequence = Sequence([orient]), Sequence([measures])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for k in order:
        item, pos, rescale = Dataset(), Dataset(), Dataset()
        pos.ImagePositionPatient = slices[k].ImagePositionPatient
        rescale.RescaleSlope, rescale.RescaleIntercept, rescale.RescaleType = 1, -1024, "HU"
        item.PlanePositionSequence, item.PixelValueTransformationSequence = Sequence([pos]), Sequence([rescale])
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = np.stack([slices[k].pixel_array for k in order]).tobytes()
    return ds


def test_enhanced_multiframe_file(ct5n, tmp_path):
    path = _write(_enhanced_ct(ct5n, [3, 0, 4, 1, 2]), tmp_path / "enhanced.dcm")
    s, reference = load_series(path), load_series(ct5n)
    np.testing.assert_array_equal(s.hu, reference.hu)
    np.testing.assert_allclose(s.positions, reference.positions)
    assert s.files[0] == f"{path}[frame 3]" and s.meta["multiframe"]
    assert s.meta["sop_class"] == "Enhanced CT Image Storage"
    assert s.spacing == pytest.approx(reference.spacing)


def test_multiframe_without_positions_keeps_frame_order(ct5n, tmp_path):
    ds = _enhanced_ct(ct5n, [3, 0, 4])
    del ds.PerFrameFunctionalGroupsSequence
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    path = _write(ds, tmp_path / "legacy.dcm")
    s = load_series(path)
    assert s.meta["ordering"].startswith("frame order") and s.files == [f"{path}[frame {k}]" for k in (1, 2, 3)]


def test_big_endian_file(ct5n, tmp_path):
    from pydicom.filewriter import dcmwrite
    from pydicom.uid import ExplicitVRBigEndian

    first = sorted(ct5n.iterdir())[0]
    ds = pydicom.dcmread(first)
    px = ds.pixel_array
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    ds.PixelData = px.astype(">i2").tobytes()
    dcmwrite(tmp_path / "be.dcm", ds, little_endian=False, implicit_vr=False, force_encoding=True)
    s = load_series(tmp_path / "be.dcm")
    assert s.pixels.dtype.isnative
    np.testing.assert_array_equal(s.hu[0], (px - 1024.0).astype(np.float32))


def test_compressed_real_ct_slice_is_decoded_or_skipped_with_the_packages_named():
    from pydicom.pixels import get_decoder

    path = pydicom_test_file("693_J2KI.dcm")
    ds = pydicom.dcmread(path)
    if get_decoder(ds.file_meta.TransferSyntaxUID).is_available:
        s = load_series(path)
        px = ds.pixel_array
        padding = px == ds.PixelPaddingValue  # -2000 stored: outside the field of view, becomes air
        assert s.meta["padding"]["pixels_replaced"] == padding.sum() > 0
        expected = np.where(padding, -1024.0, px * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
        np.testing.assert_array_equal(s.hu[0], expected.astype(np.float32))
    else:
        with pytest.raises(SeriesError) as info:
            load_series(path)
        assert "pylibjpeg-openjpeg" in info.value.skipped[0][1]


def test_lists_of_files(ct5n, tmp_path):
    files = sorted(ct5n.iterdir())
    s = load_series([files[3], str(files[0]), files[3], tmp_path / "missing.dcm"])
    assert len(s) == 2
    reasons = dict(s.skipped)
    assert reasons[str(tmp_path / "missing.dcm")] == "no such file"
    assert reasons[str(files[3])].startswith("listed twice")


def test_single_file(ct5n):
    f = sorted(ct5n.iterdir())[2]
    s = load_series(f)
    assert len(s) == 1 and s.files == [str(f)]


@pytest.mark.parametrize(
    ("src", "error", "message"),
    [
        ("/nonexistent/study", InputError, "no such file or folder"),
        (42, InputError, "got int"),
        ([1, 2], InputError, "item 0 of the list is a int"),
        (np.zeros((2, 2, 2, 2)), InputError, r"\(N, H, W\)"),
        (np.full((1, 3, 3), np.nan), InputError, "non-finite"),
        (np.zeros((2, 3), dtype=complex), InputError, "real numbers"),
    ],
)
def test_bad_sources_raise_input_errors(src, error, message):
    with pytest.raises(error, match=message):
        load_series(src)


def test_empty_and_junk_folders_say_why(tmp_path):
    with pytest.raises(SeriesError, match="holds no files"):
        load_series(tmp_path)
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "b.bin").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(SeriesError, match=r"2 file\(s\) skipped \(2× not a DICOM file\)") as info:
        load_study(tmp_path)
    assert {Path(p).name for p, _ in info.value.skipped} == {"a.txt", "b.bin"}


def test_arrays_become_series(rng):
    hu = rng.uniform(-1000, 1000, (3, 7, 5))
    s = load_series(hu)
    assert s.hu.dtype == np.float32 and s.files == ["", "", ""] and s.meta["source"] == "array"
    np.testing.assert_array_equal(s.hu, hu.astype(np.float32))
    assert s.uid == load_series(hu.copy()).uid != load_series(hu + 1).uid
    assert s.uid.startswith("array-") and np.isnan(s.spacing).all()
    assert len(load_series(hu[0])) == 1
    assert [len(x) for x in load_study(hu)] == [3]
