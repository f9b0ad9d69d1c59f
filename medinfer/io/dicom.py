"""Reading DICOM files: which ones are CT image slices, and the frames (pixels + geometry) they hold.

Two phases, so that a folder of many series decodes only the pixels of the series asked for:
:func:`read_header` classifies a file from its header (no pixel data), :func:`read_frames` decodes it.
Each returns a reason string instead of raising for a file that is not a usable CT slice; the reason
names what is wrong and, for compressed pixel data without a decoder, the packages that would decode it.

Every file is read into memory whole (bounded by :data:`MAX_FILE_BYTES`) and parsed from there, so a
header claiming a gigantic element length cannot make the parser allocate more than the file holds.
Rows, Columns, NumberOfFrames and the bit depth are checked against :data:`MAX_SIDE`,
:data:`MAX_FRAMES` and :data:`MAX_PIXELS` before anything is decoded. A deflated data set (transfer
syntax 1.2.840.10008.1.2.1.99) is inflated by medinfer, with a cap derived from what its header declares
(see :data:`DEFLATE_HEADER_BYTES`), never whole by pydicom. Only regular files are opened: a FIFO, socket
or device gets "not a regular file" as its reason.
"""

from __future__ import annotations

import copy
import io
import math
import mmap
import os
import stat
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO, cast

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.multival import MultiValue
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from medinfer.io.select import SELECTION_TAGS, series_attributes, source_keywords

MAX_FILE_BYTES = 2 << 30
MAX_SIDE = 16384  # Rows / Columns
MAX_FRAMES = 65536
MAX_PIXELS = 1 << 30  # per file, all frames
# A compressed file may not claim to decode to more than this many times its encoded size (a bomb guard
# that only applies above MAX_PLAIN_DECODE bytes; real CT compresses 2-10×).
MAX_COMPRESSION_RATIO = 200
MAX_PLAIN_DECODE = 64 << 20

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
CT_SOP_CLASSES = {
    CT_IMAGE_STORAGE: "CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT Image Storage",
}
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
# Padding pixels (outside the reconstructed field of view) become air: their stored value is often
# -2000 or -3024 HU after rescale, which would bleed into neighbouring pixels when resizing.
PADDING_HU = -1024.0
# Beyond these magnitudes a slope is a corrupt header, not a CT calibration (scanners write 1, sometimes 0.5..2).
MIN_SLOPE, MAX_SLOPE = 1e-4, 1e4
# RescaleType values that mean Hounsfield units for a CT image ("US": unspecified, the CT IOD's default).
HU_RESCALE_TYPES = ("HU", "US", "")


class Unusable(Exception):
    """A file or frame that is not a usable CT slice; the message is the reason given in ``skipped``."""


@dataclass(frozen=True)
class Header:
    """What :func:`read_header` learns about a CT image file."""

    path: str
    series_uid: str
    description: str
    series_number: int | None
    frames: int
    # The pixel geometry the header declares (None where absent or malformed; read_frames then says why),
    # so that a series' decoded size is known before any pixel is decoded.
    rows: int | None = None
    columns: int | None = None
    bits_allocated: int | None = None
    # The file's attributes for series selection and reporting (medinfer.io.select.series_attributes).
    attributes: dict = field(default_factory=dict, hash=False)

    @property
    def pixel_count(self) -> int:
        """Rows × Columns × frames as declared, 0 when unknown."""
        return (self.rows or 0) * (self.columns or 0) * self.frames


@dataclass
class Frame:
    """One 2-D slice: stored pixels and what places it in its series."""

    path: str  # the file, "file[frame k]" for frame k (1-based) of a multi-frame file
    file: str
    frame_index: int  # 0-based within its file
    pixels: np.ndarray  # (rows, cols) stored values
    slope: float
    intercept: float
    rescale_type: str
    rescale_assumed: bool  # no RescaleSlope/Intercept in the file: identity used
    padded: int  # padding pixels replaced by PADDING_HU
    position: np.ndarray | None  # ImagePositionPatient (3,)
    orientation: np.ndarray | None  # ImageOrientationPatient (6,)
    pixel_spacing: tuple[float, float] | None  # (row, col) mm
    thickness: float | None
    spacing_between: float | None
    instance: int | None  # InstanceNumber, or InStackPositionNumber for frames
    series_uid: str
    info: dict  # series-level attributes for Series.meta
    # Who and which acquisition/reconstruction: assemble.py never merges other patients' slices and splits
    # a series by acquisition (SliceThickness is ``thickness`` above).
    patient_id: str = ""
    acquisition_number: int | None = None  # AcquisitionNumber; per frame FrameAcquisitionNumber
    image_type: tuple[str, ...] = ()  # ImageType; per frame FrameType
    kernel: str = ""  # ConvolutionKernel, its values joined by "\\"


