"""The listener: instances in (C-STORE, stored at once), a series classified once it has been idle, a result
JSON and a structured report out (optionally forwarded to a PACS)."""

from __future__ import annotations

import io
import logging
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pydicom

from medinfer.io.select import Selection, series_attributes
from medinfer.io.text import printable
from medinfer.listen import scp
from medinfer.listen.store import InstanceStore, valid_uid
from medinfer.metadata import atomic_write

log = logging.getLogger("medinfer.listen")

_POLL_S = 0.2  # how often the scheduler looks for idle series
_IMAGE_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


class Listener:
    """A DICOM Storage SCP classifying each series with ``engine`` once no instance of it arrived for
    ``idle_seconds``; results under ``out`` (see :mod:`medinfer.listen`). ``forward``: ``"HOST:PORT:AET"``
    or a (host, port, aet) tuple to send each report to; ``selection``: a :class:`Selection` (default: the
    rules of ``medinfer predict``); ``acquisition`` as in :func:`medinfer.load_series`. Use ``start()`` /
    ``stop()`` or ``with``."""

    def __init__(self, engine, out, *, port: int = 11112, aet: str = "MEDINFER", host: str = "",
                 idle_seconds: float = 10.0, forward: str | tuple[str, int, str] | None = None,
                 selection: Selection | None = None, acquisition: int | str | None = None,
                 aggregate: str = "mean", k: int | None = None):
        self.engine, self.store = engine, InstanceStore(out)
        self.port, self.aet, self.host, self.idle_seconds = port, aet, host, idle_seconds
        self.forward = scp.parse_destination(forward) if isinstance(forward, str) else forward
        self.selection = selection if selection is not None else Selection.parse()
        self.acquisition, self.aggregate, self.k = acquisition, aggregate, k
        self._arrivals: dict[str, float] = {}  # series uid -> monotonic time of its last instance, until classified
        self._last_instance: dict[str, float] = {}  # the same, for series being classified (for the latency)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = None
        self._worker: threading.Thread | None = None

    # Life cycle ------------------------------------------------------------------------------------------
    def start(self) -> Listener:
        for uid in self.store.unfinished():  # left by a listener that stopped first: classified again
            log.info("series %s: resumed from disk (%d instances)", uid, len(self.store.files(uid)))
            self._arrivals[uid] = time.monotonic()
        self._stop.clear()
        self._worker = threading.Thread(target=self._schedule, name="medinfer-listen", daemon=True)
        self._worker.start()
        self._server = scp.start_server(self.aet, self.host, self.port, self._on_store)
        log.info("listening as %s on port %d, results in %s", self.aet, self.port, self.store.root)
        return self

    def stop(self) -> None:
        """Stop accepting associations and end the scheduler (a classification under way finishes first)."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self._stop.set()
        if self._worker is not None:
            self._worker.join()
            self._worker = None
        log.info("stopped")

    def __enter__(self) -> Listener:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # Arrivals (on pynetdicom's association threads) ------------------------------------------------------
    def _on_store(self, event):
        calling = event.assoc.requestor.ae_title
        try:
            ds = event.dataset
            series_uid = str(ds.get("SeriesInstanceUID", "") or "")
            sop_uid = str(ds.get("SOPInstanceUID", "") or event.request.AffectedSOPInstanceUID or "")
            problem = _problem(ds, series_uid, sop_uid)
        except Exception as exc:  # anything a peer sends must not stop the listener
            series_uid, sop_uid, problem = "", "", f"cannot be parsed: {type(exc).__name__}: {exc}"
        if problem:
            self._reject(series_uid, sop_uid, calling, problem)
            return scp.failure(problem)
        try:
            self.store.put(series_uid, sop_uid, event.encoded_dataset())
        except Exception as exc:
            log.error("instance %s of series %s from %s: cannot be stored: %s", sop_uid, series_uid, calling, exc)
            return scp.failure(f"cannot be stored: {type(exc).__name__}")
        self._arrived(series_uid)
        return 0x0000

    def _reject(self, series_uid: str, sop_uid: str, calling: str, reason: str) -> None:
        log.warning("unusable instance %s (series %s) from %s: %s", sop_uid or "?", series_uid or "?", calling,
                    reason)
        self.store.reject(series_uid, {"sop_instance_uid": printable(sop_uid), "series_instance_uid":
                                       printable(series_uid), "calling_aet": calling, "reason": reason,
                                       "received": _now()})
        if series_uid and valid_uid(series_uid):
            self._arrived(series_uid)

    def _arrived(self, series_uid: str) -> None:
        with self._lock:
            if series_uid not in self._arrivals:
                log.info("series %s: receiving", series_uid)
            self._arrivals[series_uid] = time.monotonic()

    # Classification (on the scheduler thread) ------------------------------------------------------------
    def _schedule(self) -> None:
        while not self._stop.wait(_POLL_S):
            now = time.monotonic()
            with self._lock:
                due = [uid for uid, t in self._arrivals.items() if now - t >= self.idle_seconds]
                for uid in due:  # an instance arriving from now on schedules the series again
                    self._last_instance[uid] = self._arrivals.pop(uid)
            if due:
                try:
                    self._classify(due)
                except Exception:  # a bug here must not end the scheduler: log it, serve on
                    log.exception("classifying series %s failed", ", ".join(due))

    def _classify(self, uids: list[str]) -> None:
        selected = []
        for uid in uids:
            files = self.store.files(uid)
            if not files:
                self._finish(uid, _failed(uid, "no image instance of this series arrived"), files)
                continue
            reason = self.selection.verdict(series_attributes(_header(files[0]), self.selection.keywords))
            if reason:
                log.info("series %s: %s", uid, reason)
                self._finish(uid, {**_failed(uid, ""), "status": "excluded", "reason": reason}, files)
                continue
            selected.append((uid, files))
        if not selected:
            return
        stream = self.engine.stream(
            selected, aggregate=self.aggregate, k=self.k, errors="record",
            load=self._load, describe=lambda item: (str(self.store.incoming / item[0]), item[0]))
        for index, prediction in stream:
            uid, files = selected[index]
            self._finish(uid, prediction.to_dict(slices=False), files, prediction)

    def _load(self, item):
        from medinfer.io import load_series

        uid, files = item
        return load_series([str(f) for f in files], series_uid=uid, acquisition=self.acquisition)

    def _finish(self, uid: str, result: dict, files: list[Path], prediction=None) -> None:
        result.update(series_instance_uid=uid, instances_received=len(files), unusable=self.store.unusable(uid),
                      model={"name": self.engine.metadata.name,
                             "weights_sha256": self.engine.metadata.weights_sha256},
                      classified_at=_now(), report=None, forward=None)
        if prediction is not None and prediction.ok:
            try:
                result["report"], sr = self._report(uid, prediction)
            except Exception as exc:  # the prediction stands; the report's failure is the series' error
                result.update(status="error", error=f"structured report: {type(exc).__name__}: {exc}")
                sr = None
            if sr is not None and self.forward is not None:
                result["forward"] = scp.send(sr, self.forward, aet=self.aet)
                if result["forward"]["ok"]:
                    log.info("series %s: report forwarded to %s (%s)", uid, result["forward"]["destination"],
                             result["forward"]["status"])
                else:
                    log.error("series %s: forwarding the report to %s failed: %s", uid,
                              result["forward"]["destination"], result["forward"]["error"])
        last = self._last_instance.pop(uid, None)
        if last is not None:  # what a modality waits for its report, the idle wait included
            result["seconds_from_last_instance"] = round(time.monotonic() - last, 3)
        path = self.store.write_result(uid, result)
        if result["status"] == "ok":
            log.info("series %s: classified %s (p=%.3f, %d slices): %s", uid, result["label"],
                     result["probabilities"][result["label"]], result["slices_used"], path)
        else:
            log.warning("series %s: %s: %s", uid, result["status"], result.get("error") or result.get("reason"))

    def _report(self, uid: str, prediction):
        from medinfer.listen.report import build_report

        evidence = [_header(Path(f)) for f in prediction.files]
        sr = build_report(prediction, evidence, self.engine.metadata, aet=self.aet)
        path = self.store.report_path(uid)
        buffer = io.BytesIO()
        sr.save_as(buffer, enforce_file_format=True)
        atomic_write(path, buffer.getvalue())
        log.info("series %s: structured report written: %s", uid, path)
        return {"path": str(path), "sop_instance_uid": sr.SOPInstanceUID,
                "series_instance_uid": sr.SeriesInstanceUID, "sop_class_uid": sr.SOPClassUID}, sr


def _problem(ds, series_uid: str, sop_uid: str) -> str:
    """Why an instance cannot be classified, or ""."""
    if not series_uid:
        return "no SeriesInstanceUID"
    if not valid_uid(series_uid):
        return f"SeriesInstanceUID {printable(series_uid)[:40]!r} is not a valid UID"
    if not valid_uid(sop_uid):
        return f"SOPInstanceUID {printable(sop_uid)[:40]!r} is not a valid UID"
    if not any(tag in ds for tag in _IMAGE_TAGS):
        return f"not an image ({ds.get('Modality', 'no Modality')}, no pixel data)"
    return ""


def _header(path: Path):
    return pydicom.dcmread(path, stop_before_pixels=True)


def _failed(uid: str, error: str) -> dict:
    return {"uid": uid, "source": "", "status": "error", "error": error, "label": "", "probabilities": {},
            "slices_used": 0, "skipped": [], "warnings": []}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
