"""Metrics equal scikit-learn's; the vectorised bootstrap equals scikit-learn on resampled rows."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.preprocessing import label_binarize

from classifiers.metrics import (SCALAR_METRICS, bootstrap_intervals, classification_metrics,
                                 summarize_runs, weighted_metrics)


def binary_case(n=120, seed=0, labels=(0, 1)):
    rng = np.random.default_rng(seed)
    y = np.array(labels)[rng.integers(0, 2, n)]
    # Rounded scores so that ties occur, as they do with real probes.
    p1 = np.round(np.clip(0.5 * (y == labels[1]) + rng.normal(0.25, 0.25, n), 0, 1), 1)
    proba = np.c_[1 - p1, p1]
    pred = np.array(labels)[(p1 >= 0.5).astype(int)]
    return y, pred, proba, list(labels)


def multiclass_case(n=150, seed=1, classes=("acceptor", "donor", "none")):
    rng = np.random.default_rng(seed)
    y_idx = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3)) + 1.5 * np.eye(3)[y_idx]
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    classes = list(classes)
    y = np.array(classes)[y_idx]
    pred = np.array(classes)[proba.argmax(1)]
    return y, pred, proba, classes


def sklearn_metrics(y, pred, proba, classes):
    if len(classes) == 2:
        pos = y == classes[1]
        return {"mcc": skm.matthews_corrcoef(y, pred), "accuracy": skm.accuracy_score(y, pred),
                "f1": skm.f1_score(y, pred, pos_label=classes[1]),
                "auroc": skm.roc_auc_score(pos, proba[:, 1]),
                "auprc": skm.average_precision_score(pos, proba[:, 1])}
    return {"mcc": skm.matthews_corrcoef(y, pred), "accuracy": skm.accuracy_score(y, pred),
            "f1": skm.f1_score(y, pred, average="macro", labels=classes, zero_division=0),
            "auroc": skm.roc_auc_score(y, proba, multi_class="ovr", labels=classes),
            "auprc": skm.average_precision_score(label_binarize(y, classes=classes), proba)}


@pytest.mark.parametrize("case", [binary_case, lambda: binary_case(labels=("neg", "pos")),
                                  multiclass_case])
def test_point_metrics_are_scikit_learns(case):
    y, pred, proba, classes = case()
    got = classification_metrics(y, pred, proba, classes)
    for name, value in sklearn_metrics(y, pred, proba, classes).items():
        assert got[name] == pytest.approx(value, abs=1e-12), name
    assert got["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=classes).tolist()
    assert got["classes"] == [str(c) for c in classes] and got["n"] == len(y)


# scikit-learn warns that MCC and the confusion matrix see one label: that is the case tested.
@pytest.mark.filterwarnings("ignore:A single label was found")
def test_undefined_auroc_is_none_not_an_error():
    y = np.array([1, 1, 1])
    got = classification_metrics(y, y, np.array([[0.2, 0.8]] * 3), [0, 1])
    assert got["auroc"] is None and got["auprc"] is None and got["accuracy"] == 1.0


@pytest.mark.parametrize("case", [binary_case, multiclass_case])
def test_weighted_metrics_equal_sklearn_on_resampled_rows(case):
    y, pred, proba, classes = case()
    rng = np.random.default_rng(5)
    draws = rng.integers(0, len(y), size=(6, len(y)))
    weights = np.stack([np.bincount(d, minlength=len(y)) for d in draws]).astype(float)
    got = weighted_metrics(y, pred, proba, classes, weights)
    for r, d in enumerate(draws):
        expected = sklearn_metrics(y[d], pred[d], proba[d], classes)
        for name in SCALAR_METRICS:
            assert got[name][r] == pytest.approx(expected[name], abs=1e-10), (name, r)


def test_weighted_metrics_with_unit_weights_are_the_point_estimates():
    y, pred, proba, classes = multiclass_case()
    got = weighted_metrics(y, pred, proba, classes, np.ones((1, len(y))))
    point = classification_metrics(y, pred, proba, classes)
    for name in SCALAR_METRICS:
        assert got[name][0] == pytest.approx(point[name], abs=1e-12)


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    y, pred, proba, classes = binary_case(n=400)
    a = bootstrap_intervals(y, pred, proba, classes, n_resamples=300, seed=3)
    b = bootstrap_intervals(y, pred, proba, classes, n_resamples=300, seed=3)
    c = bootstrap_intervals(y, pred, proba, classes, n_resamples=300, seed=4)
    assert a == b and a != c
    point = classification_metrics(y, pred, proba, classes)
    for name in SCALAR_METRICS:
        low, high = a[name]
        assert low < point[name] < high, name
        assert high - low < 0.3


def test_bootstrap_interval_narrows_with_more_rows():
    small = bootstrap_intervals(*binary_case(n=100), n_resamples=200)
    large = bootstrap_intervals(*binary_case(n=1600), n_resamples=200)
    for name in SCALAR_METRICS:
        assert np.diff(large[name]) < np.diff(small[name]), name


def test_summarize_runs_mean_and_sample_std():
    runs = [{"mcc": 0.1, "auroc": 0.6, "auprc": 0.5, "accuracy": 0.5, "f1": 0.4},
            {"mcc": 0.3, "auroc": None, "auprc": 0.7, "accuracy": 0.7, "f1": 0.6}]
    s = summarize_runs(runs)
    assert s["mcc"]["mean"] == pytest.approx(0.2)
    assert s["mcc"]["std"] == pytest.approx(np.std([0.1, 0.3], ddof=1))
    assert s["auroc"] == {"mean": 0.6, "std": None, "n": 1}
