"""Hostile series: what one SeriesInstanceUID can hide, and whether the user hears about it.

* Slices of other patients, studies or frames of reference under one series uid are never merged.
* Several acquisitions/reconstructions (AcquisitionNumber, SliceThickness, ImageType, ConvolutionKernel) are
  split; the largest is used unless ``acquisition=`` picks another, and the others' slices say how to pick them.
* Values that are not HU (signed data with an unsigned header, a wrong slope, arrays of nonsense) are refused
  or skipped with the probable cause; real padding, noisy air and metal are not.
* What the loader noticed reaches ``Series.warnings``.

Every case also checks that every file passed in is used or in ``skipped``, exactly once.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medinfer import load_series, load_study
from medinfer.errors import InputError, SeriesError
from medinfer.hu import FAR_HU, IMPLAUSIBLE_SHARE, implausible_hu
from medinfer.io import Series

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
SIZE = 32


def phantom_hu(size: int = SIZE, rng=None) -> np.ndarray:
    """A small axial 'body': air (-1000 ± noise) around an ellipse of soft tissue with a lung and a bone."""
    y, x = np.mgrid[:size, :size] / (size - 1) * 2 - 1
    hu = np.full((size, size), -1000.0)
    body = (x / 0.8) ** 2 + (y / 0.6) ** 2 < 1
    hu[body] = 40.0
    hu[((x + 0.35) / 0.25) ** 2 + (y / 0.35) ** 2 < 1] = -850.0
    hu[(x - 0.3) ** 2 + y**2 < 0.02] = 900.0
    if rng is not None:
        hu += rng.normal(0, 15, hu.shape)
    return np.round(hu)


def write_ct(path: Path, hu: np.ndarray | None = None, *, z: float | None = 0.0, series_uid: str, instance: int | None,
             patient: str = "PAT-1", study: str = "1.2.826.0.1.9.1", frame_of_reference: str = "1.2.826.0.1.9.2",
             acquisition: int | None = 1, thickness: float | None = 2.5, image_type="ORIGINAL\\PRIMARY\\AXIAL",
             kernel: str | None = "STANDARD", slope: float = 1.0, intercept: float = -1024.0,
             stored: np.ndarray | None = None, signed: bool = True, position=None, orientation=(1, 0, 0, 0, 1, 0),
             **extra) -> Path:
    """One CT Image Storage file written from scratch; ``stored`` (int16/uint16 bits) overrides ``hu``."""
    if stored is None:
        hu = phantom_hu() if hu is None else hu
        stored = np.round((hu - intercept) / slope).astype(np.int16)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CT_IMAGE
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CT_IMAGE, ds.file_meta.MediaStorageSOPInstanceUID, "CT"
    ds.SeriesInstanceUID, ds.SeriesNumber = series_uid, 3
    for keyword, value in (("PatientID", patient), ("StudyInstanceUID", study),
                           ("FrameOfReferenceUID", frame_of_reference), ("AcquisitionNumber", acquisition),
                           ("SliceThickness", thickness), ("ImageType", image_type),
                           ("ConvolutionKernel", kernel), ("InstanceNumber", instance)):
        if value is not None:
            setattr(ds, keyword, value)
    if position is None and z is not None:
        position = (-80.0, -60.0, z)
    if position is not None:
        ds.ImagePositionPatient = [float(v) for v in position]
        ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = [0.7, 0.7]
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "HU"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if signed else 0
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    ds.PixelData = np.ascontiguousarray(stored).astype("<i2" if stored.dtype.kind == "i" else "<u2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def accounted(series: Series, paths) -> None:
    """Every path is either a slice of ``series`` or in its ``skipped``, exactly once."""
    used = [f.partition("[frame ")[0] for f in series.files]
    skipped = [p for p, _ in series.skipped]
    assert len(set(skipped)) == len(skipped), "a file is skipped twice"
    assert not set(used) & set(skipped), "a file is both used and skipped"
    assert set(used) | set(skipped) == {str(p) for p in paths}


def reasons(series_or_error) -> dict[str, str]:
    return {Path(p).name: r for p, r in series_or_error.skipped}


def stack(folder: Path, zs, *, prefix: str, uid: str, first_instance: int = 1, rng=None, **kw) -> list[Path]:
    return [write_ct(folder / f"{prefix}{k:03d}.dcm", phantom_hu(rng=rng) if rng is not None else None, z=float(z),
                     series_uid=uid, instance=first_instance + k, **kw)
            for k, z in enumerate(zs)]


# --- patients, studies and frames of reference under one series uid ------------------------------------------

IDENTITY = [
    ("PatientID", "patient", "PAT-1", "PAT-2"),
    ("StudyInstanceUID", "study", "1.2.826.0.1.9.1", "1.2.826.0.1.9.77"),
    ("FrameOfReferenceUID", "frame_of_reference", "1.2.826.0.1.9.2", "1.2.826.0.1.9.88"),
]


@pytest.mark.parametrize(("attribute", "kw", "a", "b"), IDENTITY)
@pytest.mark.parametrize("minority", [1, 3])
def test_minority_of_another_identity_is_set_aside(tmp_path, attribute, kw, a, b, minority):
    uid = generate_uid()
    # B's slices sit between A's (and one at A's own position, with a lower InstanceNumber that would win a
    # duplicate contest): merged, they would look like one stack with irregular gaps.
    main = stack(tmp_path, np.arange(8) * 5.0, prefix="a", uid=uid, first_instance=10, **{kw: a})
    other = stack(tmp_path, [2.5, 7.5, 10.0][:minority], prefix="b", uid=uid, first_instance=1, **{kw: b})
    s = load_series(tmp_path)
    assert [Path(f).name for f in s.files] == [p.name for p in main]
    assert s.spacing[0] == pytest.approx(5.0) and not s.meta["irregular_gaps"]
    why = reasons(s)
    for p in other:
        assert f"{attribute} {b!r} differs from the series' majority {a!r}" in why[p.name]
        assert f"(8 of {8 + minority} slices)" in why[p.name]
    assert any(attribute in w and repr(b) in w and "set aside" in w for w in s.warnings), s.warnings
    accounted(s, main + other)
    # load_study applies the same rule.
    (study,) = load_study(tmp_path)
    assert study.files == s.files


@pytest.mark.parametrize(("attribute", "kw", "a", "b"), IDENTITY)
def test_a_tie_between_identities_is_refused(tmp_path, attribute, kw, a, b):
    uid = generate_uid()
    paths = (stack(tmp_path, [0, 5, 10], prefix="a", uid=uid, **{kw: a})
             + stack(tmp_path, [2.5, 7.5, 12.5], prefix="b", uid=uid, first_instance=4, **{kw: b}))
    with pytest.raises(SeriesError) as info:
        load_series(tmp_path)
    message = str(info.value)
    assert attribute in message and repr(a) in message and repr(b) in message and "no majority" in message
    assert "a000.dcm" in message and "b000.dcm" in message, "the files are named"
    assert {Path(p).name for p, _ in info.value.skipped} == {p.name for p in paths}
    assert all("no majority" in r for _, r in info.value.skipped)
    with pytest.raises(SeriesError, match="no usable CT series"):
        load_study(tmp_path)


@pytest.mark.parametrize(("attribute", "kw", "a", "b"), IDENTITY)
def test_a_missing_identity_is_a_value_of_its_own(tmp_path, attribute, kw, a, b):
    uid = generate_uid()
    main = stack(tmp_path, [0, 5, 10, 15], prefix="a", uid=uid, **{kw: a})
    bare = stack(tmp_path, [20], prefix="b", uid=uid, first_instance=9, **{kw: None})
    s = load_series(tmp_path)
    assert len(s) == 4
    assert f"{attribute} (missing) differs from the series' majority {a!r}" in reasons(s)["b000.dcm"]
    accounted(s, main + bare)


def test_three_patients_majority_and_three_way_tie(tmp_path):
    uid = generate_uid()
    paths = (stack(tmp_path / "x", [0, 5, 10, 15], prefix="a", uid=uid, patient="A")
             + stack(tmp_path / "x", [1, 6], prefix="b", uid=uid, patient="B", first_instance=20)
             + stack(tmp_path / "x", [2, 7], prefix="c", uid=uid, patient="C", first_instance=30))
    s = load_series(tmp_path / "x")
    assert len(s) == 4 and {Path(f).name[0] for f in s.files} == {"a"}
    why = reasons(s)
    assert "'B' differs" in why["b000.dcm"] and "'C' differs" in why["c001.dcm"]
    accounted(s, paths)
    # 2 A, 2 B, 1 C: no majority.
    paths = (stack(tmp_path / "y", [0, 5], prefix="a", uid=uid, patient="A")
             + stack(tmp_path / "y", [1, 6], prefix="b", uid=uid, patient="B", first_instance=20)
             + stack(tmp_path / "y", [2], prefix="c", uid=uid, patient="C", first_instance=30))
    with pytest.raises(SeriesError, match=r"PatientID.*'A' \(2 slices\), 'B' \(2 slices\), 'C' \(1 slice\)") as info:
        load_series(tmp_path / "y")
    assert len(info.value.skipped) == 5


def test_identity_checks_are_sequential_patient_then_study(tmp_path):
    uid = generate_uid()
    paths = (stack(tmp_path, [0, 5, 10, 15, 20], prefix="a", uid=uid, patient="A", study="1.2.3.1")
             + stack(tmp_path, [25, 30], prefix="s", uid=uid, patient="A", study="1.2.3.2", first_instance=10)
             + stack(tmp_path, [35], prefix="p", uid=uid, patient="B", study="1.2.3.1", first_instance=20))
    s = load_series(tmp_path)
    assert len(s) == 5
    why = reasons(s)
    assert why["p000.dcm"].startswith("PatientID 'B'") and why["s000.dcm"].startswith("StudyInstanceUID '1.2.3.2'")
    assert sum("set aside" in w for w in s.warnings) == 2
    accounted(s, paths)


# --- acquisitions and reconstructions ----------------------------------------------------------------------------

def _two_reconstructions(folder: Path) -> tuple[list[Path], list[Path]]:
    """The issue's case: 5 mm (AcquisitionNumber 1, 8 slices) and 1.25 mm (AcquisitionNumber 2, 29 slices)
    reconstructions of one scan, interleaved in one series."""
    uid = generate_uid()
    thick = stack(folder, np.arange(8) * 5.0, prefix="t", uid=uid, acquisition=1, thickness=5.0, first_instance=1)
    thin = stack(folder, np.arange(29) * 1.25, prefix="n", uid=uid, acquisition=2, thickness=1.25,
                 first_instance=100)
    return thick, thin


def test_interleaved_reconstructions_are_split_largest_first(tmp_path):
    thick, thin = _two_reconstructions(tmp_path)
    s = load_series(tmp_path)
    assert [Path(f).name for f in s.files] == [p.name for p in thin]
    assert s.spacing[0] == pytest.approx(1.25) and not s.meta["irregular_gaps"]
    why = reasons(s)
    for p in thick:
        r = why[p.name]
        assert r.startswith("another acquisition/reconstruction of this series: #2 (AcquisitionNumber 1, "
                            "SliceThickness 5 mm, 8 slices) of 2, while #1 (AcquisitionNumber 2, SliceThickness "
                            "1.25 mm, 29 slices) is used (the largest)"), r
        assert 'acquisition=2 or acquisition="AcquisitionNumber=1,SliceThickness=5"' in r
        assert "--acquisition 2" in r
    assert [(a["index"], a["key"], a["slices"], a["used"]) for a in s.meta["acquisitions"]] == [
        (1, "AcquisitionNumber=2,SliceThickness=1.25", 29, True), (2, "AcquisitionNumber=1,SliceThickness=5", 8, False)]
    (w,) = [w for w in s.warnings if "acquisitions/reconstructions" in w]
    assert "2 acquisitions/reconstructions" in w and "AcquisitionNumber, SliceThickness" in w and "8 slices" in w
    accounted(s, thick + thin)


@pytest.mark.parametrize("selector", [2, "2", " 2 ", np.int64(2), "SliceThickness=5", "AcquisitionNumber=1",
                                      "acquisitionnumber=1, slicethickness=5.0", "SliceThickness=5mm",
                                      "AcquisitionNumber=1,SliceThickness=5"])
def test_acquisition_selects_another_stack(tmp_path, selector):
    thick, thin = _two_reconstructions(tmp_path)
    s = load_series(tmp_path, acquisition=selector)
    assert [Path(f).name for f in s.files] == [p.name for p in thick]
    assert s.spacing[0] == pytest.approx(5.0)
    assert all("another acquisition/reconstruction" in r and "is used (selected by acquisition=" in r
               for _, r in s.skipped)
    assert [a["used"] for a in s.meta["acquisitions"]] == [False, True]
    accounted(s, thick + thin)


@pytest.mark.parametrize("selector", [1, "1", "SliceThickness=1.25", "AcquisitionNumber=2", None])
def test_acquisition_selecting_the_default(tmp_path, selector):
    thick, thin = _two_reconstructions(tmp_path)
    s = load_series(tmp_path, acquisition=selector)
    assert len(s) == len(thin) and s.spacing[0] == pytest.approx(1.25)
    accounted(s, thick + thin)


def test_acquisition_all_disables_the_split(tmp_path):
    thick, thin = _two_reconstructions(tmp_path)
    s = load_series(tmp_path, acquisition="all")
    # The old behaviour: one stack, the 5 mm slices at positions the 1.25 mm stack also has are duplicates.
    assert len(s) + len(s.skipped) == 37 and all("duplicate position" in r for _, r in s.skipped)
    assert any("used together as one stack" in w for w in s.warnings)
    accounted(s, thick + thin)


# Two stacks at the same 8 positions that differ in one attribute only; today their slices would be merged
# as duplicates, each position won by whichever has the lower InstanceNumber.
DIFFERENCES = [
    ("AcquisitionNumber", {"acquisition": 1}, {"acquisition": 2}, "AcquisitionNumber=2"),
    ("SliceThickness", {"thickness": 2.5}, {"thickness": 1.0}, "SliceThickness=1"),
    ("ImageType", {"image_type": "ORIGINAL\\PRIMARY\\AXIAL"}, {"image_type": "DERIVED\\SECONDARY\\AXIAL"},
     "ImageType=DERIVED\\SECONDARY\\AXIAL"),
    ("ConvolutionKernel", {"kernel": "STANDARD"}, {"kernel": "LUNG"}, "ConvolutionKernel=LUNG"),
    ("ConvolutionKernel", {"kernel": "B30f"}, {"kernel": None}, "ConvolutionKernel="),
    ("SliceThickness", {"thickness": 2.5}, {"thickness": None}, "SliceThickness="),
]


@pytest.mark.parametrize(("attribute", "big", "small", "key"), DIFFERENCES,
                         ids=[f"{d[0]}-{d[3]}" for d in DIFFERENCES])
@pytest.mark.parametrize("small_first", [True, False])
def test_stacks_differing_in_one_attribute_are_never_mixed(tmp_path, attribute, big, small, key, small_first):
    uid = generate_uid()
    zs = np.arange(8) * 2.5
    # The smaller stack gets the lower InstanceNumbers when small_first: it would win every duplicate.
    a = stack(tmp_path, zs, prefix="big", uid=uid, first_instance=50 if small_first else 1, **big)
    b = stack(tmp_path, zs[:6], prefix="small", uid=uid, first_instance=1 if small_first else 50, **small)
    s = load_series(tmp_path)
    assert [Path(f).name for f in s.files] == [p.name for p in a]
    why = reasons(s)
    assert all(f'acquisition="{key}"' in why[p.name] for p in b), why
    assert all(attribute in w for w in s.warnings if "acquisitions/reconstructions" in w)
    accounted(s, a + b)
    picked = load_series(tmp_path, acquisition=key)
    assert [Path(f).name for f in picked.files] == [p.name for p in b]
    accounted(picked, a + b)


def test_every_listed_key_and_index_selects_exactly_its_stack(tmp_path, rng):
    uid = generate_uid()
    groups = [
        stack(tmp_path, np.arange(12) * 1.0, prefix="a", uid=uid, acquisition=1, thickness=1.0, kernel="B30f"),
        stack(tmp_path, np.arange(12) * 1.0 + 0.5, prefix="b", uid=uid, acquisition=1, thickness=1.0, kernel="B70f",
              first_instance=20),
        stack(tmp_path, np.arange(4) * 3.0, prefix="c", uid=uid, acquisition=2, thickness=3.0, kernel="B30f",
              first_instance=40),
        stack(tmp_path, np.arange(4) * 3.0 + 0.2, prefix="d", uid=uid, acquisition=3, thickness=3.0, kernel="B30f",
              first_instance=60),
    ]
    paths = [p for g in groups for p in g]
    s = load_series(tmp_path)
    listing = s.meta["acquisitions"]
    assert [a["slices"] for a in listing] == [12, 12, 4, 4]
    assert listing[0]["key"] != listing[1]["key"]
    assert any("have as many slices; #1 comes first" in w for w in s.warnings), "the tie is reported"
    for entry in listing:
        by_key = load_series(tmp_path, acquisition=entry["key"])
        by_index = load_series(tmp_path, acquisition=entry["index"])
        assert by_key.files == by_index.files and len(by_key) == entry["slices"]
        assert len({Path(f).name[0] for f in by_key.files}) == 1, "one stack, not a mixture"
        accounted(by_key, paths)
    # The default is deterministic: the same stack whatever the order the files are listed in.
    for order in (paths, paths[::-1], [paths[k] for k in rng.permutation(len(paths))]):
        assert load_series(order).files == s.files


def test_step_and_shoot_acquisitions_stay_one_stack(tmp_path):
    uid = generate_uid()
    # Axial step-and-shoot: 4 slices per rotation, each rotation its own AcquisitionNumber, disjoint ranges.
    paths = [write_ct(tmp_path / f"s{k:02d}.dcm", z=2.5 * k, series_uid=uid, instance=k + 1, acquisition=k // 4 + 1)
             for k in range(16)]
    s = load_series(tmp_path)
    assert len(s) == 16 and s.skipped == [] and "acquisitions" not in s.meta and s.warnings == []
    accounted(s, paths)
    # ... and every slice numbered as its own acquisition, too.
    for k, p in enumerate(paths):
        write_ct(p, z=2.5 * k, series_uid=uid, instance=k + 1, acquisition=100 + k)
    assert len(load_series(tmp_path)) == 16
    # acquisition= can still pick the slices of one AcquisitionNumber of such a stack.
    one = load_series(tmp_path, acquisition="AcquisitionNumber=103")
    assert len(one) == 1 and all("not selected by acquisition='AcquisitionNumber=103'" in r for _, r in one.skipped)
    accounted(one, paths)


def test_ct5n_step_and_shoot_is_one_stack(ct5n):
    s = load_series(ct5n)  # AcquisitionNumbers 1, 1, 1, 2, 2 over consecutive positions
    assert len(s) == 5 and s.skipped == [] and s.warnings == []


@pytest.mark.parametrize("overlap", [True, False])
def test_acquisitions_without_positions_split_by_instance_numbers(tmp_path, overlap):
    uid = generate_uid()
    a = [write_ct(tmp_path / f"a{k}.dcm", z=None, series_uid=uid, instance=k + 1, acquisition=1) for k in range(6)]
    b = [write_ct(tmp_path / f"b{k}.dcm", z=None, series_uid=uid, instance=(k + 2 if overlap else k + 7),
                  acquisition=2) for k in range(4)]
    s = load_series(tmp_path)
    assert s.meta["ordering"].startswith("InstanceNumber")
    if overlap:  # two acquisitions numbered 1..6 and 2..5: both would claim InstanceNumbers 2..5
        assert [Path(f).name for f in s.files] == [p.name for p in a]
        assert all("acquisition=2" in r for _, r in s.skipped)
    else:
        assert len(s) == 10 and s.skipped == []
    accounted(s, a + b)


def test_a_localizer_in_the_series_is_its_own_acquisition(tmp_path):
    uid = generate_uid()
    axial = stack(tmp_path, np.arange(6) * 5.0, prefix="ax", uid=uid)
    scout = write_ct(tmp_path / "scout.dcm", series_uid=uid, instance=99, image_type="ORIGINAL\\PRIMARY\\LOCALIZER",
                     position=(0.0, 0.0, 0.0), orientation=(1, 0, 0, 0, 0, -1))
    s = load_series(tmp_path)
    assert len(s) == 6 and "ImageType=ORIGINAL\\PRIMARY\\LOCALIZER" in reasons(s)["scout.dcm"]
    accounted(s, [*axial, scout])


def test_enhanced_ct_frames_split_by_per_frame_kernel(tmp_path):
    """Enhanced CT keeps FrameAcquisitionNumber and ConvolutionKernel per frame, in functional groups."""
    uid = generate_uid()
    hu = phantom_hu()
    ds = pydicom.dcmread(write_ct(tmp_path / "base.dcm", series_uid=uid, instance=1))
    (tmp_path / "base.dcm").unlink()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = ENHANCED_CT
    for key in ("ImagePositionPatient", "RescaleSlope", "RescaleIntercept", "ConvolutionKernel", "AcquisitionNumber"):
        delattr(ds, key)
    frames, zs = [], [0.0, 2.5, 5.0, 7.5, 0.0, 2.5, 5.0]
    kernels = ["SOFT"] * 4 + ["SHARP"] * 3
    for z, kernel in zip(zs, kernels, strict=True):
        item, pos, rescale, recon, content = Dataset(), Dataset(), Dataset(), Dataset(), Dataset()
        pos.ImagePositionPatient = [-80.0, -60.0, z]
        rescale.RescaleSlope, rescale.RescaleIntercept, rescale.RescaleType = 1, -1024, "HU"
        recon.ConvolutionKernel = kernel
        content.FrameAcquisitionNumber = 1
        item.PlanePositionSequence, item.PixelValueTransformationSequence = Sequence([pos]), Sequence([rescale])
        item.CTReconstructionSequence, item.FrameContentSequence = Sequence([recon]), Sequence([content])
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.NumberOfFrames = len(frames)
    ds.PixelData = np.stack([(hu + 1024).astype(np.int16)] * len(frames)).tobytes()
    ds.save_as(tmp_path / "enhanced.dcm", enforce_file_format=True)
    s = load_series(tmp_path / "enhanced.dcm")
    assert s.files == [f"{tmp_path / 'enhanced.dcm'}[frame {k}]" for k in (1, 2, 3, 4)]
    assert all('acquisition="ConvolutionKernel=SHARP"' in r for _, r in s.skipped) and len(s.skipped) == 3
    sharp = load_series(tmp_path / "enhanced.dcm", acquisition="convolutionkernel=sharp")
    assert len(sharp) == 3


@pytest.mark.parametrize(("selector", "error", "message"), [
    (0, InputError, "numbered from 1"),
    (-1, InputError, "numbered from 1"),
    ("0", InputError, "numbered from 1"),
    (True, InputError, "stack number"),
    (2.5, InputError, "expected an int or a string"),
    ("", InputError, "is none of these"),
    ("Foo=1", InputError, "attributes among AcquisitionNumber, SliceThickness, ImageType, ConvolutionKernel"),
    ("SliceThickness", InputError, "is none of these"),
    ("AcquisitionNumber=x", InputError, "'x' is not an integer"),
    ("SliceThickness=thin", InputError, "is not a number"),
    ("SliceThickness=nan", InputError, "is not a number"),
    ("SliceThickness=1,SliceThickness=2", InputError, "given twice"),
    (3, SeriesError, "acquisition=3, but it holds 2 acquisition/reconstructions"),
    ("SliceThickness=7", SeriesError, "matches no slice"),
    ("ConvolutionKernel=BONE", SeriesError, "matches no slice"),
])
def test_bad_acquisition_selectors_say_why(tmp_path, selector, error, message):
    thick, thin = _two_reconstructions(tmp_path)
    with pytest.raises(error, match=message) as info:
        load_series(tmp_path, acquisition=selector)
    if error is SeriesError:  # every file is listed with the reason it was not loaded
        assert {p for p, _ in info.value.skipped} == {str(p) for p in thick + thin}
        assert all(r.startswith("not loaded: acquisition=") for _, r in info.value.skipped)


def test_acquisition_for_inputs_without_acquisitions(tmp_path):
    with pytest.raises(InputError, match="an HU array has none"):
        load_series(np.zeros((2, 4, 4)), acquisition=1)
    from PIL import Image

    (tmp_path / "img").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "img" / "1.png")
    with pytest.raises(InputError, match="the image folder .* has none"):
        load_series(tmp_path / "img", acquisition="2")
    with pytest.raises(InputError, match="numbered from 1"):  # validated before any file is read
        load_series(tmp_path / "does-not-matter", acquisition=0)


# --- signedness and HU plausibility (DICOM) ----------------------------------------------------------------------

def _wrapped_unsigned(hu: np.ndarray, intercept: float) -> np.ndarray:
    """What a signed scanner wrote, as a reader trusting PixelRepresentation=0 sees it."""
    return np.round(hu - intercept).astype(np.int16).view(np.uint16)


def test_the_issue_case_signed_air_read_as_unsigned(tmp_path):
    uid = generate_uid()
    good = stack(tmp_path, [0, 5, 10, 15, 20], prefix="g", uid=uid)
    hu = phantom_hu()
    hu[hu == -1000] = -1024
    bad = write_ct(tmp_path / "bad.dcm", z=25.0, series_uid=uid, instance=50, intercept=0.0,
                   stored=_wrapped_unsigned(hu, 0.0), signed=False)
    s = load_series(tmp_path)
    assert len(s) == 5 and s.hu.max() < 4000
    r = reasons(s)["bad.dcm"]
    assert r.startswith("implausible HU: ") and "e.g. 64" in r
    assert "PixelRepresentation says unsigned but the values look like signed two's complement: " \
           "64512 ≈ -1024 as int16 (-1024 HU)" in r
    assert any("not plausible as HU" in w and "bad.dcm" in w for w in s.warnings)
    accounted(s, [*good, bad])
    with pytest.raises(SeriesError, match="no usable slice") as info:
        load_series(bad)
    assert "two's complement" in info.value.skipped[0][1]


@pytest.mark.parametrize("intercept", [0.0, -1024.0])
@pytest.mark.parametrize("share", [1.0, 0.3, 0.01, 0.002])
def test_wrapped_integers_are_caught_at_any_share(tmp_path, intercept, share, rng):
    """Signed data, unsigned header: only pixels stored negative wrap; even 0.2 % of them give it away."""
    hu = phantom_hu(64, rng)
    stored = np.round(hu - intercept)
    flat = stored.reshape(-1)
    if intercept == 0.0:  # air and lung (negative HU) are stored negative: make all but `share` of them positive
        negative = np.flatnonzero(flat < 0)
        keep = rng.choice(negative, min(negative.size, max(1, int(share * flat.size))), replace=False)
        flat[np.setdiff1d(negative, keep)] = 0
    else:  # stored = HU + 1024 is positive except where HU < -1024: make `share` of the pixels such padding
        flat[rng.choice(flat.size, max(1, int(share * flat.size)), replace=False)] = -976  # -2000 HU
    path = write_ct(tmp_path / "x.dcm", series_uid=generate_uid(), instance=1, intercept=intercept,
                    stored=stored.astype(np.int16).view(np.uint16), signed=False)
    with pytest.raises(SeriesError) as info:
        load_series(path)
    assert "PixelRepresentation says unsigned" in info.value.skipped[0][1]
    # The same slice with the right header is used.
    write_ct(path, series_uid=generate_uid(), instance=1, intercept=intercept, stored=stored.astype(np.int16))
    assert len(load_series(path)) == 1


def test_signed_header_on_unsigned_data(tmp_path):
    hu = phantom_hu()
    stored = (hu + 32768).astype(np.uint16)  # an unsigned scanner with intercept -32768
    path = write_ct(tmp_path / "x.dcm", series_uid=generate_uid(), instance=1, intercept=-32768.0,
                    stored=stored.view(np.int16), signed=True)
    with pytest.raises(SeriesError) as info:
        load_series(path)
    assert "PixelRepresentation says signed but the values look unsigned" in info.value.skipped[0][1]


@pytest.mark.parametrize(("slope", "intercept"), [(10.0, -1024.0), (1.0, -20000.0), (1.0, 9000.0), (-40.0, 0.0)])
def test_wrong_rescale_is_implausible(tmp_path, slope, intercept):
    stored = (phantom_hu() + 1024).astype(np.int16)  # written for slope 1, intercept -1024
    path = write_ct(tmp_path / "x.dcm", series_uid=generate_uid(), instance=1, slope=slope, intercept=intercept,
                    stored=stored)
    with pytest.raises(SeriesError) as info:
        load_series(path)
    r = info.value.skipped[0][1]
    assert r.startswith("implausible HU") and "wrong RescaleSlope/RescaleIntercept" in r
    assert "PixelRepresentation" not in r


def _disc_mask(size: int) -> np.ndarray:
    y, x = np.mgrid[:size, :size] / (size - 1) * 2 - 1
    return x**2 + y**2 >= 1  # the corners outside a circular field of view: 21 % of the slice


@pytest.mark.parametrize("case", ["padding-3024", "padding-2000", "padding-32768-stored", "lossy-padding",
                                  "noisy-air", "metal-4%", "extended-scale", "all-padding", "12-bit-max",
                                  "padding-only-constant-stored-min"])
def test_real_ct_values_are_not_implausible(tmp_path, case, rng):
    size = 64
    hu = phantom_hu(size, rng)
    intercept, slope, outside = -1024.0, 1.0, _disc_mask(size)
    if case == "padding-3024":
        hu[outside] = -3024
    elif case == "padding-2000":
        hu[outside] = -2000
    elif case == "padding-32768-stored":
        hu[outside] = -32768 + intercept
    elif case == "lossy-padding":  # JPEG 2000 ringing smears -3024 down to about -4000
        hu[outside] = -3024 + rng.uniform(-950, 300, int(outside.sum()))
    elif case == "noisy-air":
        hu[hu < -900] += rng.normal(0, 120, int((hu < -900).sum()))
    elif case == "metal-4%":
        metal = rng.choice(hu.size, int(0.04 * hu.size), replace=False)
        hu.reshape(-1)[metal] = 25000
    elif case == "extended-scale":  # Siemens' extended CT scale: slope 10
        slope, intercept = 10.0, -10240.0
        hu.reshape(-1)[:50] = 30000
    elif case == "all-padding":
        hu[:] = -3024
    elif case == "padding-only-constant-stored-min":
        hu[:] = -1024
        hu[outside] = -32768 + intercept
    elif case == "12-bit-max":
        hu[hu > 500] = 3071
    stored = np.round((hu - intercept) / slope).astype(np.int16)
    path = write_ct(tmp_path / "x.dcm", series_uid=generate_uid(), instance=1, slope=slope, intercept=intercept,
                    stored=stored)
    s = load_series(path)
    assert len(s) == 1 and s.skipped == [] and s.warnings == []


@pytest.mark.parametrize("share", [IMPLAUSIBLE_SHARE - 0.005, IMPLAUSIBLE_SHARE + 0.005])
def test_the_share_threshold(share, rng):
    hu = phantom_hu(100)
    hu.reshape(-1)[rng.choice(hu.size, int(round(share * hu.size)), replace=False)] = FAR_HU[1] + 100
    reason = implausible_hu(hu.astype(np.int16))
    assert (reason is None) == (share < IMPLAUSIBLE_SHARE)
    if reason is not None:
        assert f"{share:.1%} of the pixels" in reason


@pytest.mark.parametrize(("pixels", "plausible"), [
    (np.full((4, 4), -1024, np.int16), True),
    (np.array([[np.nan, 0.0], [0.0, 0.0]]), False),  # non-finite values count as far out
    (np.array([[np.inf, 0.0, 0.0], [0.0, 0.0, 0.0]]), False),
    (np.full((4, 4), 250, np.uint8), True),  # 8-bit values never wrap out of the range
    (np.full((4, 4), 4.6e18), False),
    (np.zeros((0, 4)), True),
    (np.full((4, 4), -33792.0), False),  # one far-out constant and nothing else is no padding around an image
    (np.where(np.eye(4, dtype=bool), -1000.0, -33792.0), True),  # ... while around something, it is
])
def test_implausible_hu_edge_cases(pixels, plausible):
    assert (implausible_hu(pixels) is None) == plausible


def test_padding_tagged_with_the_wrapped_value_is_still_air(tmp_path):
    # PixelPaddingValue (US) 63536 is -2000 stored by a signed scanner: the reader replaces it with air,
    # so the slice's other values decide.
    hu = phantom_hu()
    stored = np.round(hu + 1024).astype(np.int16)
    stored[_disc_mask(SIZE)] = -2000
    path = write_ct(tmp_path / "x.dcm", series_uid=generate_uid(), instance=1, stored=stored.view(np.uint16),
                    signed=False)
    ds = pydicom.dcmread(path)
    ds.add_new("PixelPaddingValue", "US", 63536)
    ds.save_as(path)
    s = load_series(path)
    assert len(s) == 1 and s.meta["padding"]["pixels_replaced"] == int(_disc_mask(SIZE).sum())


def test_real_lossy_ct_slice_is_plausible():
    from pydicom.pixels import get_decoder

    from medinfer.samples import pydicom_test_file

    path = pydicom_test_file("693_J2KI.dcm")
    if not get_decoder(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID).is_available:
        pytest.skip("no JPEG 2000 decoder")
    ds = pydicom.dcmread(path)
    assert implausible_hu(ds.pixel_array, float(ds.RescaleSlope), float(ds.RescaleIntercept)) is None


# --- arrays ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("array", "message"), [
    (np.full((2, 8, 8), 4_600_000_000_000_000_000, np.int64), r"far outside -1100…4000 HU .*e\.g\. 4\.6e\+18 HU"),
    (np.full((1, 8, 8), 1e300), "too large for float32"),
    (np.full((1, 8, 8), 3.5e38), "too large for float32"),
    (np.full((1, 8, 8), -1e39), "too large for float32"),
    (np.full((1, 8, 8), np.nan), "non-finite value"),
    (np.array([[[np.inf, 1e300]]]), "non-finite value"),  # the input's own inf is named first
    (np.full((1, 8, 8), 64512, np.uint16), "the uint16 array is unsigned but the values look like signed two's "
                                           "complement: 64512 ≈ -1024 as int16"),
    (np.full((1, 8, 8), 1e5, np.float32), r"100\.0% of the pixels"),
    (np.full((1, 8, 8), -60000, np.int32), "far outside"),
])
def test_implausible_arrays_are_refused(array, message):
    for load in (load_series, Series.from_array, load_study):
        with pytest.raises(InputError, match=message):
            load(array)


def test_the_bad_slices_of_an_array_are_named(rng):
    hu = np.stack([phantom_hu(16, rng) for _ in range(6)])
    hu[3] *= 100
    hu[5] = 70000
    with pytest.raises(InputError, match=r"2 of 6 slice\(s\) do not hold plausible .* slice 3: .*so do slice\(s\) 5\)"):
        load_series(hu)


@pytest.mark.parametrize("case", ["int16", "float16", "padding-3024", "unit-range", "display-0-255", "metal-3%",
                                  "uint16-positive", "big-endian"])
def test_plausible_arrays_are_accepted(case, rng):
    hu = phantom_hu(32, rng)
    if case == "int16":
        arr = hu.astype(np.int16)
    elif case == "float16":
        arr = hu.astype(np.float16)
    elif case == "padding-3024":
        arr = np.where(_disc_mask(32), -3024, hu)
    elif case == "unit-range":
        arr = rng.uniform(0, 1, (3, 32, 32))
    elif case == "display-0-255":
        arr = rng.integers(0, 256, (3, 32, 32)).astype(np.uint8)
    elif case == "metal-3%":
        arr = hu.copy()
        arr.reshape(-1)[: int(0.03 * arr.size)] = 20000
    elif case == "uint16-positive":
        arr = np.clip(hu + 1024, 0, None).astype(np.uint16)
    else:
        arr = hu.astype(">f8")
    s = load_series(arr)
    np.testing.assert_array_equal(s.hu, np.asarray(arr, np.float64).reshape(s.shape).astype(np.float32))


def test_check_hu_false_keeps_arrays_that_are_deliberately_not_hu():
    values = np.linspace(-70000, 70000, 3 * 8 * 8, dtype=np.float32).reshape(3, 8, 8)
    s = Series.from_array(values, check_hu=False)
    np.testing.assert_array_equal(s.hu, values)
    with pytest.raises(InputError, match="too large for float32"):  # never: float32 must hold them
        Series.from_array(np.full((1, 2, 2), 1e300), check_hu=False)


def test_image_slices_must_hold_plausible_hu(tmp_path, rng):
    from PIL import Image

    hu = np.maximum(phantom_hu(24, rng), -1024)  # HU + 1024 holds nothing below -1024
    for k in range(4):
        Image.fromarray((hu + 1024).astype(np.uint16)).save(tmp_path / f"{k}.png")
    # A 16-bit PNG of display values stretched to 0..65535 is not HU + 1024.
    stretched = ((hu - hu.min()) / np.ptp(hu) * 65535).astype(np.uint16)
    Image.fromarray(stretched).save(tmp_path / "4.png")
    s = load_series(tmp_path)
    assert len(s) == 4 and "implausible HU" in reasons(s)["4.png"] and "16-bit HU + 1024" in reasons(s)["4.png"]
    assert any("not plausible HU" in w for w in s.warnings)
    for k in range(4):
        (tmp_path / f"{k}.png").unlink()
    with pytest.raises(SeriesError, match="no usable"):
        load_series(tmp_path)
    # Float TIFFs are HU as stored.
    (tmp_path / "4.png").unlink()
    Image.fromarray(np.full((24, 24), 1e6, np.float32)).save(tmp_path / "1.tif")
    Image.fromarray(hu.astype(np.float32)).save(tmp_path / "2.tif")
    s = load_series(tmp_path)
    assert len(s) == 1 and "implausible HU" in reasons(s)["1.tif"]


# --- warnings -----------------------------------------------------------------------------------------------------

def _sentences(series: Series) -> None:
    for w in series.warnings:
        assert isinstance(w, str) and (w[0].isupper() or w[0].isdigit() or w.startswith("acquisition=")), w
        assert w.endswith("."), w


def test_clean_series_have_no_warnings(ct5n, chest_ct):
    assert load_series(ct5n).warnings == []
    assert load_series(chest_ct).warnings == []
    assert load_series(np.zeros((2, 4, 4))).warnings == []


@pytest.mark.parametrize("missing", [[3], [2, 5], [1, 2, 3]])
def test_irregular_gaps_are_a_warning(tmp_path, missing):
    uid = generate_uid()
    zs = [z for k, z in enumerate(np.arange(10) * 2.0) if k not in missing]
    paths = stack(tmp_path, zs, prefix="s", uid=uid)
    s = load_series(tmp_path)
    (w,) = s.warnings
    assert "irregular" in w and "slices may be missing" in w and f"median {s.spacing[0]:.4g} mm" in w
    assert s.meta["irregular_gaps"] is True
    _sentences(s)
    accounted(s, paths)


@pytest.mark.parametrize(("shift_mm_per_slice", "warned"), [(0.0, False), (0.0004, False), (0.1, True), (0.44, True),
                                                          (1.82, True)])
@pytest.mark.parametrize("axis", [0, 1])
def test_gantry_tilt_and_shear_are_a_warning(tmp_path, shift_mm_per_slice, warned, axis):
    uid = generate_uid()
    paths = []
    for k in range(12):
        position = [-80.0, -60.0, 2.5 * k]
        position[axis] += shift_mm_per_slice * k
        paths.append(write_ct(tmp_path / f"t{k:02d}.dcm", series_uid=uid, instance=k + 1, position=position))
    s = load_series(tmp_path)
    assert len(s) == 12
    tilt = [w for w in s.warnings if "tilt" in w]
    assert bool(tilt) == warned and ("tilt" in s.meta) == warned
    if warned:
        angle = math.degrees(math.atan(shift_mm_per_slice / 2.5))
        assert s.meta["tilt"]["angle_deg"] == pytest.approx(angle, abs=1e-3)
        assert s.meta["tilt"]["max_offset_mm"] == pytest.approx(11 * shift_mm_per_slice, abs=1e-3)
        assert f"about {angle:.2g}°" in tilt[0]
        _sentences(s)


def test_absurd_positions_do_not_break_the_shear_check(tmp_path):
    uid = generate_uid()
    write_ct(tmp_path / "a.dcm", series_uid=uid, instance=1, position=(1e308, -1e308, 0.0))
    write_ct(tmp_path / "b.dcm", series_uid=uid, instance=2, position=(-1e308, 1e308, 5.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow RuntimeWarning
        s = load_series(tmp_path)
    assert len(s) == 2 and "tilt" not in s.meta


def test_tilted_orientation_with_positions_along_its_normal_is_not_sheared(tmp_path):
    uid = generate_uid()
    c, s_ = math.cos(math.radians(20)), math.sin(math.radians(20))
    orientation = (1, 0, 0, 0, c, s_)  # an oblique stack, moving along its own normal: nothing to warn about
    normal = np.cross([1, 0, 0], [0, c, s_])
    for k in range(6):
        write_ct(tmp_path / f"o{k}.dcm", series_uid=uid, instance=k + 1, orientation=orientation,
                 position=list(np.array([-80.0, -60.0, 0.0]) + 3.0 * k * normal))
    s = load_series(tmp_path)
    assert len(s) == 6 and s.warnings == [] and s.spacing[0] == pytest.approx(3.0)


def test_ordering_fallbacks_are_a_warning(tmp_path, ct5n):
    uid = generate_uid()
    paths = [write_ct(tmp_path / "a" / f"{k}.dcm", z=None, series_uid=uid, instance=k + 1) for k in range(4)]
    s = load_series(tmp_path / "a")
    (w,) = s.warnings
    assert "ordered by InstanceNumber" in w and "SliceThickness" in w
    accounted(s, paths)
    # Frame order of a multi-frame file without positions.
    ds = pydicom.dcmread(paths[0])
    ds.NumberOfFrames = 3
    ds.PixelData = ds.PixelData * 3
    del ds.InstanceNumber, ds.SliceThickness
    ds.save_as(tmp_path / "mf.dcm")
    s = load_series(tmp_path / "mf.dcm")
    assert any("order of the file" in w for w in s.warnings)
    assert any("slice spacing is unknown" in w for w in s.warnings)
    _sentences(s)


def test_missing_rescale_is_a_warning_in_the_series_too(tmp_path):
    uid = generate_uid()
    paths = stack(tmp_path, [0, 5, 10], prefix="s", uid=uid, intercept=0.0)
    ds = pydicom.dcmread(paths[1])
    del ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType
    ds.save_as(paths[1])
    with pytest.warns(UserWarning, match="no RescaleSlope/RescaleIntercept"):
        s = load_series(tmp_path)
    assert any(w.startswith("1 slice of 3 has no RescaleSlope/RescaleIntercept") for w in s.warnings)
    _sentences(s)


def test_every_set_aside_kind_is_one_warning(tmp_path):
    uid = generate_uid()
    paths = (stack(tmp_path, np.arange(10) * 1.25, prefix="thin", uid=uid, thickness=1.25, acquisition=2)
             + stack(tmp_path, [0, 5], prefix="thick", uid=uid, thickness=5.0, first_instance=40)
             + stack(tmp_path, [3.0], prefix="other", uid=uid, thickness=1.25, acquisition=2, patient="PAT-9",
                     first_instance=60))
    paths.append(write_ct(tmp_path / "wrapped.dcm", z=20.0, series_uid=uid, instance=70, intercept=0.0,
                          thickness=1.25, acquisition=2, stored=_wrapped_unsigned(phantom_hu(), 0.0), signed=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing here is a Python warning: it is all in Series.warnings
        s = load_series(tmp_path)
    assert len(s) == 10
    kinds = {"PatientID": 0, "not plausible as HU": 0, "acquisitions/reconstructions": 0}
    for w in s.warnings:
        for kind in kinds:
            kinds[kind] += kind in w
    assert kinds == {"PatientID": 1, "not plausible as HU": 1, "acquisitions/reconstructions": 1}, s.warnings
    assert len(s.warnings) == 3
    _sentences(s)
    accounted(s, paths)


def test_colour_images_are_a_warning(tmp_path):
    from PIL import Image

    for k in range(3):
        Image.fromarray(np.full((8, 8, 3), 40 * k, np.uint8), "RGB").save(tmp_path / f"{k}.png")
    s = load_series(tmp_path)
    (w,) = s.warnings
    assert w.startswith("3 of 3 image slice(s) were colour or palette images")
