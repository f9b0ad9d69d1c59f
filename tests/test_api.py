"""The public entry points: real signatures (for ``help()`` and editors), and light subpackage imports."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest

import medinfer
from medinfer import evaluation, phantom, training


@pytest.mark.parametrize(("function", "parameter"), [
    pytest.param(medinfer.train, "epochs", id="medinfer.train"),
    pytest.param(training.train, "frozen_epochs", id="medinfer.training.train"),
    pytest.param(medinfer.evaluate, "aggregate", id="medinfer.evaluate"),
    pytest.param(evaluation.evaluate, "split", id="medinfer.evaluation.evaluate"),
    pytest.param(phantom.make_liver_roi, "per_class", id="medinfer.phantom.make_liver_roi"),
    pytest.param(phantom.make_covid_series, "n_series", id="medinfer.phantom.make_covid_series"),
])
def test_public_functions_show_their_parameters(function, parameter):
    params = inspect.signature(function).parameters
    assert parameter in params
    assert not {p.kind for p in params.values()} & {inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD}


def test_subpackages_and_task_presets_import_without_torch(tmp_path):
    # A fresh interpreter (this one has torch loaded), away from the checkout so the installed package is used.
    code = ("import json, sys, medinfer.training, medinfer.training.recipes, medinfer.evaluation, medinfer.phantom,"
            " medinfer.tasks; print(json.dumps('torch' in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) is False
