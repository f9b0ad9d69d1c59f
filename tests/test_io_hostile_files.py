"""Hostile inputs to the loader: decompression bombs, amplification across files, and file-system traps.

* Deflate bombs (Deflated Explicit VR Little Endian): a few kB or MB that inflate to GiB must be skipped
  with the cap in the reason, without the allocation (measured with tracemalloc, and in a subprocess with
  ru_maxrss for the issue's files).
* Amplification: a series whose decoded pixels + float32 HU exceed ``max_bytes`` /
  ``MEDINFER_MAX_SERIES_BYTES`` / the memory-derived default raises SeriesTooLargeError before any pixel
  is decoded.
* Symlinks (followed, loops, dangling, diamonds), FIFOs, sockets, devices, unreadable folders (as an
  unprivileged user) and file names that are not UTF-8: every file is used or listed in ``skipped`` with a
  reason, nothing blocks, and every path string can be printed and written as UTF-8 JSON.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)

import medinfer.io.load as load_module
from medinfer import load_series, load_study
from medinfer.errors import InputError, MultipleSeriesError, SeriesError, SeriesTooLargeError
from medinfer.io.budget import MAX_SERIES_BYTES_ENV, default_max_series_bytes, parse_byte_count, series_memory_limit
from medinfer.io.dicom import DEFLATE_HEADER_BYTES, read_frames, read_header
from medinfer.io.text import printable

DEFLATED = "Deflated Explicit VR Little Endian"


# ------------------------------------------------------------------------------------------ helpers


@contextlib.contextmanager
def deadline(seconds: int = 30):
    """Fails (instead of hanging the run) when the block blocks on a FIFO or loops forever."""

    def fail(*_):
        raise TimeoutError(f"still running after {seconds} s: blocked on a file or looping")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def peak_allocation():
    """``with peak_allocation() as peak: ...``; then ``peak()`` is the most bytes Python and numpy held."""
    tracemalloc.start()
    result = {}
    try:
        yield lambda: result["peak"]
    finally:
        result["peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


def ct_header(rows: int = 512, cols: int = 512, z: float = 0.0, series: str | None = None, bits: int = 16,
              frames: int | None = None) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.SeriesInstanceUID = series or generate_uid()
    ds.StudyInstanceUID = "1.2.3"
    ds.FrameOfReferenceUID = "1.2.3.4"
    ds.Rows, ds.Columns = rows, cols
    if frames is not None:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.ImagePositionPatient = [0, 0, z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.7, 0.7]
    ds.InstanceNumber = int(z) + 1
    return ds


def file_meta(ts: str, ds: Dataset) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ts
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.ImplementationClassUID = "1.2.3.4.5"
    return meta


def explicit_le(ds: Dataset) -> bytes:
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_dataset(buf, ds)
    return buf.getvalue()


def element(group: int, elem: int, vr: bytes, length: int) -> bytes:
    """An explicit VR little endian element header with a 4-byte length (OB, OW, UN)."""
    return struct.pack("<HH", group, elem) + vr + b"\0\0" + struct.pack("<I", length)


ZERO_CHUNK = 1 << 24


def _piece(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush(zlib.Z_FULL_FLUSH)  # byte-aligned, no history: pieces concatenate


@functools.cache
def _zero_piece() -> bytes:
    return _piece(bytes(ZERO_CHUNK))


def raw_deflate(*parts: bytes | int) -> bytes:
    """One raw deflate stream of ``parts``: bytes as they are, an int n as n zero bytes (built from one
    compressed 16 MiB piece, so a 20 GiB stream takes milliseconds)."""
    out = []
    for part in parts:
        if isinstance(part, int):
            full, rest = divmod(part, ZERO_CHUNK)
            out.append(_zero_piece() * full)
            if rest:
                out.append(_piece(bytes(rest)))
        else:
            out.append(_piece(part))
    out.append(zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS).flush())  # the final (empty) block
    return b"".join(out)


def deflated_file(path: Path, ds: Dataset, *parts: bytes | int) -> Path:
    """A Deflated Explicit VR Little Endian file: ``ds`` then ``parts`` (see raw_deflate) in the stream."""
    out = io.BytesIO()
    out.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(out, file_meta(DeflatedExplicitVRLittleEndian, ds), enforce_standard=True)
    out.write(raw_deflate(explicit_le(ds), *parts))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out.getvalue())
    return path


def rle_file(path: Path, side: int, z: float, series: str, value: int = 1000) -> Path:
    """An RLE Lossless side×side 16-bit slice of one value: runs of 128, so 64× smaller than it decodes."""
    assert side % 128 == 0
    ds = ct_header(side, side, z, series)
    segments = [bytes([0x81, b]) * (side // 128) * side for b in ((value >> 8) & 0xFF, value & 0xFF)]
    header = struct.pack("<16I", 2, 64, 64 + len(segments[0]), *([0] * 13))
    ds.PixelData = encapsulate([header + b"".join(segments)])
    ds["PixelData"].VR = "OB"
    ds.file_meta = file_meta(RLELossless, ds)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def plain_file(path: Path, ds: Dataset, pixels: np.ndarray) -> Path:
    ds = ds.copy()
    ds.PixelData = np.ascontiguousarray(pixels, "<i2").tobytes()
    ds.file_meta = file_meta(ExplicitVRLittleEndian, ds)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def copy_slices(ct5n: Path, dst: Path, n: int = 5, names=None) -> list[Path]:
    dst.mkdir(parents=True, exist_ok=True)
    out = []
    for i, f in enumerate(sorted(ct5n.iterdir())[:n]):
        out.append(dst / (names[i] if names else f"slice{i}.dcm"))
        shutil.copy(f, out[-1])
    return out


def reasons(skipped) -> dict[str, str]:
    return {str(p): r for p, r in skipped}


def assert_printable(*texts: str) -> None:
    """Printable, encodable as strict UTF-8, JSON-able with ensure_ascii=False, printable on a UTF-8 stream."""
    stream = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    for text in texts:
        assert isinstance(text, str) and text.isprintable(), repr(text)
        text.encode("utf-8")
        json.dumps(text, ensure_ascii=False).encode("utf-8")
        print(text, file=stream)
    stream.flush()


def assert_accounted(root: Path, files: list[str], skipped) -> None:
    """Every entry under ``root`` (walked without following links) was used, or listed in ``skipped``, or
    is a followed folder link whose contents were."""
    used = {f.partition("[frame ")[0] for f in files}
    listed = {str(p) for p, _ in skipped}
    seen = used | listed
    for folder, dirs, names in os.walk(root):
        for name in names + dirs:
            path = os.path.join(folder, name)
            if name in dirs and not os.path.islink(path):
                if not os.access(path, os.R_OK | os.X_OK):
                    assert path in listed, f"unreadable folder {path} not listed in skipped"
                continue
            if name in dirs:  # a symlink to a folder: followed (its contents listed) or skipped
                assert path in listed or any(s.startswith(path + os.sep) for s in seen) or not os.listdir(path), \
                    f"the folder link {path} was neither followed nor listed"
                continue
            assert path in seen, f"{path} was dropped silently"


# ------------------------------------------------------------------------------------------ deflate


def test_deflated_series_loads_like_the_uncompressed_one(ct5n, tmp_path):
    for f in sorted(ct5n.iterdir()):
        ds = pydicom.dcmread(f, force=True)
        ds.file_meta = file_meta(DeflatedExplicitVRLittleEndian, ds)
        ds.save_as(tmp_path / f.name, enforce_file_format=True)
    assert pydicom.dcmread(next(tmp_path.iterdir())).file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    s, reference = load_series(tmp_path), load_series(ct5n)
    np.testing.assert_array_equal(s.hu, reference.hu)
    np.testing.assert_array_equal(s.positions, reference.positions)
    assert s.skipped == [] and s.meta["transfer_syntax"] == DEFLATED


def test_a_blank_deflated_slice_that_compresses_1000_to_1_is_not_a_bomb(tmp_path):
    ds = ct_header(512, 512)
    ds.PixelData = np.zeros((512, 512), "<i2").tobytes()  # all -1024 HU: ~1000:1
    ds.file_meta = file_meta(DeflatedExplicitVRLittleEndian, ds)
    ds.save_as(tmp_path / "blank.dcm", enforce_file_format=True)
    assert (tmp_path / "blank.dcm").stat().st_size * 200 < 512 * 512 * 2
    s = load_series(tmp_path / "blank.dcm")
    assert s.shape == (1, 512, 512) and np.all(s.hu == -1024) and s.meta["transfer_syntax"] == DEFLATED


@pytest.mark.parametrize("layout", ["pixel data", "trailing element", "several elements"])
def test_deflate_bomb_is_skipped_without_inflating_it(tmp_path, layout):
    ds = ct_header(512, 512)
    slice_bytes = 512 * 512 * 2
    bomb = 1 << 30  # 1 GiB from about 1 MB
    parts = {
        "pixel data": [element(0x7FE0, 0x0010, b"OW", bomb), bomb],
        "trailing element": [element(0x7FE0, 0x0010, b"OW", slice_bytes), slice_bytes,
                             element(0xFFFC, 0xFFFC, b"OB", bomb), bomb],
        "several elements": [element(0x7FE0, 0x0010, b"OW", slice_bytes), slice_bytes,
                             *[p for k in range(4)
                               for p in (element(0x7FE1, 0x1000 + k, b"OB", bomb // 4), bomb // 4)]],
    }[layout]
    path = deflated_file(tmp_path / "bomb.dcm", ds, *parts)
    assert path.stat().st_size < 2 << 20
    with peak_allocation() as peak, deadline():
        header = read_header(path)
    assert header.rows == 512 and peak() < 8 << 20, f"header pass allocated {peak()} bytes"
    with peak_allocation() as peak, deadline(), pytest.raises(SeriesError) as info:
        load_series(path)
    assert peak() < 16 << 20, f"loading the bomb allocated {peak()} bytes"
    reason = reasons(info.value.skipped)[str(path)]
    assert reason.startswith("deflated data set inflates beyond 1.5 MiB (the cap for this file:"), reason
    assert "512×512 × 1 frame(s) × 2 B of pixel data" in reason


def test_deflated_header_bomb_stops_at_the_header_cap(tmp_path):
    ds = ct_header(512, 512)
    path = deflated_file(tmp_path / "head.dcm", ds, element(0x0029, 0x1010, b"OB", 0xFFFFFFF0), 0xFFFFFFF0)
    with peak_allocation() as peak, deadline():
        header = read_header(path)
        frames, skipped = read_frames(path)
    assert isinstance(header, str) and header.startswith("deflated data set: no pixel data within the first 64.0 MiB")
    assert frames == [] and skipped[0][1] == header
    assert peak() < 3 * DEFLATE_HEADER_BYTES, f"allocated {peak()} bytes for a 4 GiB header"


def test_deflated_header_declaring_more_than_its_bytes_can_hold_is_refused_before_inflating(tmp_path):
    ds = ct_header(16384, 16384, bits=32, frames=4)  # 4 GiB of pixels declared in a few kB
    path = deflated_file(tmp_path / "liar.dcm", ds, element(0x7FE0, 0x0010, b"OB", 0xFFFFFFF0), 64 << 20)
    with peak_allocation() as peak:
        frames, skipped = read_frames(path)
    assert frames == [] and "claim to inflate to 4294967296 bytes of pixel data" in skipped[0][1]
    assert peak() < 8 << 20


def test_corrupt_and_truncated_deflate_streams_are_skipped_with_a_reason(tmp_path, rng):
    ds = ct_header(64, 64, series="1.2.3.9")
    pixels = rng.integers(0, 2000, (64, 64)).astype("<i2").tobytes()  # incompressible: the stream is long
    good = deflated_file(tmp_path / "good.dcm", ds, element(0x7FE0, 0x0010, b"OW", len(pixels)), pixels)
    data = good.read_bytes()
    prefix = io.BytesIO()
    write_file_meta_info(prefix, file_meta(DeflatedExplicitVRLittleEndian, ds), enforce_standard=True)
    start = 132 + len(prefix.getvalue())  # where the deflate stream begins
    (tmp_path / "garbage.dcm").write_bytes(data[:start] + bytes(range(255, -1, -1)) * 8)
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 2000])
    s = load_series(tmp_path)
    got = reasons(s.skipped)
    assert s.files == [str(good)] and s.meta["transfer_syntax"] == DEFLATED
    np.testing.assert_array_equal(s.pixels[0], np.frombuffer(pixels, "<i2").reshape(64, 64))
    assert got[str(tmp_path / "garbage.dcm")].startswith("deflated data set is corrupt (zlib: Error -3")
    assert got[str(tmp_path / "cut.dcm")].startswith("truncated pixel data:")


# ------------------------------------------------------------------------------------------ amplification


def _rle_series(folder: Path, n: int = 4, side: int = 256) -> tuple[list[Path], int]:
    series = generate_uid()
    files = [rle_file(folder / f"s{i}.dcm", side, float(i), series, 1000 + i) for i in range(n)]
    return files, n * side * side * (2 + 4)  # int16 stored + float32 HU


def test_series_over_max_bytes_is_refused_from_the_headers(tmp_path, monkeypatch):
    files, need = _rle_series(tmp_path / "rle")
    assert all(f.stat().st_size * 32 < 256 * 256 * 2 for f in files)  # each file far smaller than its pixels

    def no_decoding(path):
        raise AssertionError(f"{path} was decoded although the series is over the limit")

    monkeypatch.setattr(load_module, "read_frames", no_decoding)
    with pytest.raises(SeriesTooLargeError) as info:
        load_series(tmp_path / "rle", max_bytes=need - 1)
    err = info.value
    assert isinstance(err, SeriesError) and isinstance(err, InputError) and isinstance(err, ValueError)
    assert err.estimate == need and err.limit == need - 1
    text = str(err)
    for fragment in (str(tmp_path / "rle"), "4 file(s), 4 slice(s): 4× 256×256", "1.5 MiB", "max_bytes=",
                     MAX_SERIES_BYTES_ENV, "load_series(..., max_bytes=...)"):
        assert fragment in text, (fragment, text)
    monkeypatch.undo()
    s = load_series(tmp_path / "rle", max_bytes=need)  # the bound is exact: stored + float32 HU
    assert len(s) == 4 and s.pixels.nbytes + s.hu.nbytes == need


def test_the_limit_comes_from_max_bytes_then_the_environment_then_memory(tmp_path, monkeypatch):
    _, need = _rle_series(tmp_path / "rle", n=2)
    monkeypatch.setenv(MAX_SERIES_BYTES_ENV, "100k")
    with pytest.raises(SeriesTooLargeError, match=f"{MAX_SERIES_BYTES_ENV}=100k"):
        load_series(tmp_path / "rle")
    assert len(load_series(tmp_path / "rle", max_bytes="1M")) == 2  # the argument wins
    monkeypatch.setenv(MAX_SERIES_BYTES_ENV, "unlimited")
    assert len(load_series(tmp_path / "rle")) == 2
    monkeypatch.setenv(MAX_SERIES_BYTES_ENV, "lots")
    with pytest.raises(InputError, match=f"{MAX_SERIES_BYTES_ENV}='lots': expected a number of bytes"):
        load_series(tmp_path / "rle")
    monkeypatch.delenv(MAX_SERIES_BYTES_ENV)
    for bad in (0, -5, True, "0", "x1G", float("nan")):
        with pytest.raises(InputError, match="max_bytes"):
            load_series(tmp_path / "rle", max_bytes=bad)
    assert [parse_byte_count(t) for t in ("8G", "8 GiB", "512m", "1.5k", "1073741824")] == \
        [8 << 30, 8 << 30, 512 << 20, 1536, 1 << 30]


def test_default_limit_is_half_the_available_memory(monkeypatch):
    monkeypatch.delenv(MAX_SERIES_BYTES_ENV, raising=False)
    with open("/proc/meminfo") as f:
        available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    limit, source = default_max_series_bytes()
    assert 0.4 * available < limit <= 0.6 * available and "memory available now" in source
    assert series_memory_limit()[0] == pytest.approx(limit, rel=0.2)


def test_study_limit_counts_its_series_together(tmp_path):
    _, one = _rle_series(tmp_path / "a", n=2)
    _, two = _rle_series(tmp_path / "b", n=2)
    with pytest.raises(SeriesTooLargeError, match=r"the 2 series in .* would take about") as info:
        load_study(tmp_path, max_bytes=one + two - 1)
    assert info.value.estimate == one + two
    assert len(load_study(tmp_path, max_bytes=one + two)) == 2
    with pytest.raises(MultipleSeriesError):
        load_series(tmp_path, max_bytes=one)  # one series at a time fits
    uid = load_study(tmp_path)[0].uid
    assert len(load_series(tmp_path, series_uid=uid, max_bytes=one)) == 2


def test_image_folders_are_bounded_too(tmp_path, monkeypatch):
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((64, 96), 1024, np.uint16)).save(tmp_path / f"{i}.png")
    need = 3 * 64 * 96 * (2 + 4)

    def no_decoding(*args):
        raise AssertionError("images decoded although the folder is over the limit")

    monkeypatch.setattr(load_module, "load_image_series", no_decoding)
    with pytest.raises(SeriesTooLargeError, match=r"image folder .* 3× 64×96") as info:
        load_series(tmp_path, max_bytes=need - 1)
    assert info.value.estimate == need
    monkeypatch.undo()
    assert len(load_series(tmp_path, max_bytes=need)) == 3


def test_a_header_that_understates_its_pixels_is_still_bounded(tmp_path, monkeypatch):
    """The headers are checked first; the decoded frames are counted too, should a file differ from them."""
    files, need = _rle_series(tmp_path / "rle", n=3)
    real = load_module.read_frames

    def bigger(path):
        frames, skipped = real(path)
        for f in frames:
            f.pixels = np.zeros((1024, 1024), np.int16)
        return frames, skipped

    monkeypatch.setattr(load_module, "read_frames", bigger)
    with pytest.raises(SeriesTooLargeError, match="more than the headers declared"):
        load_series(tmp_path / "rle", max_bytes=need)


BOMB_SCRIPT = textwrap.dedent("""
    import json, sys
    import medinfer
    from medinfer.errors import MedinferError

    def peak_mb():  # VmHWM: this process' own peak (ru_maxrss would carry the parent's over fork + exec)
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmHWM:"))

    out = {}
    for name in sys.argv[1:]:
        try:
            s = medinfer.load_series(name)
            s.hu
            out[name] = {"loaded": len(s)}
        except MedinferError as exc:
            out[name] = {"error": type(exc).__name__, "skipped": [r for _, r in exc.skipped]}
        out[name]["peak_mb"] = peak_mb()
    print(json.dumps(out))
