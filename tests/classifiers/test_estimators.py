"""The probe estimators: scikit-learn compatibility, accuracy, seeding, early stopping, labels."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.utils.estimator_checks import parametrize_with_checks

from classifiers import (
    ESTIMATORS,
    LayerWeightedProbe,
    LogisticProbe,
    MLPClassifier,
    XGBoostProbe,
    make_estimator,
)
from embedcache.errors import InputError

# Small settings keep the checks fast: each distinct data shape costs the MLP one XLA
# compilation. Enough epochs and a larger step for the MLP to pass the accuracy checks.
CHECKED = [
    MLPClassifier(max_epochs=3, learning_rate=1e-2),
    LogisticProbe(),
    XGBoostProbe(n_estimators=10, n_jobs=1),
    LayerWeightedProbe(max_epochs=3, hidden_layer_sizes=(8,)),
]


def _check_name(check):
    return getattr(check, "func", check).__name__


# Each of these costs the MLP one or more XLA compilations for data shapes no other check
# uses (seconds each on two shared cores); together they would double this file's run
# time, so for the MLP and the layer-weighted probe (an MLP subclass) they run with the slow
# tests (`pytest -m slow`). Every other check, for every estimator, runs by default.
MLP_SLOW_CHECKS = {
    "check_classifier_data_not_an_array",
    "check_classifiers_classes",
    "check_decision_proba_consistency",
    "check_dont_overwrite_parameters",
    "check_dtype_object",
    "check_estimators_dtypes",
    "check_estimators_nan_inf",
    "check_estimators_overwrite_params",
    "check_fit2d_1feature",
    "check_fit_check_is_fitted",
    "check_fit_score_takes_y",
    "check_n_features_in_after_fitting",
    "check_pipeline_consistency",
    "check_positive_only_tag_during_fit",
}

# No check is expected to fail: expected_failed_checks is not given.
_ALL_CHECKS = parametrize_with_checks(CHECKED)
_CHECK_PARAMS = [
    pytest.param(
        estimator,
        check,
        marks=pytest.mark.slow
        if isinstance(estimator, MLPClassifier) and _check_name(check) in MLP_SLOW_CHECKS
        else (),
    )
    for estimator, check in _ALL_CHECKS.args[1]
]


@pytest.mark.parametrize(_ALL_CHECKS.args[0], _CHECK_PARAMS, **_ALL_CHECKS.kwargs)
def test_sklearn_estimator_checks(estimator, check):
    if _check_name(check) == "check_array_api_input" and not os.environ.get("SCIPY_ARRAY_API"):
        # scikit-learn skips this check unless SCIPY_ARRAY_API=1 was set before SciPy was
        # imported, which this process cannot do any more: run it in a fresh one.
        _run_check_in_subprocess(estimator, check, {"SCIPY_ARRAY_API": "1"})
    else:
        check(estimator)


def _run_check_in_subprocess(estimator, check, env):
    code = textwrap.dedent(
        f"""
        from sklearn.utils.estimator_checks import {check.func.__name__} as check
        from classifiers import *
        check(*{check.args!r}, {estimator!r}, **{check.keywords!r})
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]


def _blobs(n_classes, n=240, n_features=6, seed=0):
    """Well-separated classes: one Gaussian cloud per class."""
    rng = np.random.RandomState(seed)
    centres = rng.normal(scale=4.0, size=(n_classes, n_features))
    y = np.arange(n) % n_classes
    return centres[y] + rng.normal(size=(n, n_features)), y


@pytest.mark.parametrize("kind", list(ESTIMATORS))
@pytest.mark.parametrize("n_classes", [2, 3])
def test_separable_classes_are_learned(kind, n_classes):
    X, y = _blobs(n_classes, n=300)
    # Scored on rows the probe never saw (same clouds, other draws).
    X, X_test, y, y_test = X[:240], X[240:], y[:240], y[240:]
    params = {"mlp": {"max_epochs": 10}, "xgboost": {"n_estimators": 20}}.get(kind, {})
    est = make_estimator(kind, **params).fit(X, y)
    assert est.score(X_test, y_test) >= 0.95
    proba = est.predict_proba(X)
    assert proba.shape == (len(X), n_classes)
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert_array_equal(est.predict(X), est.classes_[proba.argmax(axis=1)])


@pytest.mark.parametrize("kind", list(ESTIMATORS))
def test_string_labels(kind):
    X, y = _blobs(3, n=150)
    names = np.array(["enhancer", "promoter", "splice"], dtype=object)[y]
    est = make_estimator(kind).fit(X, names)
    assert est.classes_.tolist() == ["enhancer", "promoter", "splice"]
    pred = est.predict(X)
    assert set(pred) <= set(names)
    assert np.mean(pred == names) >= 0.95


