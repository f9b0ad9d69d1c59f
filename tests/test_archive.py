"""Archive runs (medinfer.archive, `medinfer predict ROOT --output`): discovery of every series under folders of
studies, selection rules, fault isolation, results files, resume after a killed run, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from medinfer.archive import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, predict_archive, read_results
from medinfer.cli import main
from medinfer.io.select import Selection


@pytest.fixture(scope="module")
def archive(chest_ct, tmp_path_factory):
    """14 series in 5 studies: good ones, three broken ways, a multi-frame file, and a study with a localizer,
    two reconstructions and a derived series."""
    from medinfer.phantom import synthesize_archive

    root = tmp_path_factory.mktemp("archive") / "studies"
    return synthesize_archive(root, 14, slices=(3, 6), size=32, broken=3, seed=7, progress=False)


@pytest.fixture(scope="module")
def onnx(tiny_exports):
    return tiny_exports("resdense_net")["onnx"]


def _by_folder(manifest, records):
    root = str(manifest.root)
    return {os.path.relpath(r["source"], root): r for r in records}


def assert_same_results(got: list[dict], expected: list[dict]) -> None:
    """The same series with the same outcomes: everything but timings equal, probabilities to 1e-6 (batches may
    be composed differently from run to run)."""
    want = {(r["uid"], r["source"]): r for r in expected}
    assert sorted(want) == sorted((r["uid"], r["source"]) for r in got)
    for r in got:
        w = want[(r["uid"], r["source"])]
        plain = ("timings", "probabilities", "slice_probabilities")
        assert {k: v for k, v in r.items() if k not in plain} == {k: v for k, v in w.items() if k not in plain}
        assert r.get("probabilities", {}) == pytest.approx(w.get("probabilities", {}), abs=1e-6)


def test_every_series_of_every_study_is_classified_failed_or_set_aside(archive, onnx, tmp_path, capsys):
    out = tmp_path / "results.jsonl"
    assert main(["predict", str(archive.root), "--engine", str(onnx), "--output", str(out)]) == EXIT_SOME_FAILED
    records = read_results(out)
    assert len(records) == len(archive.series)  # one line per series, each once
    found = _by_folder(archive, records)
    for s in archive.series:
        r = found[s.folder]
        assert r["status"] == s.expected, (s, r)
        if s.expected == "ok":
            assert r["uid"] == s.series_uid and r["slices_used"] == s.slices and r["label"]
            assert abs(sum(r["probabilities"].values()) - 1) < 1e-5
            assert set(r["timings"]) == {"load", "preprocess", "infer", "total"}
        elif s.expected == "error":
            assert r["error"] and str(archive.root / s.folder) in r["error"] and r["skipped"], r
        else:
            assert "default rule" in r["reason"]
    text = capsys.readouterr().out
    assert "3 failed" in text and "2 set aside" in text and "ImageType!=LOCALIZER" in text
    assert "slice_probabilities" not in records[0]  # per-slice rows only with --slices


def test_selection_rules_on_the_command_line_and_in_a_file(archive, onnx, tmp_path):
    thick = next(s for s in archive.series if s.kind == "reconstruction" and s.folder.endswith("03"))
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"exclude": ["ConvolutionKernel=C"], "defaults": True}))
    out = tmp_path / "r.jsonl"
    assert main(["predict", str(archive.root), "--engine", str(onnx), "--output", str(out),
                 "--rules", str(rules)]) == EXIT_SOME_FAILED
    r = _by_folder(archive, read_results(out))[thick.folder]
    assert r["status"] == "excluded" and "ConvolutionKernel=C" in r["reason"] and str(rules) in r["reason"]

    summary = predict_archive([archive.root], onnx, selection=Selection.parse(defaults=False), progress=False)
    assert summary.counts["excluded"] == 0 and summary.counts["ok"] == len(archive.by_expected("ok")) + 2

    only = predict_archive([archive.root], onnx, progress=False,
                           selection=Selection.parse(select=["SliceThickness<=5", "SeriesNumber=1..1"]))
    assert only.counts["ok"] >= 1 and all("SeriesNumber" in why or "SliceThickness" in why or "default" in why
                                          for _, why in only.excluded)


def test_all_classified_exits_0_and_nothing_classified_exits_1(archive, onnx, tmp_path, capsys):
    good = archive.root / archive.by_expected("ok")[0].folder
    assert main(["predict", str(good), "--engine", str(onnx)]) == EXIT_OK
    broken = archive.root / archive.by_expected("error")[0].folder
    assert main(["predict", str(broken), "--engine", str(onnx)]) == EXIT_USAGE
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", str(empty), "--engine", str(onnx)]) == EXIT_USAGE
    assert "no series found" in capsys.readouterr().out
    for bad in (["--select", "Nonsense=1"], ["--output", str(tmp_path / "r.csv")], ["--resume"]):
        assert main(["predict", str(good), "--engine", str(onnx), *bad]) == EXIT_USAGE
    out = tmp_path / "exists.jsonl"
    out.write_text("")
    assert main(["predict", str(good), "--engine", str(onnx), "--output", str(out)]) == EXIT_USAGE
    assert "pass --resume" in capsys.readouterr().err


KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    from medinfer.archive import predict_archive

    def on_record(position, record, seen=[]):
        seen.append(record)
        if len(seen) == int(sys.argv[3]):
            # Killed mid-write: half of the next line, no close, no flush of anything else.
            with open(sys.argv[2], "a") as f:
                f.write('{"uid": "1.2.3", "source": "half a li')
            os.kill(os.getpid(), signal.SIGKILL)

    predict_archive([sys.argv[1]], sys.argv[4], output=sys.argv[2], progress=False, on_record=on_record, loaders=1)
""")


