"""An archive run: every series under folders of studies, selected, classified as a stream, recorded as it completes.

::

    discover (unit by unit) -> resume filter -> selection rules -> classify -> results file, summary

:func:`predict_archive` classifies in this process (:meth:`medinfer.Engine.stream`: loader threads, the C++
batcher, the engine); :func:`medinfer.distributed.predict_archive` does the same on a Ray cluster. Both go
through :class:`ArchiveRun`, so they select, resume, record and count alike.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from medinfer.archive.results import ResultsFile, excluded_record, prediction_record, record_key
from medinfer.errors import InputError
from medinfer.io.catalog import NoSeries, SeriesRef, discover
from medinfer.io.select import Selection
from medinfer.io.text import printable

# The exit status of `medinfer predict` (and ArchiveSummary.exit_code).
EXIT_OK = 0  # every selected series was classified
EXIT_USAGE = 1  # a usage error, or nothing could be classified
EXIT_SOME_FAILED = 3  # some series failed; the others were classified


@dataclass
class ArchiveSummary:
    """What an archive run did. ``counts``: statuses recorded by this run; ``resumed``: statuses already in the
    results file it continued."""

    counts: Counter = field(default_factory=Counter)
    resumed: Counter = field(default_factory=Counter)
    labels: Counter = field(default_factory=Counter)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (source, error)
    excluded: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    slices: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    output: str = ""

    @property
    def classified(self) -> int:
        return self.counts["ok"] + self.resumed["ok"]

    @property
    def failed(self) -> int:
        return self.counts["error"] + self.resumed["error"]

    @property
    def exit_code(self) -> int:
        """0 when every selected series is classified, 3 when some failed, 1 when none could be."""
        if self.classified == 0:
            return EXIT_USAGE
        return EXIT_SOME_FAILED if self.failed else EXIT_OK

    def add(self, record: dict) -> None:
        status = record["status"]
        self.counts[status] += 1
        if status == "ok":
            self.labels[record["label"]] += 1
            self.slices += record["slices_used"]
        elif status == "error":
            self.failures.append((record["source"], record["error"]))
        else:
            self.excluded.append((record["source"], record["reason"]))

    def format(self, limit: int = 20) -> str:
        found = sum(self.counts.values())
        if not found and not self.resumed:
            return "no series found"
        lines = [f"{found} series: {self.counts['ok']} classified, {self.counts['error']} failed, "
                 f"{self.counts['excluded']} set aside by the selection rules"]
        if self.resumed:
            lines[0] += (f" (and {sum(self.resumed.values())} already in {self.output}: "
                         f"{', '.join(f'{n} {s}' for s, n in sorted(self.resumed.items()))})")
        if self.labels:
            lines.append("labels: " + ", ".join(f"{label} {n}" for label, n in sorted(self.labels.items())))
        if self.seconds:
            lines.append(f"{self.slices} slices in {self.seconds:.1f} s ({self.slices / self.seconds:.1f} slices/s)")
        for title, items in (("failed", self.failures), ("set aside", self.excluded)):
            if items:
                lines.append(f"{title}:")
                lines += [f"  {source}: {_short(why)}" for source, why in items[:limit]]
                if len(items) > limit:
                    where = f" (see {self.output})" if self.output else ""
                    lines.append(f"  … and {len(items) - limit} more{where}")
        lines += self.notes
        return "\n".join(lines)


def _short(text: str, limit: int = 200) -> str:
    """A reason on one line of the summary (the results file has it whole)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


Ref = SeriesRef | NoSeries


