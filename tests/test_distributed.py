"""The archive run on Ray (medinfer.distributed): the same records as the single-process run, resume without
duplicates or gaps, several actors, a batch that fails as a whole, and no Ray where it is not asked for.

One local Ray cluster (2 CPUs) for the module: starting Ray takes 10-20 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="needs Ray: pip install 'medinfer[ray]'")

from medinfer import distributed  # noqa: E402
from medinfer.archive import predict_archive as local_predict_archive  # noqa: E402
from medinfer.archive import read_results  # noqa: E402

pytestmark = pytest.mark.ray

SLICES = 8
# study -> series folders (each SLICES slices of the chest CT, a different stretch of it)
STUDIES = {"study-a": ["s1", "s2"], "study-b": ["s1", "s2"], "study-c": ["s1"]}


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _copy_series(files: list[Path], dest: Path, *, localizer: bool = False) -> str:
    import pydicom
    from pydicom.uid import generate_uid

    dest.mkdir(parents=True)
    uid = generate_uid()
    for i, f in enumerate(files):
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = generate_uid()
        if localizer:
            ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.save_as(dest / f"{i:03d}.dcm")
    return uid


@pytest.fixture(scope="module")
def archive(chest_ct, tmp_path_factory) -> Path:
    """5 good series in 3 studies, a localizer (set aside by the default rules), a series of truncated files
    (fails to load) and a folder of garbage (no series)."""
    root = tmp_path_factory.mktemp("ray-archive") / "archive"
    files = sorted(Path(chest_ct).glob("*.dcm"))
    start = 0
    for study, series in STUDIES.items():
        for name in series:
            _copy_series(files[start:start + SLICES], root / study / name)
            start += SLICES
    _copy_series(files[:2], root / "study-c" / "scout", localizer=True)
    broken = root / "study-broken" / "truncated"
    _copy_series(files[:SLICES], broken)
    for f in broken.iterdir():  # headers intact, pixel data cut short
        data = f.read_bytes()
        f.write_bytes(data[: len(data) // 2])
    garbage = root / "garbage"
    garbage.mkdir()
    for i in range(3):
        (garbage / f"junk{i}.bin").write_bytes(bytes(range(256)) * (i + 1))
    return root


@pytest.fixture(scope="module")
def engine(tiny_exports) -> Path:
    return Path(tiny_exports("resdense_net")["onnx"])


@pytest.fixture(scope="module")
def local(archive, engine, tmp_path_factory):
    """The single-process run: (summary, records by key, results file)."""
    out = tmp_path_factory.mktemp("local") / "results.jsonl"
    records: dict = {}
    summary = local_predict_archive([archive], engine, output=out, progress=False,
                                    on_record=lambda _, r: records.setdefault((r["uid"], r["source"]), r))
    return summary, records, out


@pytest.fixture(scope="module")
def on_ray(cluster, archive, engine, tmp_path_factory):
    """The same archive on Ray with two actors: (summary, engine info, records by key, results file)."""
    out = tmp_path_factory.mktemp("ray") / "results.jsonl"
    records: dict = {}
    summary, info = distributed.predict_archive(
        [archive], engine, output=out, workers=2, progress=False,
        on_record=lambda _, r: records.setdefault((r["uid"], r["source"]), r))
    return summary, info, records, out


def _keys(path: Path) -> list[tuple[str, str]]:
    return [(r["uid"], r["source"]) for r in read_results(path)]


def test_ray_records_match_the_single_process_run(local, on_ray, engine):
    from medinfer.engine import Engine

    l_summary, l_records, l_out = local
    r_summary, info, r_records, r_out = on_ray
    assert sorted(_keys(r_out)) == sorted(_keys(l_out)) and len(set(_keys(r_out))) == len(_keys(r_out))
    assert r_records.keys() == l_records.keys()
    floats = ("timings", "probabilities", "slice_probabilities")
    for key, lr in l_records.items():
        rr = r_records[key]
        assert rr.keys() == lr.keys(), key
        assert {k: v for k, v in rr.items() if k not in floats} == {k: v for k, v in lr.items() if k not in floats}
        assert rr.get("probabilities", {}).keys() == lr.get("probabilities", {}).keys()
        for name, p in lr.get("probabilities", {}).items():
            assert rr["probabilities"][name] == pytest.approx(p, abs=1e-6)
        if lr["status"] != "excluded":
            np.testing.assert_allclose(np.reshape(rr["slice_probabilities"], (-1,)),
                                       np.reshape(lr["slice_probabilities"], (-1,)), rtol=0, atol=1e-6)
            assert rr["timings"].keys() == lr["timings"].keys()
    assert r_summary.counts == l_summary.counts and r_summary.labels == l_summary.labels
    assert r_summary.slices == l_summary.slices and r_summary.exit_code == l_summary.exit_code == 3
    assert sorted(r_summary.failures) == sorted(l_summary.failures)
    assert sorted(r_summary.excluded) == sorted(l_summary.excluded)
    assert info["backend"] == "onnxruntime" and info["device"] == "cpu"
    assert info["model"] == Engine(engine).metadata.to_dict()
    # the results file holds what a local run writes: no per-slice rows without slices=True
    assert all("slice_probabilities" not in r for r in read_results(r_out))


def test_statuses(on_ray):
    summary, _, records, _ = on_ray
    assert summary.counts == {"ok": 5, "error": 2, "excluded": 1}, summary.format()
    by_name = {Path(r["source"]).name: r for r in records.values()}
    assert by_name["scout"]["status"] == "excluded" and "LOCALIZER" in by_name["scout"]["reason"]
    for name in ("truncated", "garbage"):
        assert by_name[name]["status"] == "error" and by_name[name]["error"], name
    ok = [r for r in records.values() if r["status"] == "ok"]
    assert len(ok) == 5 and len({r["uid"] for r in ok}) == 5
    assert all(r["slices_used"] == SLICES and r["label"] for r in ok)


def test_resume_after_a_partial_results_file(cluster, archive, engine, local, tmp_path):
    _, _, complete = local
    partial = tmp_path / "partial.jsonl"
    lines = complete.read_text(encoding="utf-8").splitlines(keepends=True)
    partial.write_text("".join(lines[:2]), encoding="utf-8")
    summary, _ = distributed.predict_archive([archive], engine, output=partial, resume=True, progress=False)
    keys = _keys(partial)
    assert len(keys) == len(set(keys)), "a series recorded twice"
    assert sorted(keys) == sorted(_keys(complete)), "a series missing"
    assert sum(summary.resumed.values()) == 2 and sum(summary.counts.values()) == len(lines) - 2
    # the two resumed records are untouched, first in the file
    assert [json.loads(line) for line in partial.read_text(encoding="utf-8").splitlines()[:2]] == [
        json.loads(line) for line in lines[:2]]


def test_a_discovery_failure_stops_the_run_with_the_same_error(cluster, archive, engine, monkeypatch, tmp_path):
    """A unit that cannot be read on the worker (here: gone between listing and discovery) raises the medinfer
    error a local run raises, not Ray's wrapper; what was recorded stays in the results file."""
    from medinfer.errors import InputError
    from medinfer.io import catalog

    real = catalog.units
    monkeypatch.setattr(catalog, "units", lambda roots: [*real(roots), catalog.Unit((str(tmp_path / "gone"),),
                                                                                    "gone")])
    with pytest.raises(InputError, match="no such file or folder") as raised:
        distributed.predict_archive([archive], engine, output=tmp_path / "r.jsonl", progress=False)
    assert not isinstance(raised.value, ray.exceptions.RayError)
    assert (tmp_path / "r.jsonl").exists()


