"""Probe parameters: checked against each probe's declared constraints before anything is read
(exit 2 naming the parameter, the value and what is allowed), typed once at the command
line's edge; a fit that diverges to NaN ends with exit 1 and writes no run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import planted_task, run_cli, write_feature_store
from classifiers import make_estimator
from classifiers.probes.base import FitDivergedError, ProbeParameterError
from classifiers.runs import steps
from cli import classify_app

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    d = tmp_path_factory.mktemp("params")
    table, feats = planted_task(n=120)
    write_feature_store(d / "cache.zarr", table["sequence"], feats)
    table.to_csv(d / "task.csv", index=False)
    return d


# (probe, --param, what the message must say is allowed, how it names the value)
BAD = [
    ("logistic", "C=-1", "a float in the range (0.0, inf)", "Got -1 "),
    ("logistic", "C=abc", "a float in the range (0.0, inf)", "Got 'abc' "),
    ("logistic", "C=nan", "a float in the range (0.0, inf)", "Got nan "),
    ("logistic", "C=inf", "a float in the range (0.0, inf)", "Got inf "),
    ("logistic", "bogus=1", "its parameters are C, max_iter, tol", "no parameter 'bogus'"),
    ("xgboost", "n_estimators=-5", "an int in the range [1, inf)", "Got -5 "),
    ("xgboost", "learning_rate=1e300", "a float in the range (0.0, 1.0]", "Got 1e+300 "),
    ("xgboost", "reg_lambda=1e300", "a float in the range [0.0, 3.4", "Got 1e+300 "),
    ("mlp", "hidden_layer_sizes=[0]", "each in [1, 8192]", "Got (0,) "),
    ("mlp", "hidden_layer_sizes=[100000000]", "each in [1, 8192]", "Got (100000000,) "),
    ("layer-weighted", "hidden_layer_sizes=[8,8,8,8,8,8,8,8,8]", "at most 8 integers", "Got (8, "),
    ("mlp", "max_epochs=2.5", "an int in the range [1, inf)", "Got 2.5 "),
]


@pytest.mark.parametrize("model, param, allowed, got", BAD)
def test_bad_parameters_exit_2_naming_parameter_value_and_what_is_allowed(
        model, param, allowed, got, tmp_path, monkeypatch, capsys):
    name = param.partition("=")[0]
    # The data file does not exist: the parameter is refused before anything is read.
    code, out, err = run_cli(classify_app, [
        "fit", "--probe", model, "--data", tmp_path / "absent.csv", "--cache",
        tmp_path / "absent.zarr", "--out", tmp_path / "run", "--param", param],
        monkeypatch, capsys)
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert f"'{name}'" in err and allowed in err and got in err, err
    assert "absent.csv" not in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["sweep", "cv"])
def test_sweep_and_cv_check_parameters_first_too(command, tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(classify_app, [
        command, "--data", tmp_path / "absent.csv", "--cache", tmp_path / "absent.zarr",
        "--out", tmp_path / "run", "--param", "C=0"], monkeypatch, capsys)
    assert code == 2 and "'C'" in err and "Got 0" in err and "Traceback" not in err


def test_parameters_are_typed_once_at_the_edge(task, tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(classify_app, [
        "fit", "--probe", "mlp", "--data", task / "task.csv", "--cache", task / "cache.zarr",
        "--out", tmp_path / "run", "--bootstrap", "20", "--param", "hidden_layer_sizes=[16,8]",
        "--param", "learning_rate=1e-2", "--param", "max_epochs=2", "--param",
        "standardize=true"], monkeypatch, capsys)
    assert code == 0, err
    saved = json.loads((tmp_path / "run" / "model" / "model.json").read_text())
    params = saved["params"]
    assert params["hidden_layer_sizes"] == [16, 8] and params["max_epochs"] == 2
    assert params["learning_rate"] == 0.01 and params["standardize"] is True


def test_a_parameter_given_twice_is_refused(tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(classify_app, [
        "fit", "--data", tmp_path / "a.csv", "--cache", tmp_path / "c.zarr", "--out",
        tmp_path / "run", "--param", "C=1", "--param", "C=2"], monkeypatch, capsys)
    assert code == 2 and "--param C is given twice" in err


def test_constraints_hold_in_python_too():
    with pytest.raises(ProbeParameterError, match=r"'C' parameter .* Got -1 instead"):
        make_estimator("logistic", C=-1)
    with pytest.raises(ProbeParameterError, match="has no parameter 'bogus'"):
        make_estimator("xgboost", bogus=1)
    # A ValueError and a TypeError, as scikit-learn's own parameter errors are.
    with pytest.raises(TypeError):
        make_estimator("mlp", hidden_layer_sizes=(True,))
    assert make_estimator("mlp", hidden_layer_sizes=[64, 32]).hidden_layer_sizes == [64, 32]


@pytest.mark.parametrize("model, params", [
    ("layer-weighted", ["learning_rate=1e300"]),
    ("mlp", ["learning_rate=1e300", "max_epochs=2"]),
])
def test_a_diverging_fit_exits_1_and_writes_no_run(model, params, task, tmp_path, monkeypatch,
                                                    capsys):
    out = tmp_path / "new" / "deeper" / "run"
    args = ["fit", "--probe", model, "--data", task / "task.csv", "--cache", task / "cache.zarr",
            "--out", out, "--bootstrap", "20"]
    if model == "layer-weighted":
        args += ["--layers", "1-2"]
    for p in params:
        args += ["--param", p]
    code, _, err = run_cli(classify_app, args, monkeypatch, capsys)
    assert code == 1, err
    assert err.startswith("error: training diverged") and "learning_rate" in err, err
    assert "Traceback" not in err
    # Nothing half-written: no run, no staging directory, not even the parents it made.
    assert not (tmp_path / "new").exists()


def test_non_finite_scores_are_refused_whatever_the_probe():
    # The last guard before anything is recorded: probabilities that are not finite mean the
    # fit failed, for any probe. Here a fitted logistic probe whose weights went NaN.
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 4)), np.arange(60) % 2
    probe = make_estimator("logistic").fit(X, y)
    proba, pred = steps.predicted(probe, X, "logistic")
    assert np.isfinite(proba).all() and (pred == probe.predict(X)).all()
    probe.pipeline_[-1].coef_[:] = np.nan
    with pytest.raises(FitDivergedError, match="logistic probe's fit diverged.*C=1.0"):
        steps.predicted(probe, X, "logistic")


def test_a_diverging_fit_says_one_line_on_the_real_command_line(task, tmp_path):
    # A real process: no NumPy overflow warning or traceback around the message.
    done = subprocess.run(
        [sys.executable, "-c", "from cli.classify_app import main; main()", "fit", "--probe",
         "layer-weighted", "--layers", "1-2", "--data", str(task / "task.csv"), "--cache",
         str(task / "cache.zarr"), "--out", str(tmp_path / "run"), "--param",
         "learning_rate=1e300"], capture_output=True, text=True, cwd=tmp_path.parent,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(
            filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)]))}, timeout=300)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("error: training diverged") and done.stderr.count("\n") == 1, \
        done.stderr
    assert not (tmp_path / "run").exists() and list(tmp_path.iterdir()) == []
