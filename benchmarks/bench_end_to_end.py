"""A whole series, end to end and around the model.

* end to end: the chest CT's DICOM folder → a series prediction. Baseline: what a user would write without
  medinfer (pydicom + numpy + a PyTorch per-slice loop). Candidate: ``Engine(".onnx").predict_many``.
  Target on 2 CPU cores: ≥ 2×.
* runtime overhead: ``predict_many`` on the loaded series (preprocessing, batching and bookkeeping
  included) vs ONNX Runtime's ``session.run`` on the same slices already preprocessed and batched.
  Target: ≤ 10 % slower.

    pytest benchmarks/bench_end_to_end.py --benchmark-json=benchmarks/results/end-to-end-<machine>.json
"""

from __future__ import annotations

import numpy as np
import pytest

from medinfer.bench import cases
from medinfer.bench.suite import MODELS


@pytest.fixture(scope="module")
def comparisons(artefacts, chest_folder):
    return {m: (cases.end_to_end_comparison(artefacts(m), chest_folder),
                cases.overhead_comparison(artefacts(m), chest_folder)) for m in MODELS}


@pytest.mark.parametrize("role", ["baseline", "candidate"])
@pytest.mark.parametrize("model", MODELS)
def test_end_to_end(compare, comparisons, model, role):
    compare(comparisons[model][0], role, rounds=3)


@pytest.mark.parametrize("role", ["baseline", "candidate"])
@pytest.mark.parametrize("model", MODELS)
def test_runtime_overhead(compare, comparisons, model, role):
    compare(comparisons[model][1], role)


def test_naive_baseline_computes_the_same_answer(comparisons):
    # The comparison is only fair if both sides classify the series the same way.
    e2e = comparisons["ddc_resnet101"][0]
    naive = e2e.baseline()
    (ours,) = e2e.candidate()
    np.testing.assert_allclose(list(ours.probabilities.values()), naive, atol=1e-3)