def test_a_batch_that_fails_as_a_whole_gives_each_series_an_error_record(archive, engine, monkeypatch):
    """In the actor's code (run here, without Ray): a failure outside any one series' load or inference
    becomes an error record for every series of the batch not yet classified."""
    import medinfer.archive.run as archive_run
    from medinfer.io.catalog import discover

    refs = [r for r in discover([archive / "study-a"]) if hasattr(r, "files")]
    assert len(refs) == 2
    real = archive_run.classify

    def failing(engine_, refs_, **kw):
        it = real(engine_, refs_, **kw)
        yield next(it)
        raise RuntimeError("the engine went away")

    monkeypatch.setattr(archive_run, "classify", failing)
    actor = distributed.Classifier(path=str(engine), backend="onnxruntime", device="cpu", options={"threads": 1},
                                   aggregate="mean", k=None, acquisition=None)
    rows = [{"kind": "ref", "json": json.dumps(r.to_dict())} for r in refs]
    out = actor({"kind": [r["kind"] for r in rows], "json": [r["json"] for r in rows]})
    records = [json.loads(s) for s in out["record"]]
    assert sorted((r["uid"], r["source"]) for r in records) == sorted(r.key for r in refs)
    assert [r["status"] for r in records] == ["ok", "error"]
    assert "the engine went away" in records[1]["error"] and records[1]["slices_used"] == 0


def test_importing_medinfer_does_not_import_ray():
    code = ("import sys, medinfer, medinfer.archive, medinfer.distributed, medinfer.cli.predict; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_missing_ray_names_the_extra(monkeypatch):
    from medinfer.extras import MissingExtra

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(MissingExtra, match=r"pip install 'medinfer\[ray\]'"):
        distributed.predict_archive(["."], "model.onnx")