""")


def test_the_issue_bombs_stay_small_in_a_real_process(tmp_path):
    """The issue's cases, measured as the OS sees them: a ~20 MB file inflating to 20 GiB, and four 2 MB RLE
    files decoding to 0.5 GiB of pixels + 1 GiB of HU, with a 1 GiB limit."""
    big = (4 << 30) - 16
    bomb = deflated_file(tmp_path / "deflate" / "bomb.dcm", ct_header(512, 512), element(0x7FE0, 0x0010, b"OW", big),
                         big, *[p for k in range(4) for p in (element(0x7FE1, 0x1000 + k, b"OB", big), big)])
    assert bomb.stat().st_size < 24 << 20  # 20 GiB inflated
    series = generate_uid()
    for i in range(4):
        rle_file(tmp_path / "rle" / f"s{i}.dcm", 8192, float(i), series, 1000 + i)
    env = {**os.environ, MAX_SERIES_BYTES_ENV: "1G"}
    run = subprocess.run([sys.executable, "-c", BOMB_SCRIPT, str(tmp_path / "deflate"), str(tmp_path / "rle")],
                         capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    bomb, rle = out[str(tmp_path / "deflate")], out[str(tmp_path / "rle")]
    assert bomb["error"] == "SeriesError" and bomb["skipped"][0].startswith("deflated data set inflates beyond")
    assert rle["error"] == "SeriesTooLargeError"
    assert max(bomb["peak_mb"], rle["peak_mb"]) < 250, out


# ------------------------------------------------------------------------------------------ symlinks


def test_folder_symlinks_are_followed(ct5n, tmp_path):
    outside = tmp_path / "elsewhere"
    copy_slices(ct5n, outside, 3)
    root = tmp_path / "study"
    root.mkdir()
    (root / "linked").symlink_to(outside, target_is_directory=True)
    s = load_series(root)
    assert len(s) == 3 and all(f.startswith(str(root / "linked")) for f in s.files) and s.skipped == []
    (tmp_path / "study-link").symlink_to(root)
    assert len(load_series(tmp_path / "study-link")) == 3  # the input itself a link


@pytest.mark.parametrize("target", ["self", "parent", "root", "grandparent"])
def test_symlink_loops_terminate_and_are_listed(ct5n, tmp_path, target):
    root = tmp_path / "study"
    copy_slices(ct5n, root / "a" / "b", 2)
    link = root / "a" / "b" / "loop"
    link.symlink_to({"self": ".", "parent": "..", "root": "/", "grandparent": "../../.."}[target])
    with deadline():
        s = load_series(root)
    assert len(s) == 2
    assert reasons(s.skipped)[str(link)].startswith("symlink loop: points to ")
    assert_accounted(root, s.files, s.skipped)


def test_link_chains_that_never_resolve_and_dangling_links_are_listed(ct5n, tmp_path):
    root = tmp_path / "study"
    copy_slices(ct5n, root, 2)
    (root / "ping").symlink_to(root / "pong")
    (root / "pong").symlink_to(root / "ping")
    (root / "gone.dcm").symlink_to(tmp_path / "deleted.dcm")
    with deadline():
        s = load_series(root)
    got = reasons(s.skipped)
    assert got[str(root / "ping")].startswith("symlink loop (to ")
    assert got[str(root / "pong")].startswith("symlink loop (to ")
    assert got[str(root / "gone.dcm")] == f"dangling symlink (to {tmp_path / 'deleted.dcm'}, which does not exist)"
    assert_accounted(root, s.files, s.skipped)
    got = reasons(load_series([*root.glob("slice*"), root / "gone.dcm", root / "ping"]).skipped)
    assert got[str(root / "gone.dcm")].startswith("dangling symlink")
    assert got[str(root / "ping")].startswith("symlink loop")
    with pytest.raises(InputError, match="no such file or folder: .* is a dangling symlink"):
        load_series(root / "gone.dcm")


def test_a_folder_reached_twice_is_searched_once(ct5n, tmp_path):
    root = tmp_path / "study"
    copy_slices(ct5n, root / "real", 3)
    (root / "again").symlink_to(root / "real")
    (root / "zz-again").symlink_to(root / "real")
    (root / "real" / "same.dcm").symlink_to(root / "real" / "slice0.dcm")
    os.link(root / "real" / "slice1.dcm", root / "hard.dcm")
    s = load_series(root)
    got = reasons(s.skipped)
    assert len(s) == 3 and str(root / "real" / "slice0.dcm") in s.files
    for name in ("again", "zz-again"):
        assert got[str(root / name)] == (f"symlink to a folder already searched as {root / 'real'} (its files are "
                                         "listed under that path)")
    # The real file, not the symlink that sorts before it; of two hard links, the first by path.
    assert got[str(root / "real" / "same.dcm")] == f"listed twice (same file as {root / 'real' / 'slice0.dcm'})"
    assert got[str(root / "real" / "slice1.dcm")] == f"listed twice (same file as {root / 'hard.dcm'})"
    assert_accounted(root, s.files, s.skipped)
    got = reasons(load_series([root, root / "real"]).skipped)
    assert got[str(root / "real")] == f"listed twice (a folder already searched as {root / 'real'})"


def test_a_diamond_of_folder_links_does_not_explode(tmp_path, ct5n):
    """30 levels, each linking twice to the next: 2**30 paths if folders were searched once per path."""
    levels = [tmp_path / f"level{k}" for k in range(31)]
    for level in levels:
        level.mkdir()
    copy_slices(ct5n, levels[-1], 2)
    for a, b in zip(levels, levels[1:], strict=False):
        (a / "left").symlink_to(b)
        (a / "right").symlink_to(b)
    with deadline(20):
        s = load_series(levels[0])
    assert len(s) == 2
    assert sum("already searched" in r for _, r in s.skipped) == 30 and len(s.skipped) == 30


# ------------------------------------------------------------------------------------------ special files


def test_fifos_sockets_and_devices_are_listed_never_opened(ct5n, tmp_path, monkeypatch):
    root = tmp_path / "study"
    copy_slices(ct5n, root, 2)
    os.mkfifo(root / "pipe.dcm")
    os.mkfifo(root / "7.png")  # an image name: Pillow must not open it either
    monkeypatch.chdir(root)  # a socket path must be short
    server = socket.socket(socket.AF_UNIX)
    server.bind("sock")
    (root / "zero").symlink_to("/dev/zero")  # endless if read
    (root / "fifo-link").symlink_to(root / "pipe.dcm")
    expected = {"pipe.dcm": "not a regular file: a FIFO (named pipe)",
                "7.png": "not a regular file: a FIFO (named pipe)",
                "sock": "not a regular file: a socket",
                "zero": "not a regular file: a character device (through a symlink)",
                "fifo-link": "not a regular file: a FIFO (named pipe) (through a symlink)"}
    if os.geteuid() == 0:
        os.mknod(root / "urandom.dcm", 0o600 | 0o020000, os.makedev(1, 9))  # a character device node
        expected["urandom.dcm"] = "not a regular file: a character device"
    try:
        with deadline():
            s = load_series(root)
            study = load_study(root)
    finally:
        server.close()
    got = reasons(s.skipped)
    assert len(s) == 2 and {k: got[str(root / k)] for k in expected} == expected
    assert reasons(study[0].skipped) == got
    assert_accounted(root, s.files, s.skipped)


def test_a_fifo_passed_explicitly_is_not_a_regular_file(ct5n, tmp_path):
    files = copy_slices(ct5n, tmp_path, 2)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with deadline():
        s = load_series([*files, fifo])
        assert reasons(s.skipped)[str(fifo)] == "not a regular file: a FIFO (named pipe)"
        with pytest.raises(SeriesError, match=r"1× not a regular file") as info:
            load_series(fifo)
        assert info.value.skipped == [(str(fifo), "not a regular file: a FIFO (named pipe)")]
        assert read_header(fifo) == "not a regular file: a FIFO (named pipe)"
        assert read_frames(fifo) == ([], [(str(fifo), "not a regular file: a FIFO (named pipe)")])
        assert read_header("/dev/zero") == "not a regular file: a character device"


# ------------------------------------------------------------------------------------------ unreadable

def _load_each(root: str) -> dict:
    out = {}
    for key, src in (("folder", root), ("locked", root + "/locked"), ("listed", [root + "/locked/x0.dcm"])):
        try:
            s = load_series(src)
            out[key] = {"files": s.files, "skipped": s.skipped}
        except SeriesError as exc:
            out[key] = {"error": str(exc), "files": [], "skipped": exc.skipped}
    return json.loads(json.dumps(out))


def _unprivileged(work, *args, timeout: int = 60):
    """``work(*args)`` in a forked child that runs as 'nobody' when this is root (chmod alone does not stop
    root); its JSON-able result comes back through a pipe. As another user, it runs here."""
    if os.geteuid() != 0:
        return work(*args)
    import pwd
    import select

    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("running as root and there is no 'nobody' user to drop privileges to")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, work, report, exit without running the parent's cleanup
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            try:
                result = {"ok": work(*args)}
            except BaseException as exc:  # noqa: B036 - reported to the parent
                result = {"error": f"{type(exc).__name__}: {exc}"}
            with os.fdopen(write_end, "w") as f:
                json.dump(result, f)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    with os.fdopen(read_end) as f:
        while True:
            ready, _, _ = select.select([f], [], [], timeout)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail(f"the unprivileged child was still running after {timeout} s")
            chunk = f.read()
            if not chunk:
                break
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and chunks, "the unprivileged child failed"
    result = json.loads("".join(chunks))
    assert "ok" in result, result["error"]
    return result["ok"]


def test_unreadable_folders_and_files_are_listed(ct5n):
    base = Path(tempfile.mkdtemp(prefix="medinfer-unreadable-"))  # not under pytest's 0700 tmp folders
    try:
        base.chmod(0o755)
        root = base / "study"
        copy_slices(ct5n, root / "ok", 2)
        copy_slices(ct5n, root / "locked", 2, names=["x0.dcm", "x1.dcm"])
        copy_slices(ct5n, root / "no-search", 1, names=["y.dcm"])
        secret = copy_slices(ct5n, root, 1, names=["secret.dcm"])[0]
        for p in root.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        root.chmod(0o755)
        secret.chmod(0)
        (root / "no-search").chmod(0o444)  # names can be listed, not looked up
        (root / "locked").chmod(0)
        out = _unprivileged(_load_each, str(root))
    finally:
        for p in [base, *base.rglob("*")]:
            with contextlib.suppress(OSError):
                p.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)
    folder = out["folder"]
    got = reasons(folder["skipped"])
    assert sorted(folder["files"]) == [str(root / "ok" / f"slice{i}.dcm") for i in range(2)], folder
    assert got == {str(root / "locked"): "cannot read the folder: Permission denied",
                   str(root / "no-search" / "y.dcm"): "cannot read: Permission denied",
                   str(secret): "cannot read the file: Permission denied"}
    assert out["locked"]["skipped"] == [[str(root / "locked"), "cannot read the folder: Permission denied"]]
    assert "no CT series in" in out["locked"]["error"]
    assert out["listed"]["skipped"] == [[str(root / "locked" / "x0.dcm"), "cannot read: Permission denied"]]


# ------------------------------------------------------------------------------------------ non-UTF-8 names


def test_printable_escapes_undecodable_bytes_and_controls_only(rng):
    assert printable("étude/胸部 CT/slice 1.dcm") == "étude/胸部 CT/slice 1.dcm"
    assert printable(os.fsdecode(b"caf\xe9/\xff.dcm")) == "caf\\xe9/\\xff.dcm"
    assert printable("a\nb\x1bc\u202ed\x85") == "a\\u000ab\\u001bc\\u202ed\\u0085"
    assert printable("\ud800") == "\\ud800"
    names = {bytes(rng.integers(1, 256, rng.integers(1, 12), dtype=np.uint8)).replace(b"/", b"_").replace(b"\\", b"_")
             for _ in range(3000)}
    shown = {printable(os.fsdecode(n)) for n in names}
    assert len(shown) == len(names), "two different names print the same"
    assert_printable(*shown)
    clean = [n for n in names if all(b >= 0x20 and b != 0x7F for b in n)]
    for n in clean:  # only undecodable bytes escaped: what os.fsencode + backslashreplace writes
        text = n.decode("utf-8", "backslashreplace")
        if text.isprintable():
            assert printable(os.fsdecode(n)) == text


def test_non_utf8_names_survive_printing_and_json(ct5n, tmp_path):
    folder = tmp_path / os.fsdecode(b"patient-\xfe\xfd")
    names = [os.fsdecode(b"\xff.dcm"), os.fsdecode(b"caf\xe9.dcm"), "line\nbreak.dcm", "esc\x1b[2J.dcm", "ok.dcm"]
    copy_slices(ct5n, folder, 5, names=names)
    (folder / os.fsdecode(b"notes-\x80.txt")).write_text("not an image")
    (folder / os.fsdecode(b"gone-\xfa")).symlink_to(tmp_path / os.fsdecode(b"nowhere-\xfa"))
    s = load_series(tmp_path)
    assert len(s) == 5
    assert_printable(s.uid, *s.files, *(p for p, _ in s.skipped), *(r for _, r in s.skipped), *s.warnings)
    json.dumps({"files": s.files, "skipped": s.skipped, "meta": s.meta}, ensure_ascii=False).encode("utf-8")
    shown = str(tmp_path / "patient-\\xfe\\xfd")
    assert {f.removeprefix(shown + "/") for f in s.files} == \
        {"\\xff.dcm", "caf\\xe9.dcm", "line\\u000abreak.dcm", "esc\\u001b[2J.dcm", "ok.dcm"}
    assert load_series(os.fsencode(tmp_path)).files == s.files  # bytes paths, as the OS holds them
    assert sorted(load_series([os.fsencode(folder / n) for n in names]).files) == sorted(s.files)
    got = reasons(s.skipped)
    assert got[shown + "/notes-\\x80.txt"].startswith("not a DICOM file")
    assert got[shown + "/gone-\\xfa"] == f"dangling symlink (to {tmp_path}/nowhere-\\xfa, which does not exist)"


def test_non_utf8_names_in_errors_and_image_folders(tmp_path):
    from PIL import Image

    junk = tmp_path / os.fsdecode(b"junk-\xff")
    junk.mkdir()
    (junk / os.fsdecode(b"\xfe.bin")).write_bytes(b"\0" * 300)
    with pytest.raises(SeriesError) as info:
        load_series(junk)
    assert_printable(str(info.value), *(x for pair in info.value.skipped for x in pair))
    with pytest.raises(InputError) as info:
        load_series(tmp_path / os.fsdecode(b"missing-\xff"))
    assert_printable(str(info.value))

    images = tmp_path / os.fsdecode(b"images-\xe9")
    images.mkdir()
    for i in range(2):
        Image.fromarray(np.full((8, 8), 1024 + i, np.uint16)).save(images / os.fsdecode(b"%d-\xff.png" % i))
    s = load_series(images)
    assert_printable(s.uid, *s.files, *map(str, s.meta.values()))
    assert s.uid.endswith("images-\\xe9")
    again = load_series(tmp_path, series_uid=s.uid)  # the printable uid picks the series
    assert again.files == s.files


def test_paths_with_a_nul_byte_are_refused_or_listed(ct5n, tmp_path):
    with pytest.raises(InputError, match=r"no such file or folder: a\\u0000b") as info:
        load_series("a\0b")
    assert_printable(str(info.value))
    good = copy_slices(ct5n, tmp_path / "study", 3)
    s = load_series([*map(str, good), "x\0y"])
    assert len(s) == 3
    assert s.skipped == [("x\\u0000y", "invalid path (embedded NUL byte)")]
    assert_printable(*(x for pair in s.skipped for x in pair))
