"""``medinfer listen`` against real DICOM peers: pynetdicom SCUs sending series, and an Orthanc PACS receiving
the reports. No mocks: every association crosses a loopback socket."""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pydicom
import pytest

pytest.importorskip("pynetdicom")
pytest.importorskip("highdicom")

from pynetdicom import AE  # noqa: E402
from pynetdicom.sop_class import Verification  # noqa: E402

import medinfer  # noqa: E402
from medinfer.listen import Listener  # noqa: E402
from medinfer.listen.report import read_classification  # noqa: E402

pytestmark = [pytest.mark.dicom,
              # the chest CT's PatientName has one component; highdicom says so, rightly, on every report
              pytest.mark.filterwarnings("ignore:The string .* is unlikely to represent:UserWarning")]
ORTHANC = "/usr/sbin/Orthanc"


def free_port() -> int:
    # pynetdicom reports no port it bound to 0: take a free one from the kernel first.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def engine(tiny_exports):
    return medinfer.Engine(tiny_exports("ddc_resnet101")["onnx"])


@pytest.fixture(scope="module")
def chest(chest_ct):
    return [pydicom.dcmread(p) for p in sorted(Path(chest_ct).glob("*.dcm"))]


def send(port: int, datasets, aet: str = "MEDINFER") -> list[int]:
    """C-STORE every dataset over one association; their statuses."""
    ae = AE(ae_title="TESTSCU")
    for uid in {ds.SOPClassUID for ds in datasets}:
        ae.add_requested_context(uid, [ds.file_meta.TransferSyntaxUID for ds in datasets][0])
    assoc = ae.associate("127.0.0.1", port, ae_title=aet)
    assert assoc.is_established
    try:
        return [assoc.send_c_store(ds).Status for ds in datasets]
    finally:
        assoc.release()


def wait_for(path: Path, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} not written within {timeout} s"
        time.sleep(0.1)
    return json.loads(path.read_text())


def copy_as_series(datasets, series_uid: str):
    out = []
    for ds in datasets:
        ds = copy.deepcopy(ds)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        out.append(ds)
    return out


def test_chest_ct_from_two_associations_gets_a_report(engine, chest, chest_ct, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="medinfer.listen")
    port = free_port()
    with Listener(engine, tmp_path, port=port, host="127.0.0.1", idle_seconds=1.0):
        ae = AE(ae_title="TESTSCU")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", port, ae_title="MEDINFER")
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
        statuses: list[list[int]] = []
        halves = [chest[::2], chest[1::2]]
        threads = [threading.Thread(target=lambda h=h: statuses.append(send(port, h))) for h in halves]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        uid = chest[0].SeriesInstanceUID
        result = wait_for(tmp_path / f"{uid}.json")
    assert sorted(s for part in statuses for s in part) == [0] * 64
    expected = engine.predict(chest_ct)
    assert result["status"] == "ok" and result["instances_received"] == 64 and result["unusable"] == []
    assert result["label"] == expected.label
    assert result["probabilities"] == pytest.approx(expected.probabilities, abs=1e-5)
    assert result["seconds_from_last_instance"] >= 1.0  # the idle wait, then classification and the report

    sr = pydicom.dcmread(result["report"]["path"])
    assert sr.SOPInstanceUID == result["report"]["sop_instance_uid"]
    assert sr.Modality == "SR" and sr.StudyInstanceUID == chest[0].StudyInstanceUID
    assert sr.PatientID == chest[0].PatientID and sr.PatientName == chest[0].PatientName
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.SeriesInstanceUID == uid
    assert {i.ReferencedSOPInstanceUID for i in evidence.ReferencedSOPSequence} == {
        ds.SOPInstanceUID for ds in chest}
    label, probabilities = read_classification(sr)
    assert label == expected.label
    assert probabilities == pytest.approx(expected.probabilities, abs=1e-5)
    messages = caplog.text
    for line in ("association from TESTSCU", f"series {uid}: receiving", f"series {uid}: classified",
                 f"series {uid}: structured report written"):
        assert line in messages


def test_unusable_instances_are_reported_and_the_listener_serves_on(engine, ct5n, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="medinfer.listen")
    series = [pydicom.dcmread(p) for p in sorted(Path(ct5n).glob("*"))]
    uid = pydicom.uid.generate_uid()
    no_series = copy_as_series(series[:1], uid)[0]
    del no_series.SeriesInstanceUID
    no_image = copy_as_series(series[:1], uid)[0]
    del no_image.PixelData
    port = free_port()
    with Listener(engine, tmp_path, port=port, host="127.0.0.1", idle_seconds=1.0):
        assert send(port, [no_series, no_image]) == [0xC000, 0xC000]
        good = copy_as_series(series, uid)
        assert send(port, good) == [0] * len(good)
        result = wait_for(tmp_path / f"{uid}.json")
    assert result["status"] == "ok" and result["instances_received"] == len(good)
    assert [u["reason"] for u in result["unusable"]] == ["not an image (CT, no pixel data)"]
    orphan = [json.loads(line) for line in (tmp_path / "unusable.jsonl").read_text().splitlines()]
    assert [o["reason"] for o in orphan] == ["no SeriesInstanceUID"]
    assert "unusable instance" in caplog.text and "no SeriesInstanceUID" in caplog.text