# What read_header needs; parsing only these makes the first pass over a large folder cheap.
# SharedFunctionalGroupsSequence: where Enhanced CT keeps SliceThickness, ImageOrientationPatient ... for
# selection (small; the per-frame groups, which can be large, are not read).
HEADER_TAGS = ["SOPClassUID", "Modality", "SeriesInstanceUID", "SeriesDescription", "SeriesNumber", "NumberOfFrames",
               "Rows", "Columns", "BitsAllocated", "SharedFunctionalGroupsSequence"]


@lru_cache(maxsize=32)
def _header_tags(tags: tuple[str, ...]) -> tuple[list[str], tuple[str, ...]]:
    """(what to parse, which attributes to report) for read_header's ``tags``: validated once per set of
    tags, not per file (an unknown keyword raises InputError here rather than failing every file)."""
    keywords = tuple(dict.fromkeys((*SELECTION_TAGS, *tags)))
    return list(dict.fromkeys((*HEADER_TAGS, *source_keywords(keywords)))), keywords


def file_kind(mode: int) -> str:
    """What a file system entry that is neither a regular file nor a folder is (for ``skipped`` reasons)."""
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISDIR(mode):
        return "a folder"
    return f"a special file (mode {stat.filemode(mode)})"


def _check_size(size: int) -> None:
    if size == 0:
        raise Unusable("empty file")
    if size > MAX_FILE_BYTES:
        raise Unusable(f"file of {size} bytes is larger than the {MAX_FILE_BYTES >> 30} GiB medinfer reads")


