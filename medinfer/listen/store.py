"""The listener's instances on disk: ``OUT/incoming/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``, results beside.

Every file is written to a temporary name and renamed, so a kill never leaves a half-written instance or
result that would later be read as whole; a series whose folder has no ``OUT/<uid>.json`` is unfinished and
is classified again when the listener starts.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

from medinfer.metadata import atomic_write

# What a UID may be (PS3.5 §9.1): digits and dots, at most 64 characters. Checked before a UID names a file,
# so that a peer cannot write outside the store with a crafted SOPInstanceUID.
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
UNUSABLE = "unusable.jsonl"  # instances that belong to no series, at the top of the store


def valid_uid(uid: str) -> bool:
    return len(uid) <= 64 and bool(_UID.match(uid))


class InstanceStore:
    """Received instances grouped by series, the unusable ones' reasons, and each series' result."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.incoming = self.root / "incoming"
        self.incoming.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # appends to the unusable lists come from several associations

    def put(self, series_uid: str, sop_uid: str, data: bytes) -> Path:
        """Store one instance's encoded file (preamble, file meta, dataset)."""
        folder = self.incoming / series_uid
        folder.mkdir(exist_ok=True)
        path = folder / f"{sop_uid}.dcm"
        atomic_write(path, data)
        return path

    def reject(self, series_uid: str, record: dict) -> None:
        """Note an instance that cannot be used: under its series when it names a valid one, else at the top."""
        if series_uid and valid_uid(series_uid):
            folder = self.incoming / series_uid
            folder.mkdir(exist_ok=True)
            path = self.incoming / f"{series_uid}.{UNUSABLE}"
        else:
            path = self.root / UNUSABLE
        with self._lock, path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def files(self, series_uid: str) -> list[Path]:
        return sorted((self.incoming / series_uid).glob("*.dcm"))

    def unusable(self, series_uid: str) -> list[dict]:
        path = self.incoming / f"{series_uid}.{UNUSABLE}"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def result_path(self, series_uid: str) -> Path:
        return self.root / f"{series_uid}.json"

    def report_path(self, series_uid: str) -> Path:
        return self.root / f"{series_uid}.sr.dcm"

    def write_result(self, series_uid: str, result: dict) -> Path:
        path = self.result_path(series_uid)
        atomic_write(path, (json.dumps(result, indent=2) + "\n").encode())
        return path

    def unfinished(self) -> list[str]:
        """Series on disk without a result: those a stopped listener had not classified yet."""
        return sorted(d.name for d in self.incoming.iterdir()
                      if d.is_dir() and valid_uid(d.name) and not self.result_path(d.name).exists())
