"""Results files of an archive run: one record per series, written as each series completes, and read back by
``--resume``.

* ``.jsonl``: one JSON object per line, flushed after every line. A run killed mid-line leaves a partial last
  line; resuming drops it (and says so) before appending.
* ``.parquet`` (needs pyarrow): one row per series, flat columns (``prob_<class>``, ``time_<stage>_s``;
  ``skipped`` and ``warnings`` as JSON text). Parquet cannot be appended to, so the file is rewritten
  atomically (a temporary file renamed over it) every :data:`PARQUET_CHECKPOINT_S` seconds and at the end:
  a killed run loses at most the series of its last seconds, which resuming classifies again.

A record's ``status`` is ``"ok"``, ``"error"`` (``error`` says why) or ``"excluded"`` (set aside by the
selection rules; ``reason`` names the rule). Series are identified by ``(uid, source)``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from medinfer.errors import InputError

FORMATS = (".jsonl", ".parquet")
PARQUET_CHECKPOINT_S = 10.0


def prediction_record(prediction, *, slices: bool = False, description: str = "") -> dict:
    """A :class:`~medinfer.engine.SeriesPrediction` as a results record; ``slices`` adds per-slice rows."""
    record = prediction.to_dict(slices=slices)
    record["description"] = description
    return record


def excluded_record(uid: str, source: str, reason: str, description: str = "") -> dict:
    return {"uid": uid, "source": source, "status": "excluded", "error": "", "reason": reason,
            "description": description}


def record_key(record: dict) -> tuple[str, str]:
    return record.get("uid", ""), record.get("source", "")


class ResultsFile:
    """Where an archive run writes its records; thread-safe. ``resume=True`` continues an existing file
    (``previous`` holds its records' keys and statuses); without it an existing file is refused, so that a
    run never overwrites results."""

    def __init__(self, path: str | os.PathLike, *, resume: bool = False):
        self.path = Path(path)
        if self.path.suffix not in FORMATS:
            raise InputError(f"--output {self.path}: the results file must end in {' or '.join(FORMATS)}")
        if self.path.suffix == ".parquet":
            _pyarrow(self.path)
        if self.path.exists() and not resume:
            raise InputError(f"--output {self.path} exists: pass --resume to continue it, or choose another file")
        if not self.path.parent.is_dir():
            raise InputError(f"--output {self.path}: the folder {self.path.parent} does not exist")
        self._lock = threading.Lock()
        self.notes: list[str] = []  # what resuming had to repair
        self.previous: dict[tuple[str, str], str] = {}
        rows = self._read() if self.path.exists() else []
        for record in rows:
            self.previous[record_key(record)] = record.get("status", "")
        if self.path.suffix == ".jsonl":
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115  (closed by close())
        else:
            self._rows, self._saved = rows, time.monotonic()

    # Reading (resume) ------------------------------------------------------------------------------------
    def _read(self) -> list[dict]:
        if self.path.suffix == ".parquet":
            return _read_parquet(self.path)
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        complete, tail = lines[:-1], lines[-1]
        records = []
        for number, line in enumerate(complete, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError as exc:
                raise InputError(f"{self.path}, line {number}: not a JSON record ({exc}); the file is damaged — "
                                 "repair or remove that line to resume") from None
        if tail.strip():
            try:  # a whole record, only its newline missing (the file was edited): keep it
                records.append(json.loads(tail))
                with open(self.path, "ab") as f:
                    f.write(b"\n")
                return records
            except ValueError:
                pass
            # The run was killed while writing this line: the series is classified again.
            with open(self.path, "r+b") as f:
                f.truncate(len(data) - len(tail))
            self.notes.append(f"{self.path}: dropped a partial last line ({len(tail)} bytes) left by an interrupted "
                              "run; that series is classified again")
        return records

    # Writing ---------------------------------------------------------------------------------------------
    def write(self, record: dict) -> None:
        with self._lock:
            if self.path.suffix == ".jsonl":
                self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
                self._file.flush()
            else:
                self._rows.append(_flat(record))
                if time.monotonic() - self._saved >= PARQUET_CHECKPOINT_S:
                    self._save()

    def _save(self) -> None:
        pa = _pyarrow(self.path)
        tmp = self.path.with_name(self.path.name + ".tmp")
        columns = list(dict.fromkeys(k for row in self._rows for k in row))  # rows differ: errors have no prob_*
        pa.parquet.write_table(pa.Table.from_pydict({c: [row.get(c) for row in self._rows] for c in columns}), tmp)
        os.replace(tmp, self.path)
        self._saved = time.monotonic()

    def close(self) -> None:
        with self._lock:
            if self.path.suffix == ".jsonl":
                self._file.close()
            elif self._rows:
                self._save()

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_results(path: str | os.PathLike) -> list[dict]:
    """The records of a results file (Parquet rows come back flat, as written)."""
    path = Path(path)
    if path.suffix == ".parquet":
        return _read_parquet(path)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _read_parquet(path: Path) -> list[dict]:
    try:
        return _pyarrow(path).parquet.read_table(path).to_pylist()
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise InputError(f"{path}: not a readable Parquet results file ({exc})") from None


def _flat(record: dict) -> dict:
    """A record as one Parquet row: nested values in columns of their own or as JSON text."""
    row = {k: v for k, v in record.items() if k not in ("probabilities", "timings", "skipped", "warnings")}
    for name, p in (record.get("probabilities") or {}).items():
        row[f"prob_{name}"] = p
    for stage, seconds in (record.get("timings") or {}).items():
        row[f"time_{stage}_s"] = seconds
    row["skipped"] = json.dumps(record.get("skipped", []), ensure_ascii=False)
    row["warnings"] = json.dumps(record.get("warnings", []), ensure_ascii=False)
    return row


def _pyarrow(path: Path):
    try:
        import pyarrow as pa
        import pyarrow.parquet  # noqa: F401  (pa.parquet)
    except ImportError:
        raise InputError(f"--output {path}: writing Parquet needs pyarrow (pip install pyarrow), or write "
                         ".jsonl") from None
    return pa