def _map_file(path: Path) -> mmap.mmap:
    """The file's bytes, memory-mapped. Only a regular file is ever opened: opening a FIFO blocks until
    someone writes to it, and a device such as /dev/zero never ends."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise Unusable(f"cannot read the file: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise Unusable(f"not a regular file: {file_kind(info.st_mode)}")
    _check_size(info.st_size)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)  # O_NONBLOCK: should the path have become a FIFO since, open returns at once
    except OSError as exc:
        raise Unusable(f"cannot read the file: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)  # what was opened, which may not be what was checked a moment ago
        if not stat.S_ISREG(info.st_mode):
            raise Unusable(f"not a regular file: {file_kind(info.st_mode)}")
        _check_size(info.st_size)
        return mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as exc:
        raise Unusable(f"cannot read the file: {getattr(exc, 'strerror', None) or exc}") from None
    finally:
        os.close(fd)


def _read_dataset(path: Path, stop_before_pixels: bool, tags: list[str] | None = None) -> Dataset:
    data = _map_file(path)
    has_marker = len(data) >= 132 and data[128:132] == b"DICM"
    # Parsed from a memory map: a header pass touches only the pages before the pixel data, and a value
    # claiming more bytes than the file holds reads only what is there (a file object's read(n) would
    # allocate all n bytes first).
    with data:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pydicom warns about every odd value; we judge them ourselves
                deflated = _deflated_file_meta(data, has_marker)
                if deflated is not None:
                    ds = _read_deflated(data, *deflated, stop_before_pixels=stop_before_pixels, tags=tags)
                else:
                    # Files without the 'DICM' marker may still be DICOM (no preamble, ACR-NEMA style): force,
                    # then require real DICOM attributes below.
                    ds = pydicom.dcmread(data, force=not has_marker, stop_before_pixels=stop_before_pixels,
                                         specific_tags=tags)
                if not has_marker and "SOPClassUID" not in ds and "Modality" not in ds:
                    raise Unusable("not a DICOM file (no 'DICM' marker and no DICOM header)")
                ds.ensure_file_meta()
                return ds
        except Unusable:
            raise
        except Exception as exc:  # pydicom raises many types (EOFError, OSError, ValueError, ...) on bad bytes
            what = "unreadable DICOM file" if has_marker else "not a DICOM file"
            raise Unusable(f"{what} ({type(exc).__name__}: {short_reason(exc)})") from None


# Deflated Explicit VR Little Endian: everything after the file meta is one raw deflate stream, which
# pydicom inflates whole, and twice over for a header pass and a pixel pass, before anything can be
# checked (deflate reaches 1032:1: a 1 MB file becomes 1 GiB, 20 MB become 20 GiB). medinfer inflates it
# itself, with a cap:
#
# * what precedes PixelData (the header) may inflate to DEFLATE_HEADER_BYTES at most. It is inflated in
#   doubling steps from 1 MiB, so a header pass over an ordinary slice inflates about 1 MiB;
# * then the whole data set to: header + the pixel data its header declares (Rows × Columns ×
#   NumberOfFrames × SamplesPerPixel × BitsAllocated / 8, each bounded as for any file: MAX_SIDE,
#   MAX_FRAMES, MAX_PIXELS) + DEFLATE_TRAILER_BYTES for elements after the pixel data. One legitimate
#   512 × 512 16-bit slice gets about header + 0.5 MiB + 1 MiB; the largest slice medinfer reads
#   (16384² × 32 bits) 1 GiB + header + 1 MiB;
# * and never more than MAX_FILE_BYTES (the most a plain file may hold), nor, above MAX_PLAIN_DECODE, more
#   than MAX_COMPRESSION_RATIO times the compressed size (the rule for compressed pixel data).
#
# Beyond the cap the file is skipped, with the cap and where it comes from in the reason.
DEFLATE_HEADER_BYTES = 64 << 20
DEFLATE_TRAILER_BYTES = 1 << 20
_DEFLATE_FIRST_STEP = 1 << 20
_DEFLATE_INPUT_CHUNK = 1 << 20
_PIXEL_TAGS = (b"\xe0\x7f\x10\x00", b"\xe0\x7f\x08\x00", b"\xe0\x7f\x09\x00")  # (7FE0,0010/0008/0009), LE


def byte_size(n: float) -> str:
    """A byte count for messages: ``"812 bytes"``, ``"1.5 MiB"``, ``"2.00 GiB"``."""
    if n < 1 << 20:
        return f"{int(n)} bytes"
    return f"{n / (1 << 20):.1f} MiB" if n < 1 << 30 else f"{n / (1 << 30):.2f} GiB"


_DEFLATED_UID = DeflatedExplicitVRLittleEndian.encode("ascii")  # b"1.2.840.10008.1.2.1.99"
_META_SCAN = 8 << 10  # the file meta of an ordinary file takes a few hundred bytes
_META_SCAN_MAX = 1 << 20


def _meta_scan_bytes(data: mmap.mmap, offset: int) -> int:
    """How far from ``offset`` to look for the transfer syntax UID: the file meta group as its
    (0002,0000) group length gives it (explicit VR little endian), and never less than ``_META_SCAN``
    bytes (the group length may be missing or wrong) nor more than ``_META_SCAN_MAX``."""
    head = data[offset:offset + 12]
    if len(head) == 12 and head[:6] == b"\x02\x00\x00\x00UL":
        return min(max(12 + int.from_bytes(head[8:12], "little"), _META_SCAN), _META_SCAN_MAX)
    return _META_SCAN


def _deflated_file_meta(data: mmap.mmap, has_marker: bool):
    """``(file_meta, offset of the deflate stream)`` when the file meta says Deflated Explicit VR Little
    Endian, else None (the file is then read as usual, and any problem with its meta reported there)."""
    offset = 128 + 4 if has_marker else 0
    if data[offset:offset + 2] != b"\x02\x00":  # no file meta group
        return None
    if data.find(_DEFLATED_UID, offset, offset + _meta_scan_bytes(data, offset)) < 0:
        return None  # the common case: the UID is nowhere in the file meta, no need to parse it
    try:
        from pydicom.filereader import _read_file_meta_info, read_preamble  # private: None where it is gone

        fp = cast(BinaryIO, data)
        read_preamble(fp, force=not has_marker)
        meta = _read_file_meta_info(fp)
        start = data.tell()
        syntax = meta.get("TransferSyntaxUID")
    except Exception:
        return None
    finally:
        data.seek(0)  # where pydicom starts reading a file that is not deflated
    return (meta, start) if syntax == DeflatedExplicitVRLittleEndian else None


class _Inflater:
    """A raw deflate stream, inflated on demand into a buffer that starts with ``head``."""

    def __init__(self, data: mmap.mmap, start: int, head: bytes):
        self._z = zlib.decompressobj(-zlib.MAX_WBITS)
        self._data, self._pos, self._pending = data, start, b""
        self.buffer = io.BytesIO()
        self.buffer.write(head)
        self.head = len(head)
        self.size = 0  # bytes inflated so far
        self.finished = False  # the stream ended (or the file did, in the middle of it)

    def inflate_to(self, limit: int) -> bool:
        """Inflates until more than ``limit`` bytes are out or the stream ends; True when it holds more."""
        self.buffer.seek(0, io.SEEK_END)
        while not self.finished and self.size <= limit:
            if not self._pending and self._pos < len(self._data):
                self._pending = self._data[self._pos:self._pos + _DEFLATE_INPUT_CHUNK]
                self._pos += len(self._pending)
            try:
                out = self._z.decompress(self._pending, limit + 1 - self.size)
            except zlib.error as exc:
                raise Unusable(f"deflated data set is corrupt (zlib: {exc})") from None
            self._pending = self._z.unconsumed_tail
            self.buffer.write(out)
            self.size += len(out)
            if self._z.eof or (not out and not self._pending and self._pos >= len(self._data)):
                self.finished = True
        return self.size > limit

    def parse(self, stop_before_pixels: bool, tags: list[str] | None) -> tuple[Dataset, int]:
        """The data set inflated so far, and the buffer position where parsing stopped."""
        self.buffer.seek(0)
        ds = pydicom.dcmread(self.buffer, stop_before_pixels=stop_before_pixels, specific_tags=tags)
        return ds, self.buffer.tell()


def _read_deflated(data: mmap.mmap, meta, start: int, *, stop_before_pixels: bool,
                   tags: list[str] | None) -> Dataset:
    plain = copy.deepcopy(meta)
    plain.TransferSyntaxUID = ExplicitVRLittleEndian  # what the inflated bytes are: pydicom must not inflate again
    head = DicomBytesIO()
    head.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(head, plain, enforce_standard=False)
    inflater = _Inflater(data, start, head.getvalue())
    compressed = len(data) - start
    ceiling = min(MAX_FILE_BYTES, max(MAX_PLAIN_DECODE, MAX_COMPRESSION_RATIO * compressed))
    header_cap = min(DEFLATE_HEADER_BYTES, ceiling)
    step = _DEFLATE_FIRST_STEP
    while True:  # the header, in doubling steps, until PixelData or the end of the stream
        step = min(step, header_cap)
        more = inflater.inflate_to(step)
        if not more:
            break
        ds, stop = inflater.parse(stop_before_pixels=True, tags=tags if stop_before_pixels else None)
        inflater.buffer.seek(stop)
        if inflater.buffer.read(4) in _PIXEL_TAGS:
            break
        if step >= header_cap:
            _classify_meta(ds, meta)
            raise Unusable(f"deflated data set: no pixel data within the first {byte_size(header_cap)} inflated "
                           f"(the most medinfer inflates for a header)")
        step *= 2
    if more:
        ds.file_meta = meta
        if stop_before_pixels:
            return ds
        _classify(ds)
        rows, cols, frames, samples, bits = _declared_geometry(ds)
        declared = rows * cols * frames * samples * bits // 8
        if declared > MAX_PLAIN_DECODE and declared > MAX_COMPRESSION_RATIO * compressed:
            raise Unusable(f"{compressed} bytes of deflated data claim to inflate to {declared} bytes of pixel data")
        header = stop - inflater.head
        cap = min(ceiling, header + declared + DEFLATE_TRAILER_BYTES)
        if inflater.inflate_to(cap):
            why = (f"{byte_size(header)} of header + {rows}×{cols} × {frames} frame(s) × {samples * bits // 8} "
                   f"B of pixel data as declared + {byte_size(DEFLATE_TRAILER_BYTES)} for trailing elements")
            if cap < header + declared + DEFLATE_TRAILER_BYTES:
                why = (f"{MAX_COMPRESSION_RATIO}× its {compressed} compressed bytes" if ceiling < MAX_FILE_BYTES
                       else f"the {MAX_FILE_BYTES >> 30} GiB medinfer reads from one file")
            raise Unusable(f"deflated data set inflates beyond {byte_size(cap)} (the cap for this file: {why})")
    ds, _ = inflater.parse(stop_before_pixels=stop_before_pixels, tags=tags)
    inflater.buffer.close()  # the values are parsed out (no deferred reads): free the inflated copy
    ds.buffer = None
    ds.file_meta = meta  # says Deflated again, for meta["transfer_syntax"]; the pixels are native
    return ds


def _classify_meta(ds: Dataset, meta) -> None:
    ds.file_meta = meta
    _classify(ds)


def short_reason(exc: BaseException, limit: int = 160) -> str:
    """An exception's message on one line, cut to ``limit`` characters (for ``skipped`` reasons)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _get(ds: Dataset, keyword: str, default=None):
    """An attribute's value, or ``default`` when absent or empty."""
    value = ds.get(keyword)
    return default if value is None or value == "" else value