@pytest.mark.parametrize(
    "kind, params",
    [("mlp", {"max_epochs": 2}), ("xgboost", {"n_estimators": 10, "subsample": 0.5,
                                              "colsample_bytree": 0.5})],
)
def test_same_seed_same_predictions(kind, params):
    X, y = _blobs(2, n=200, n_features=8)
    X = X + np.random.RandomState(1).normal(scale=4.0, size=X.shape)  # overlap: seeds matter
    fit = lambda seed: make_estimator(kind, random_state=seed, **params).fit(X, y)  # noqa: E731
    first, again, other = fit(3), fit(3), fit(4)
    assert_array_equal(first.predict_proba(X), again.predict_proba(X))
    assert not np.array_equal(first.predict_proba(X), other.predict_proba(X))


def _noisy_task(n, label_noise, rng):
    X = rng.normal(size=(n, 10))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    flip = rng.rand(n) < label_noise
    y[flip] = 1 - y[flip]
    return X, y


def _binary_cross_entropy(proba, y):
    return -np.mean(np.log(np.where(y == 1, proba[:, 1], proba[:, 0])))


def test_mlp_keeps_the_epoch_with_lowest_validation_loss():
    # Noisy training labels and a large step: the network overfits, so the clean
    # validation loss falls, then rises.
    rng = np.random.RandomState(0)
    X, y = _noisy_task(120, 0.3, rng)
    X_val, y_val = _noisy_task(200, 0.0, rng)
    params = dict(hidden_layer_sizes=(64,), batch_size=8, learning_rate=1e-2)
    est = MLPClassifier(max_epochs=12, **params).fit(X, y, eval_set=(X_val, y_val))

    val_loss = est.history_["val_loss"]
    assert est.n_epochs_ == len(val_loss) == 12
    assert est.best_epoch_ == int(np.argmin(val_loss)) + 1
    assert est.best_epoch_ < est.n_epochs_ and val_loss[-1] > min(val_loss)
    # The kept parameters are those the best epoch ended with: a run stopped there has them.
    short = MLPClassifier(max_epochs=est.best_epoch_, **params).fit(X, y, eval_set=(X_val, y_val))
    for layer in est.params_:
        for name in ("weight", "bias"):
            assert_array_equal(est.params_[layer][name], short.params_[layer][name])
    # ... and their loss on the eval_set is the best recorded one (the eval_set was used).
    assert_allclose(_binary_cross_entropy(est.predict_proba(X_val), y_val), min(val_loss),
                    rtol=1e-4)

    # With patience 2 the run stops at the first epoch that is 2 past the best so far.
    patient = MLPClassifier(max_epochs=12, patience=2, **params).fit(X, y, eval_set=(X_val, y_val))
    stop = next(e for e in range(1, 13) if e - (int(np.argmin(val_loss[:e])) + 1) >= 2)
    assert patient.n_epochs_ == stop < 12
    assert patient.history_["val_loss"] == val_loss[:stop]
    assert patient.best_epoch_ == int(np.argmin(val_loss[:stop])) + 1


def test_mlp_eval_set_replaces_the_held_out_split():
    X, y = _blobs(2, n=100)
    X_val, y_val = _blobs(2, n=40, seed=5)
    with_eval = MLPClassifier(max_epochs=2).fit(X, y, eval_set=(X_val, y_val))
    # Every training row is used: the standardization saw all of them.
    assert_allclose(with_eval.feature_mean_, X.mean(axis=0), rtol=1e-6)
    held_out = MLPClassifier(max_epochs=2).fit(X, y)
    assert not np.allclose(held_out.feature_mean_, X.mean(axis=0), rtol=1e-6)
    assert len(held_out.history_["val_loss"]) == 2

    no_validation = MLPClassifier(max_epochs=3, validation_fraction=0.0).fit(X, y)
    assert "val_loss" not in no_validation.history_
    assert no_validation.best_epoch_ == 3


def test_mlp_multiclass_uses_one_logit_per_class():
    X, y = _blobs(4, n=120)
    est = MLPClassifier(max_epochs=2).fit(X, y)
    assert est.params_["output"]["weight"].shape == (64, 4)
    assert est.decision_function(X).shape == (120, 4)
    binary = MLPClassifier(max_epochs=2).fit(X, y % 2)
    assert binary.params_["output"]["weight"].shape == (64, 1)
    assert binary.decision_function(X).shape == (120,)


def test_mlp_reference_defaults():
    params = MLPClassifier().get_params()
    assert params["hidden_layer_sizes"] == (128, 64)
    assert params["batch_size"] == 32 and params["max_epochs"] == 6


