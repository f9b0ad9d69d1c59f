"""Fuzzing the DICOM loader with mutated and truncated bytes and absurd or missing header values.

Every outcome must be a Series (with reasons in ``skipped``) or one of medinfer's documented errors: never
another exception, a hang (hypothesis' deadline), a large allocation (tracemalloc), or HU that differ from
pixel × RescaleSlope + RescaleIntercept computed independently with pydicom.
"""

from __future__ import annotations

import io
import tempfile
import tracemalloc
import warnings
from datetime import timedelta
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.datadict import keyword_dict
from pydicom.dataelem import DataElement
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from medinfer import load_series
from medinfer.errors import MedinferError
from medinfer.samples import pydicom_ct5n

SEEDS = [p.read_bytes() for p in sorted(pydicom_ct5n().iterdir())[:2]]
MAX_ALLOCATION = 64 << 20  # the inputs are a few kB: anything near this is a runaway allocation

# Absurd, malformed or missing values of the attributes the loader relies on (None deletes the attribute).
EDITS = [
    ("Rows", 0), ("Rows", 65535), ("Columns", 65535), ("Columns", 1), ("Rows", None), ("Columns", None),
    ("NumberOfFrames", "1000000000"), ("NumberOfFrames", "0"), ("NumberOfFrames", "-3"), ("NumberOfFrames", "2"),
    ("NumberOfFrames", "x"), ("BitsAllocated", 0), ("BitsAllocated", 7), ("BitsAllocated", 64),
    ("BitsAllocated", 8), ("BitsAllocated", None), ("BitsStored", 40), ("BitsStored", 0), ("PixelRepresentation", 2),
    ("PixelRepresentation", 0), ("SamplesPerPixel", 0), ("SamplesPerPixel", 3), ("PhotometricInterpretation", "RGB"),
    ("PhotometricInterpretation", None), ("RescaleSlope", "nan"), ("RescaleSlope", "1e308"), ("RescaleSlope", "0"),
    ("RescaleSlope", "abc"), ("RescaleSlope", "-1e-300"), ("RescaleSlope", "2.5"), ("RescaleSlope", None),
    ("RescaleIntercept", "inf"), ("RescaleIntercept", "1e300"), ("RescaleIntercept", "-3000.5"),
    ("RescaleIntercept", None), ("RescaleType", "OD"), ("RescaleType", "HU"),
    ("ImagePositionPatient", ["a", "b"]), ("ImagePositionPatient", ["nan", "0", "0"]),
    ("ImagePositionPatient", None), ("ImagePositionPatient", ["1e308", "-1e308", "0"]),
    ("ImageOrientationPatient", ["0"] * 6), ("ImageOrientationPatient", ["1", "0", "0", "1", "0", "0"]),
    ("ImageOrientationPatient", ["1"]), ("ImageOrientationPatient", None), ("PixelSpacing", ["0", "0"]),
    ("PixelSpacing", ["-1", "2"]), ("PixelSpacing", None), ("SliceThickness", "-5"), ("InstanceNumber", "1e9"),
    ("InstanceNumber", None), ("Modality", ""), ("Modality", "MR"), ("Modality", None),
    ("SOPClassUID", "1.2.3.4"), ("SOPClassUID", None), ("SeriesInstanceUID", None), ("SeriesInstanceUID", ""),
    ("PixelData", None), ("PixelData", b"\x00\x01"), ("PixelPaddingValue", None),
]


def _mutate(seed: bytes, edits, flips, cut) -> bytes:
    if edits:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(seed))
            for keyword, value in edits:
                if value is None:
                    if keyword in ds:
                        delattr(ds, keyword)
                    continue
                try:
                    setattr(ds, keyword, value)
                except ValueError:  # pydicom refuses a malformed number: store the text under a string VR
                    ds.add(DataElement(keyword_dict[keyword], "LO", value))
            buffer = io.BytesIO()
            try:
                ds.save_as(buffer)
                seed = buffer.getvalue()
            except Exception:  # some edits cannot be encoded at all; then fuzz the bytes only
                pass
    data = bytearray(seed)
    for position, value in flips:
        data[position % len(data)] = value
    return bytes(data[:cut]) if cut is not None else bytes(data)


def _independent_hu(path: str) -> np.ndarray:
    """HU of a slice the loader used, recomputed from pydicom's reading of the same bytes."""
    file, _, frame = path.partition("[frame ")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(file, force=True)
        if "TransferSyntaxUID" not in ds.file_meta:  # damaged meta: the encoding the parser found applies
            implicit, little = ds.original_encoding
            ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                              ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        pixels = ds.pixel_array
    if frame:
        pixels = pixels.reshape(-1, *pixels.shape[-2:])[int(frame.rstrip("]")) - 1]
    slope = float(ds.get("RescaleSlope", 1.0) if ds.get("RescaleSlope") not in (None, "") else 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) if ds.get("RescaleIntercept") not in (None, "") else 0.0)
    return (pixels.astype(np.float64) * slope + intercept).astype(np.float32)


file_strategy = st.tuples(
    st.integers(0, len(SEEDS) - 1),
    st.lists(st.sampled_from(EDITS), max_size=4),
    st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=6),
    st.one_of(st.none(), st.integers(0, 3000)),
)


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=500, deadline=timedelta(seconds=5), suppress_health_check=[HealthCheck.too_slow])
@given(files=st.lists(file_strategy, min_size=1, max_size=3))
def test_mutated_dicom_never_crashes_or_lies(files):
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, (seed, edits, flips, cut) in enumerate(files):
            paths.append(Path(tmp) / f"f{i}.dcm")
            paths[-1].write_bytes(_mutate(SEEDS[seed], edits, flips, cut))
        tracemalloc.start()
        try:
            series = load_series(paths)
        except MedinferError:
            return
        finally:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        assert peak < MAX_ALLOCATION, f"loader allocated {peak} bytes for {len(paths)} small files"
        used = {f.partition("[frame ")[0] for f in series.files}
        assert used | {p for p, _ in series.skipped} >= {str(p) for p in paths}, "a file was dropped silently"
        assert np.all(np.isfinite(series.hu))
        for i, f in enumerate(series.files):
            np.testing.assert_array_equal(series.hu[i], _independent_hu(f), err_msg=f)