def _text(ds: Dataset, keyword: str) -> str:
    return str(_get(ds, keyword, "")).strip()


def _int(value, name: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise Unusable(f"{name} {value!r} is not a number") from None
    if not math.isfinite(number) or number != int(number):
        raise Unusable(f"{name} {value!r} is not an integer")
    return int(number)


def _float(value, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise Unusable(f"{name} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise Unusable(f"{name} {value!r} is not finite")
    return number


def _optional_int(ds: Dataset | None, keyword: str) -> int | None:
    value = None if ds is None else _get(ds, keyword)
    try:
        return None if value is None else _int(value, keyword)
    except Unusable:
        return None  # ordering hints only: a broken one is treated as missing


def _vector(ds: Dataset | None, keyword: str, length: int) -> np.ndarray | None:
    """A numeric multi-value attribute, or None when absent or malformed."""
    value = None if ds is None else _get(ds, keyword)
    if value is None:
        return None
    items = list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
    try:
        arr = np.array([float(v) for v in items], np.float64)
    except (TypeError, ValueError):
        return None
    return arr if arr.shape == (length,) and np.all(np.isfinite(arr)) else None


def _sop_name(sop: str) -> str:
    if sop in CT_SOP_CLASSES:
        return CT_SOP_CLASSES[sop]
    name = UID(sop).name if sop else ""
    return name if name and name != sop else (sop or "no SOP class")


def _classify(ds: Dataset) -> None:
    """Raises Unusable unless the dataset is a CT image."""
    sop = _text(ds, "SOPClassUID")
    modality = _text(ds, "Modality").upper()
    if DICOMDIR_SOP_CLASS in (sop, _text(ds.file_meta, "MediaStorageSOPClassUID")):
        raise Unusable("DICOMDIR (an index of files, not an image)")
    if not sop and not modality:
        raise Unusable("DICOM file with no SOPClassUID and no Modality: damaged, or not an image")
    if sop not in CT_SOP_CLASSES and not (not sop and modality == "CT"):
        kind = f"{modality} object" if modality else "object"
        raise Unusable(f"{kind} ({_sop_name(sop)}), not a CT image")


def read_header(path: str | Path, tags: Sequence[str] = ()) -> Header | str:
    """Classifies a file from its header. Returns a Header for a CT image, else the reason it is unusable.
    ``Header.attributes`` holds :data:`~medinfer.io.select.SELECTION_TAGS` and ``tags`` (DICOM keywords, or
    computed ones such as Orientation) as far as the file has them."""
    path = Path(path)
    parse, keywords = _header_tags(tuple(tags))
    try:
        ds = _read_dataset(path, stop_before_pixels=True, tags=parse)
        _classify(ds)
        return Header(path=str(path), series_uid=_text(ds, "SeriesInstanceUID"),
                      description=_text(ds, "SeriesDescription"),
                      series_number=_optional_int(ds, "SeriesNumber"),
                      frames=max(_optional_int(ds, "NumberOfFrames") or 1, 1),
                      rows=_optional_int(ds, "Rows"), columns=_optional_int(ds, "Columns"),
                      bits_allocated=_optional_int(ds, "BitsAllocated"),
                      attributes=series_attributes(ds, keywords))
    except Unusable as exc:
        return str(exc)
    except Exception as exc:  # deferred value conversion can fail on any malformed element
        return f"unreadable DICOM header ({type(exc).__name__}: {short_reason(exc)})"


def _transfer_syntax(ds: Dataset) -> UID:
    ts = _get(ds.file_meta, "TransferSyntaxUID")
    if ts:
        return UID(str(ts))
    # No file meta (forced read): the encoding the parser detected.
    if ds.original_encoding[0]:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if ds.original_encoding[1] else ExplicitVRBigEndian


def _declared_geometry(ds: Dataset) -> tuple[int, int, int, int, int]:
    """(rows, cols, frames, samples, bits allocated) from the header, each within what medinfer reads."""
    rows = _int(_get(ds, "Rows"), "Rows")
    cols = _int(_get(ds, "Columns"), "Columns")
    frames = _int(_get(ds, "NumberOfFrames", 1), "NumberOfFrames")
    if not (1 <= rows <= MAX_SIDE and 1 <= cols <= MAX_SIDE):
        raise Unusable(f"image size {rows}×{cols} outside 1..{MAX_SIDE}")
    if not 1 <= frames <= MAX_FRAMES:
        raise Unusable(f"NumberOfFrames {frames} outside 1..{MAX_FRAMES}")
    if rows * cols * frames > MAX_PIXELS:
        raise Unusable(f"{frames} frame(s) of {rows}×{cols} exceed the {MAX_PIXELS} pixels medinfer reads from a file")
    samples = _int(_get(ds, "SamplesPerPixel", 1), "SamplesPerPixel")
    if samples != 1:
        raise Unusable(f"SamplesPerPixel {samples}: a colour image, not a CT slice")
    bits = _int(_get(ds, "BitsAllocated"), "BitsAllocated")
    if bits not in (8, 16, 32):
        raise Unusable(f"BitsAllocated {bits}: CT slices use 8, 16 or 32")
    return rows, cols, frames, samples, bits


def _check_pixel_module(ds: Dataset, ts: UID) -> tuple[int, int, int]:
    """Validates the image pixel attributes before decoding; returns (rows, cols, frames)."""
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise Unusable("float pixel data (FloatPixelData), which CT images do not use")
        raise Unusable("no pixel data")
    rows, cols, frames, _, bits = _declared_geometry(ds)
    photometric = _text(ds, "PhotometricInterpretation").upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise Unusable(f"PhotometricInterpretation {photometric or 'missing'}: not a greyscale CT slice")
    stored = _int(_get(ds, "BitsStored", bits), "BitsStored")
    if not 1 <= stored <= bits:
        raise Unusable(f"BitsStored {stored} outside 1..BitsAllocated ({bits})")
    representation = _int(_get(ds, "PixelRepresentation", 0), "PixelRepresentation")
    if representation not in (0, 1):
        raise Unusable(f"PixelRepresentation {representation}: must be 0 (unsigned) or 1 (signed)")
    expected = rows * cols * frames * bits // 8
    encoded = len(ds.PixelData)
    if ts.is_compressed:
        from pydicom.pixels import get_decoder

        try:
            decoder = get_decoder(ts)
        except NotImplementedError:
            raise Unusable(f"pixel data compressed as {ts.name} ({ts}), which pydicom cannot decode") from None
        if not decoder.is_available:
            options = "; ".join(decoder.missing_dependencies)
            raise Unusable(f"pixel data compressed as {ts.name} and no decoder is installed; any of these "
                           f"would decode it: {options}")
        if expected > MAX_PLAIN_DECODE and expected > MAX_COMPRESSION_RATIO * encoded:
            raise Unusable(f"{encoded} bytes of {ts.name} data claim to decode to {expected} bytes")
    elif ds["PixelData"].is_undefined_length:
        raise Unusable(f"encapsulated (compressed) pixel data, but the transfer syntax is {ts.name}")
    elif encoded < expected:
        raise Unusable(f"truncated pixel data: {encoded} of {expected} bytes")
    return rows, cols, frames


def _rescale(groups: list[Dataset | None]) -> tuple[float, float, str, bool]:
    """Slope, intercept, type and whether they were assumed, from the first dataset that has them."""
    for g in groups:
        if g is not None and ("RescaleSlope" in g or "RescaleIntercept" in g):
            slope = _float(_get(g, "RescaleSlope", 1.0), "RescaleSlope")
            intercept = _float(_get(g, "RescaleIntercept", 0.0), "RescaleIntercept")
            kind = _text(g, "RescaleType").upper()
            if slope == 0:
                raise Unusable("RescaleSlope is 0: every pixel would have the same HU")
            if not MIN_SLOPE <= abs(slope) <= MAX_SLOPE:
                raise Unusable(f"RescaleSlope {slope:g} is outside ±{MIN_SLOPE:g}..{MAX_SLOPE:g}: a corrupt header")
            if kind not in HU_RESCALE_TYPES:
                raise Unusable(f"RescaleType {kind!r}: the rescaled values are not Hounsfield units")
            return slope, intercept, kind or "HU", False
    return 1.0, 0.0, "HU", True


def _item(groups: Dataset | None, sequence: str) -> Dataset | None:
    if groups is None:
        return None
    seq = _get(groups, sequence)
    return seq[0] if seq else None


def _pad_mask(ds: Dataset, pixels: np.ndarray) -> np.ndarray | None:
    pad = _get(ds, "PixelPaddingValue")
    if not isinstance(pad, int):  # absent, or a malformed (multi-valued, undecoded) value
        return None
    limit = _get(ds, "PixelPaddingRangeLimit")
    low, high = (pad, pad) if not isinstance(limit, int) else (min(pad, limit), max(pad, limit))
    mask = (pixels >= low) & (pixels <= high)
    return mask if mask.any() else None


def _replace_padding(pixels: np.ndarray, mask: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """Sets padding pixels to the stored value of PADDING_HU; exact when it is an integer the dtype holds,
    otherwise the slice becomes float32."""
    value = (PADDING_HU - intercept) / slope
    if pixels.dtype.kind in "iu":
        info = np.iinfo(pixels.dtype)
        if value == round(value) and info.min <= value <= info.max:
            pixels = pixels.copy()
            pixels[mask] = int(round(value))
            return pixels
    pixels = pixels.astype(np.float32)
    pixels[mask] = value
    return pixels


def _series_info(ds: Dataset, ts: UID) -> dict:
    return {
        "modality": _text(ds, "Modality").upper() or "CT",
        "description": _text(ds, "SeriesDescription"),
        "series_number": _optional_int(ds, "SeriesNumber"),
        "study_uid": _text(ds, "StudyInstanceUID"),
        "frame_of_reference_uid": _text(ds, "FrameOfReferenceUID"),
        "sop_class": _sop_name(_text(ds, "SOPClassUID")),
        "transfer_syntax": ts.name,
        "manufacturer": _text(ds, "Manufacturer"),
    }


def read_frames(path: str | Path) -> tuple[list[Frame], list[tuple[str, str]]]:
    """Decodes a CT image file into frames. Returns ``(frames, skipped)``: a file-level problem gives no
    frames and one skipped entry; a multi-frame file may lose single frames (e.g. a bad rescale)."""
    path = Path(path)
    try:
        return _read_frames(path)
    except Unusable as exc:
        return [], [(str(path), str(exc))]
    except Exception as exc:  # malformed values surface lazily, from any element access
        return [], [(str(path), f"unreadable DICOM file ({type(exc).__name__}: {short_reason(exc)})")]


def _read_frames(path: Path) -> tuple[list[Frame], list[tuple[str, str]]]:
    ds = _read_dataset(path, stop_before_pixels=False)
    _classify(ds)
    ts = _transfer_syntax(ds)
    ds.file_meta.TransferSyntaxUID = ts
    rows, cols, n_frames = _check_pixel_module(ds, ts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pixels = ds.pixel_array
    pixels = pixels.reshape(n_frames, rows, cols)
    if not pixels.dtype.isnative:
        pixels = pixels.astype(pixels.dtype.newbyteorder("="))
    info = _series_info(ds, ts)
    series_uid = _text(ds, "SeriesInstanceUID")
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    per_frame = _get(ds, "PerFrameFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) != n_frames:
        raise Unusable(f"PerFrameFunctionalGroupsSequence has {len(per_frame)} items for {n_frames} frames")
    frames, skipped = [], []
    for k in range(n_frames):
        name = str(path) if n_frames == 1 else f"{path}[frame {k + 1}]"
        own = per_frame[k] if per_frame is not None else None
        try:
            frames.append(_frame(ds, own, shared, pixels[k], name, str(path), k, series_uid, info))
        except Unusable as exc:
            skipped.append((name, str(exc)))
    return frames, skipped


def _frame(ds: Dataset, own: Dataset | None, shared: Dataset | None, pixels: np.ndarray, name: str, file: str,
           k: int, series_uid: str, info: dict) -> Frame:
    # Enhanced CT keeps geometry and rescale in functional groups (per-frame first, then shared); classic
    # CT at the top level.
    def group(sequence: str) -> list[Dataset | None]:
        return [_item(own, sequence), _item(shared, sequence)]

    slope, intercept, kind, assumed = _rescale([*group("PixelValueTransformationSequence"), ds])
    with np.errstate(over="ignore", invalid="ignore"):
        extremes = np.array([pixels.min(), pixels.max()], np.float64) * slope + intercept
    if not np.all(np.abs(extremes) <= 1e6):
        raise Unusable(f"RescaleSlope {slope:g} and RescaleIntercept {intercept:g} give implausible HU "
                       f"({extremes[0]:.4g} to {extremes[1]:.4g})")
    mask = _pad_mask(ds, pixels)
    padded = 0
    if mask is not None:
        padded = int(mask.sum())
        pixels = _replace_padding(pixels, mask, slope, intercept)
    plane_position = [*group("PlanePositionSequence"), ds]
    plane_orientation = [*group("PlaneOrientationSequence"), ds]
    measures = [*group("PixelMeasuresSequence"), ds]
    position = next((v for g in plane_position if (v := _vector(g, "ImagePositionPatient", 3)) is not None), None)
    orientation = next((v for g in plane_orientation if (v := _vector(g, "ImageOrientationPatient", 6)) is not None),
                       None)
    if orientation is not None and not _valid_orientation(orientation):
        orientation = None
    spacing = next((v for g in measures if (v := _vector(g, "PixelSpacing", 2)) is not None and np.all(v > 0)), None)
    thickness = next((v[0] for g in measures if (v := _vector(g, "SliceThickness", 1)) is not None and v[0] > 0), None)
    between = next((v[0] for g in measures if (v := _vector(g, "SpacingBetweenSlices", 1)) is not None and v[0] > 0),
                   None)
    # A multi-frame file's InstanceNumber is the file's, not its frames' order: frames use InStackPositionNumber.
    if own is None and name == file:
        instance = _optional_int(ds, "InstanceNumber")
    else:
        instance = _optional_int(_item(own, "FrameContentSequence"), "InStackPositionNumber")
    return Frame(path=name, file=file, frame_index=k, pixels=pixels, slope=slope, intercept=intercept,
                 rescale_type=kind, rescale_assumed=assumed, padded=padded, position=position,
                 orientation=orientation, pixel_spacing=None if spacing is None else (float(spacing[0]),
                                                                                    float(spacing[1])),
                 thickness=None if thickness is None else float(thickness),
                 spacing_between=None if between is None else float(between), instance=instance,
                 series_uid=series_uid, info=info, **_acquisition(ds, own, shared))


def _acquisition(ds: Dataset, own: Dataset | None, shared: Dataset | None) -> dict:
    """PatientID and the attributes that tell acquisitions/reconstructions apart, per frame where Enhanced CT
    keeps them in functional groups (FrameContentSequence, CTImageFrameTypeSequence, CTReconstructionSequence)."""
    def values(v) -> tuple[str, ...]:
        items = list(v) if isinstance(v, (list, tuple, MultiValue)) else [] if v is None else [v]
        return tuple(t for t in (str(x).strip() for x in items) if t)

    def first(sequence: str, keyword: str):
        for g in (_item(own, sequence), _item(shared, sequence)):
            if g is not None and (v := _get(g, keyword)) is not None:
                return v
        return _get(ds, keyword)

    number = _optional_int(_item(own, "FrameContentSequence"), "FrameAcquisitionNumber")
    frame_type = first("CTImageFrameTypeSequence", "FrameType")
    return {"patient_id": _text(ds, "PatientID"),
            "acquisition_number": number if number is not None else _optional_int(ds, "AcquisitionNumber"),
            "image_type": values(frame_type if frame_type is not None else _get(ds, "ImageType")),
            "kernel": "\\".join(values(first("CTReconstructionSequence", "ConvolutionKernel")))}


def _valid_orientation(iop: np.ndarray) -> bool:
    """Two unit direction cosines at a right angle (to 1e-3, as scanners round them)."""
    row, col = iop[:3], iop[3:]
    return abs(np.linalg.norm(row) - 1) < 1e-3 and abs(np.linalg.norm(col) - 1) < 1e-3 and abs(row @ col) < 1e-3