@pytest.mark.parametrize("kill_after", [1, 6])
def test_resume_after_a_killed_run_gives_no_duplicate_no_gap_same_results(archive, onnx, tmp_path, kill_after):
    complete = tmp_path / "complete.jsonl"
    predict_archive([archive.root], onnx, output=complete, progress=False)
    out = tmp_path / "killed.jsonl"
    proc = subprocess.run([sys.executable, "-c", KILLED_RUN, str(archive.root), str(out), str(kill_after), str(onnx)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    before = out.read_text().splitlines()
    assert len(before) == kill_after + 1 and not before[-1].endswith("}")  # the partial line

    summary = predict_archive([archive.root], onnx, output=out, resume=True, progress=False)
    assert sum(summary.resumed.values()) == kill_after
    assert any("partial last line" in n for n in summary.notes)
    after = read_results(out)
    keys = [(r["uid"], r["source"]) for r in after]
    assert len(keys) == len(set(keys)) == len(archive.series)
    assert_same_results(after, read_results(complete))
    assert summary.exit_code == EXIT_SOME_FAILED  # the failures recorded before the kill still count

    again = predict_archive([archive.root], onnx, output=out, resume=True, progress=False)
    assert sum(again.counts.values()) == 0 and len(read_results(out)) == len(archive.series)


def test_a_damaged_line_in_the_middle_is_refused_not_skipped(archive, onnx, tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text('{"uid": "a", "source": "b", "status": "ok"}\nnot json\n{"uid": "c", "source": "d"}\n')
    with pytest.raises(ValueError, match=r"r.jsonl, line 2: not a JSON record"):
        predict_archive([archive.root], onnx, output=out, resume=True, progress=False)


def test_parquet_results_resume_and_match_jsonl(archive, onnx, tmp_path):
    pytest.importorskip("pyarrow", reason="Parquet output needs pyarrow")
    jsonl, parquet = tmp_path / "r.jsonl", tmp_path / "r.parquet"
    predict_archive([archive.root], onnx, output=jsonl, progress=False, slices=True)
    predict_archive([archive.root], onnx, output=parquet, progress=False, slices=True)
    rows = {(r["uid"], r["source"]): r for r in read_results(parquet)}
    for r in read_results(jsonl):
        row = rows[(r["uid"], r["source"])]
        assert row["status"] == r["status"]
        for name, p in (r.get("probabilities") or {}).items():
            assert row[f"prob_{name}"] == pytest.approx(p)
        if r["status"] == "ok":
            np.testing.assert_allclose(row["slice_probabilities"], r["slice_probabilities"], atol=1e-6)
            assert json.loads(row["skipped"]) == r["skipped"]
    again = predict_archive([archive.root], onnx, output=parquet, resume=True, progress=False)
    assert sum(again.counts.values()) == 0 and len(read_results(parquet)) == len(archive.series)


def test_the_same_series_listed_twice_is_classified_once(archive, onnx, tmp_path):
    good = archive.root / archive.by_expected("ok")[0].folder
    summary = predict_archive([good, good], onnx, progress=False)
    assert summary.counts == {"ok": 1}