class ArchiveRun:
    """The bookkeeping of one run, shared by the local and the Ray drivers: resume, selection, records,
    counts and progress. ``admit(ref)`` says whether a discovered series is to be classified (recording it
    when the rules set it aside); ``emit(record)`` records a classified or failed one. Thread-safe."""

    def __init__(self, *, output: str | os.PathLike | None = None, selection: Selection | None = None,
                 resume: bool = False, slices: bool = False, progress: bool | None = None,
                 on_record: Callable[[int, dict], None] | None = None):
        from medinfer.progress import StreamProgress

        if resume and output is None:
            raise InputError("--resume needs --output: the results file to continue")
        self.selection = selection if selection is not None else Selection.parse()
        self.results = ResultsFile(output, resume=resume) if output is not None else None
        self.summary = ArchiveSummary(output=printable(os.fspath(output)) if output is not None else "")
        if self.results is not None:
            self.summary.resumed.update(self.results.previous.values())
            self.summary.notes += self.results.notes
        self._seen = set(self.results.previous) if self.results is not None else set()
        self._slices = slices
        self._on_record = on_record
        self._lock = threading.Lock()
        self._order: dict[tuple[str, str], int] = {}  # admitted, not yet recorded -> discovery position
        self.progress = StreamProgress(progress=progress)
        self._start = time.perf_counter()

    @property
    def tags(self) -> tuple[str, ...]:
        """DICOM keywords discovery must read for the rules."""
        return self.selection.keywords

    def admit(self, ref: Ref) -> bool:
        with self._lock:
            if ref.key in self._seen:  # in the results already (resume), or found twice (a root listed twice)
                return False
            self._seen.add(ref.key)
            position = len(self._seen)
        reason = self.selection.verdict(ref.attributes) if isinstance(ref, SeriesRef) else None
        if reason is not None:
            self._record(position, excluded_record(printable(ref.uid), ref.source, reason, ref.description))
            return False
        with self._lock:
            self._order[ref.key] = position
        self.progress.add(1)
        return True

    def emit(self, record: dict) -> None:
        with self._lock:
            position = self._order.pop(record_key(record), len(self._seen))
        self._record(position, record)
        self.progress.update(record["status"], record.get("slices_used", 0))

    @property
    def done_keys(self) -> frozenset[tuple[str, str]]:
        """The series already in the results file being continued (for workers that filter on their own)."""
        return frozenset(self.results.previous) if self.results is not None else frozenset()

    def accept(self, record: dict) -> None:
        """A record made elsewhere — by a Ray worker, which discovered, selected and classified the series
        itself: recorded unless its series was recorded already (a root listed twice)."""
        key = record_key(record)
        with self._lock:
            if key in self._seen:
                return
            self._seen.add(key)
            position = len(self._seen)
        self._record(position, record)
        if record["status"] != "excluded":
            self.progress.add(1)
            self.progress.update(record["status"], record.get("slices_used", 0))

    def _record(self, position: int, record: dict) -> None:
        if self.results is not None:
            written = record if self._slices else {k: v for k, v in record.items()
                                                   if k not in ("slice_probabilities", "files")}
            self.results.write(written)
        with self._lock:
            self.summary.add(record)
        if self._on_record is not None:
            self._on_record(position, record)

    def refs(self, roots: Sequence[str | os.PathLike]) -> Iterator[SeriesRef | NoSeries]:
        """The series of ``roots`` to classify, discovered lazily (the stream's loader threads pull them)."""
        return (ref for ref in discover(roots, tags=self.tags) if self.admit(ref))

    def close(self) -> ArchiveSummary:
        self.progress.close()
        if self.results is not None:
            self.results.close()
        self.summary.seconds = time.perf_counter() - self._start
        return self.summary


def predict_archive(roots: Sequence[str | os.PathLike], engine, *, output: str | os.PathLike | None = None,
                    selection: Selection | None = None, resume: bool = False, slices: bool = False,
                    aggregate: str = "mean", k: int | None = None, acquisition: int | str | None = None,
                    loaders: int | None = None, depth: int | None = None, progress: bool | None = None,
                    on_record: Callable[[int, dict], None] | None = None) -> ArchiveSummary:
    """Classify every series under ``roots`` with ``engine`` (an :class:`~medinfer.Engine` or an engine file)
    in this process; see the module docstring. ``output``: a ``.jsonl`` or ``.parquet`` results file
    (:mod:`medinfer.archive.results`), continued when ``resume``; ``slices`` records per-slice probabilities.
    ``on_record(position, record)`` sees every record (position: order of discovery). Returns the summary;
    its ``exit_code`` is what ``medinfer predict`` exits with."""
    from medinfer.engine import Engine

    engine = engine if isinstance(engine, Engine) else Engine(engine)
    run = ArchiveRun(output=output, selection=selection, resume=resume, slices=slices, progress=progress,
                     on_record=on_record)
    try:
        for record in classify(engine, run.refs(roots), aggregate=aggregate, k=k, acquisition=acquisition,
                               loaders=loaders, depth=depth):
            run.emit(record)
    finally:
        summary = run.close()
    return summary


def classify(engine, refs: Iterable[Ref], *, aggregate: str = "mean", k: int | None = None,
             acquisition: int | str | None = None, loaders: int | None = None,
             depth: int | None = None) -> Iterator[dict]:
    """One full record (per-slice rows included) per ref, as each completes: the engine's stream over them.
    (A Ray actor runs this over its share of the archive.)"""
    descriptions: dict[tuple[str, str], str] = {}

    def load(ref: Ref):
        return ref.load(acquisition=acquisition)

    def describe(ref: Ref) -> tuple[str, str]:
        descriptions[ref.key] = ref.description
        return ref.source, printable(ref.uid)

    for _, prediction in engine.stream(refs, aggregate=aggregate, k=k, load=load, describe=describe,
                                       loaders=loaders, depth=depth):
        key = (printable(prediction.uid), prediction.source)
        yield prediction_record(prediction, slices=True, description=descriptions.pop(key, ""))
