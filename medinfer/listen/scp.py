"""The DICOM side: a pynetdicom Storage SCP (C-STORE of every storage SOP class, C-ECHO) and the SCU that
forwards a report."""

from __future__ import annotations

import logging
from collections.abc import Callable

from pydicom import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

log = logging.getLogger("medinfer.listen")

FAILURE = 0xC000  # "cannot understand": the instance is refused, ErrorComment says why
MAX_ASSOCIATIONS = 16


def failure(reason: str) -> Dataset:
    status = Dataset()
    status.Status = FAILURE
    status.ErrorComment = reason[:64]  # LO
    return status


def start_server(aet: str, host: str, port: int, on_store: Callable[[object], int | Dataset]):
    """A running SCP on (host, port) that hands each C-STORE event to ``on_store`` (which returns its status)."""
    ae = AE(ae_title=aet)
    ae.maximum_associations = MAX_ASSOCIATIONS
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)

    def accepted(event) -> None:
        log.info("association from %s (%s:%s)", event.assoc.requestor.ae_title, event.assoc.requestor.address,
                 event.assoc.requestor.port)

    def released(event) -> None:
        log.info("association from %s ended", event.assoc.requestor.ae_title)

    def echo(event) -> int:
        log.info("C-ECHO from %s", event.assoc.requestor.ae_title)
        return 0x0000

    handlers = [(evt.EVT_C_STORE, on_store), (evt.EVT_C_ECHO, echo), (evt.EVT_ACCEPTED, accepted),
                (evt.EVT_RELEASED, released), (evt.EVT_ABORTED, released)]
    return ae.start_server((host, port), block=False, evt_handlers=handlers)


def parse_destination(text: str) -> tuple[str, int, str]:
    """``HOST:PORT:AET`` → (host, port, aet); ValueError naming the problem."""
    parts = text.rsplit(":", 2)
    if len(parts) != 3 or not all(parts) or not parts[1].isdigit():
        raise ValueError(f"--forward {text!r}: expected HOST:PORT:AET, e.g. pacs.local:104:PACS")
    return parts[0], int(parts[1]), parts[2]


def send(ds: Dataset, destination: tuple[str, int, str], *, aet: str) -> dict:
    """C-STORE ``ds`` to ``destination``: ``{"destination", "ok", "status"}`` or with ``"error"``; never raises."""
    host, port, called = destination
    outcome: dict = {"destination": f"{host}:{port}:{called}", "ok": False}
    ae = AE(ae_title=aet)
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    try:
        assoc = ae.associate(host, port, ae_title=called)
        if not assoc.is_established:
            outcome["error"] = "association rejected or aborted"
            return outcome
        try:
            status = assoc.send_c_store(ds)
        finally:
            assoc.release()
    except Exception as exc:  # a peer that cannot be reached is a recorded outcome, not a crash
        outcome["error"] = f"{type(exc).__name__}: {exc}"
        return outcome
    if "Status" not in status:
        outcome["error"] = "no response (connection lost or timed out)"
        return outcome
    outcome["status"] = f"0x{status.Status:04X}"
    outcome["ok"] = status.Status == 0x0000 or (status.Status & 0xF000) == 0xB000  # success or warning
    if not outcome["ok"]:
        outcome["error"] = str(status.get("ErrorComment", "refused"))
    return outcome