@pytest.mark.parametrize("kind", ["mlp", "xgboost"])
def test_eval_set_with_unseen_labels_is_refused(kind):
    X, y = _blobs(2, n=60)
    with pytest.raises(ValueError, match=r"labels \[7\] do not occur"):
        make_estimator(kind).fit(X, y, eval_set=(X[:10], np.full(10, 7)))


@pytest.mark.parametrize(
    "params, message",
    [
        ({"hidden_layer_sizes": (0,)}, "hidden_layer_sizes"),
        ({"batch_size": 0}, "batch_size"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"patience": 0}, "patience"),
        ({"learning_rate": -1.0}, "learning_rate"),
    ],
)
def test_mlp_bad_parameters_are_named(params, message):
    X, y = _blobs(2, n=40)
    with pytest.raises(ValueError, match=message):
        MLPClassifier(**params).fit(X, y)


def test_xgboost_early_stopping_on_eval_set():
    X, y = _blobs(2, n=200)
    X_val, y_val = _blobs(2, n=80, seed=3)
    est = XGBoostProbe(n_estimators=200, early_stopping_rounds=5).fit(X, y, eval_set=(X_val, y_val))
    assert est.model_.best_iteration < 199
    assert len(est.model_.evals_result()["validation_0"]["logloss"]) < 200


def test_xgboost_trees_do_not_depend_on_the_thread_count():
    X, y = _blobs(2, n=300)
    X = X + np.random.RandomState(2).normal(scale=4.0, size=X.shape)
    params = dict(n_estimators=5, subsample=0.8)
    one = XGBoostProbe(n_jobs=1, **params).fit(X, y)
    two = XGBoostProbe(n_jobs=2, **params).fit(X, y)
    assert_array_equal(one.predict_proba(X), two.predict_proba(X))


def test_make_estimator_refuses_unknown_names():
    assert isinstance(make_estimator("logistic", C=0.5), LogisticProbe)
    assert make_estimator("mlp", max_epochs=2).max_epochs == 2
    with pytest.raises(InputError, match="choose one of mlp, logistic, xgboost"):
        make_estimator("svm")


@pytest.mark.slow
def test_mlp_result_does_not_depend_on_the_thread_count():
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        pytest.skip("needs a machine with at least two usable CPUs to compare thread counts")
    code = textwrap.dedent(
        """
        import hashlib, os, sys
        # Before JAX starts: XLA sizes its thread pool from the CPUs this process may use.
        os.sched_setaffinity(0, {int(c) for c in sys.argv[1].split(",")})
        import numpy as np
        from classifiers import MLPClassifier
        rng = np.random.default_rng(0)
        X = rng.standard_normal((4000, 512), dtype=np.float32)
        y = (X[:, :8].sum(axis=1) + rng.standard_normal(4000) > 0).astype(int)
        est = MLPClassifier(max_epochs=2).fit(X, y)
        print(hashlib.sha256(est.predict_proba(X).tobytes()).hexdigest())
        """
    )

    def digest(cpus):
        run = subprocess.run(
            [sys.executable, "-c", code, ",".join(map(str, cpus))],
            capture_output=True, text=True, check=True,
        )
        return run.stdout.strip()

    assert digest({allowed[0]}) == digest(set(allowed))


def _one_layer_carries_the_signal(n=500, n_layers=6, dim=16, signal_layer=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, n_layers, dim)).astype(np.float32)
    X[:, signal_layer] += 0.8 * np.outer(2 * y - 1, rng.normal(size=dim)).astype(np.float32)
    return X, y


def test_layer_weights_put_most_mass_on_the_layer_with_the_signal():
    X, y = _one_layer_carries_the_signal()
    est = LayerWeightedProbe(random_state=0).fit(X[:400], y[:400])
    assert est.layer_weights_.shape == (6,)
    assert est.layer_weights_.sum() == pytest.approx(1.0)
    assert est.layer_weights_.argmax() == 3
    assert est.layer_weights_[3] > 0.5
    assert est.score(X[400:], y[400:]) >= 0.95
    # Stopped on the validation loss: the history has one entry per epoch run.
    assert len(est.history_["val_loss"]) == est.n_epochs_


def test_layer_weighted_mlp_head_and_shape_checks():
    X, y = _one_layer_carries_the_signal(n=300, n_layers=3, signal_layer=0)
    est = LayerWeightedProbe(hidden_layer_sizes=(16,), random_state=1).fit(X, y)
    assert set(est.params_["head"]) == {"hidden_1", "output"}
    assert est.layer_weights_.argmax() == 0
    with pytest.raises(ValueError, match="layers x features"):
        est.predict(X[:, :, :8])
    with pytest.raises(ValueError, match="expecting 3 features"):
        est.predict(X[:, :2])
