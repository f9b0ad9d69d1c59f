"""CPU engines side by side, full-size models: ONNX Runtime fp32 (baseline) against eager PyTorch, OpenVINO
fp32 / bf16 / int8 and ONNX Runtime int8 — latency, throughput, end to end through ``predict_many`` (also
against the naive per-slice PyTorch pipeline) — with each reduced precision's agreement with fp32 on the real
chest CT and phantom series recorded beside its speed (``extra_info.accuracy``), and the CPU's ISA features in
the machine info (:mod:`medinfer.bench.cpu_engines`).

    pytest benchmarks/bench_cpu_engines.py --benchmark-json=benchmarks/results/cpu-engines-<machine>.json

Targets (issue 13), on a CPU with AMX: Res-Dense Net end to end ≥ 3× ONNX Runtime fp32 and ≥ 6× the naive
pipeline, with ≤ 1 % slice-label disagreement against fp32. Elsewhere the same rows are reported.
"""

from __future__ import annotations

import pytest

from medinfer.bench import cpu_engines as bench

MODELS = ("resdense_net", "ddc_resnet101")
BATCH = {"resdense_net": 8, "ddc_resnet101": 64}  # the engines' CPU batch sizes (medinfer.engine.base.cpu_batch)


@pytest.fixture(scope="session")
def phantom_series(tmp_path_factory):
    from medinfer.phantom.covid import make_covid_series

    out = make_covid_series(tmp_path_factory.mktemp("phantom"), 6, seed=0, progress=False)
    return sorted({p.parent for p in out.rglob("*.jpg")})[:2]


@pytest.fixture(scope="session")
def setups(artefacts, chest_folder, phantom_series):
    from medinfer.io import load_series

    out = {}
    series = [load_series(chest_folder), *(load_series(p) for p in phantom_series)]
    for model in MODELS:
        art = artefacts(model)
        engines, skipped = bench.open_engines(art, bench.int8_export(art, chest_folder))
        out[model] = {"engines": engines, "skipped": skipped, "accuracy": bench.accuracy(engines, series),
                      "model": {}, "throughput": {},
                      "e2e": {(c.group, c.candidate_label): c
                              for c in bench.end_to_end_comparisons(art, engines, chest_folder)}}
        for c in bench.model_comparisons(art, engines, BATCH[model]):
            out[model]["model" if c.batch == 1 else "throughput"][c.candidate_label] = c
    return out


def _run(compare, benchmark, setup, comparison, role, rounds):
    if comparison is None:
        pytest.skip("; ".join(s.reason for s in setup["skipped"]) or "not available here")
    if role == "candidate":
        label = comparison.candidate_label.removesuffix(" predict_many")
        benchmark.extra_info["accuracy"] = setup["accuracy"].get(label)
    compare(comparison, role, rounds=rounds)


@pytest.mark.parametrize("role", ["baseline", *bench.CANDIDATES])
@pytest.mark.parametrize("mode", ["model", "throughput"])
@pytest.mark.parametrize("model", MODELS)
def test_cpu_engines(compare, benchmark, setups, model, mode, role):
    setup = setups[model]
    rows = setup[mode]
    if role == "baseline":
        _run(compare, benchmark, setup, next(iter(rows.values()), None), "baseline", 5)
    else:
        _run(compare, benchmark, setup, rows.get(role), "candidate", 5)


@pytest.mark.parametrize("role", ["baseline", *bench.CANDIDATES])
@pytest.mark.parametrize("against", ["CPU engines", "vs naive"])
@pytest.mark.parametrize("model", MODELS)
def test_cpu_engines_end_to_end(compare, benchmark, setups, model, against, role):
    setup = setups[model]
    rows = {label: c for (group, label), c in setup["e2e"].items() if group.endswith(against)}
    if role == "torch eager" and against == "vs naive":
        pytest.skip("the naive pipeline is eager PyTorch itself; its engine is compared in the other group")
    if role == "baseline":
        _run(compare, benchmark, setup, next(iter(rows.values()), None), "baseline", 3)
    else:
        _run(compare, benchmark, setup, rows.get(f"{role} predict_many"), "candidate", 3)