def test_restart_resumes_a_series_received_before_the_stop(engine, ct5n, tmp_path):
    series = copy_as_series([pydicom.dcmread(p) for p in sorted(Path(ct5n).glob("*"))], pydicom.uid.generate_uid())
    uid = series[0].SeriesInstanceUID
    port = free_port()
    with Listener(engine, tmp_path, port=port, host="127.0.0.1", idle_seconds=60):
        send(port, series)
    assert not (tmp_path / f"{uid}.json").exists()
    assert len(list((tmp_path / "incoming" / uid).glob("*.dcm"))) == len(series)
    with Listener(engine, tmp_path, port=free_port(), host="127.0.0.1", idle_seconds=0.5):
        result = wait_for(tmp_path / f"{uid}.json")
    assert result["status"] == "ok" and result["instances_received"] == len(series)


def test_a_series_that_cannot_be_classified_is_an_error_result(engine, ct5n, tmp_path):
    series = copy_as_series([pydicom.dcmread(p) for p in sorted(Path(ct5n).glob("*"))], pydicom.uid.generate_uid())
    for ds in series:
        ds.PixelData = b"\0" * 10  # truncated: every slice is unusable, so is the series
    uid = series[0].SeriesInstanceUID
    port = free_port()
    with Listener(engine, tmp_path, port=port, host="127.0.0.1", idle_seconds=0.5) as listener:
        send(port, series)
        result = wait_for(tmp_path / f"{uid}.json")
        assert listener._server is not None  # still serving
        echo = AE(ae_title="TESTSCU")
        echo.add_requested_context(Verification)
        assoc = echo.associate("127.0.0.1", port, ae_title="MEDINFER")
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
    assert result["status"] == "error" and result["error"] and result["report"] is None
    assert not (tmp_path / f"{uid}.sr.dcm").exists()


def test_forward_to_an_unreachable_pacs_is_recorded(engine, ct5n, tmp_path):
    series = copy_as_series([pydicom.dcmread(p) for p in sorted(Path(ct5n).glob("*"))], pydicom.uid.generate_uid())
    port = free_port()
    with Listener(engine, tmp_path, port=port, host="127.0.0.1", idle_seconds=0.5,
                  forward=f"127.0.0.1:{free_port()}:NOBODY"):
        send(port, series)
        result = wait_for(tmp_path / f"{series[0].SeriesInstanceUID}.json")
    assert result["status"] == "ok" and result["report"] is not None
    assert result["forward"]["ok"] is False and result["forward"]["error"]


@pytest.fixture
def orthanc(tmp_path):
    """A private Orthanc on loopback (never the Debian package's service): (dicom port, http url)."""
    if not os.path.exists(ORTHANC):
        pytest.skip(f"{ORTHANC} not installed (Debian package orthanc; .ci/run installs it where apt-get works)")
    dicom, http = free_port(), free_port()
    config = {"Name": "medinfer-test", "StorageDirectory": str(tmp_path / "orthanc-storage"),
              "IndexDirectory": str(tmp_path / "orthanc-index"), "DicomAet": "ORTHANC", "DicomPort": dicom,
              "HttpPort": http, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
              "DicomCheckCalledAet": False, "DicomModalities": {"medinfer": ["MEDINFER", "127.0.0.1", 11112]},
              "Plugins": []}
    path = tmp_path / "orthanc.json"
    path.write_text(json.dumps(config))
    log = (tmp_path / "orthanc.log").open("w")
    proc = subprocess.Popen([ORTHANC, str(path)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/system", timeout=1).read()
                break
            except OSError:
                assert proc.poll() is None, f"Orthanc exited: {(tmp_path / 'orthanc.log').read_text()[-2000:]}"
                assert time.monotonic() < deadline, "Orthanc did not answer /system within 30 s"
                time.sleep(0.2)
        yield dicom, url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(tmp_path / "orthanc-storage", ignore_errors=True)


@pytest.mark.orthanc
def test_report_forwarded_to_orthanc(engine, chest, orthanc, tmp_path):
    dicom, url = orthanc
    port = free_port()
    with Listener(engine, tmp_path / "out", port=port, host="127.0.0.1", idle_seconds=1.0,
                  forward=f"127.0.0.1:{dicom}:ORTHANC"):
        send(port, chest)
        result = wait_for(tmp_path / "out" / f"{chest[0].SeriesInstanceUID}.json")
    assert result["forward"] == {"destination": f"127.0.0.1:{dicom}:ORTHANC", "ok": True, "status": "0x0000"}
    query = json.dumps({"Level": "Instance", "Query": {"Modality": "SR"}, "Expand": True}).encode()
    found = json.loads(urllib.request.urlopen(urllib.request.Request(f"{url}/tools/find", data=query)).read())
    assert [i["MainDicomTags"]["SOPInstanceUID"] for i in found] == [result["report"]["sop_instance_uid"]]


def test_cli_answers_echo_and_stops_on_sigterm(tiny_exports, tmp_path):
    import signal
    import sys

    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(medinfer.__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "medinfer", "listen", "--engine",
                             str(tiny_exports("ddc_resnet101")["onnx"]), "--port", str(port), "--host", "127.0.0.1",
                             "--out", str(tmp_path)], stderr=subprocess.PIPE, text=True, env=env)
    try:
        ae = AE(ae_title="TESTSCU")
        ae.add_requested_context(Verification)
        deadline = time.monotonic() + 30
        while not (assoc := ae.associate("127.0.0.1", port, ae_title="MEDINFER")).is_established:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.2)
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    log = proc.stderr.read()
    assert "listening as MEDINFER" in log and "C-ECHO from TESTSCU" in log and "stopped" in log
