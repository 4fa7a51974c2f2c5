"""A logistic-regression probe: scikit-learn's LogisticRegression on standardized features."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import Interval

from classifiers.probes.base import ARRAYS_FILE, Probe, check_shapes, read_arrays, write_arrays

__all__ = ["LogisticProbe"]


class LogisticProbe(Probe):
    """L2-regularised logistic regression on standardized features.

    A thin estimator over ``make_pipeline(StandardScaler(), LogisticRegression(...))``:
    standardizing first makes one ``C`` suit embeddings of any scale and lets
    L-BFGS converge in few iterations. Two classes get a binary model, more a
    multinomial (softmax) one.

    Parameters
    ----------
    C : float, default=1.0
        Inverse regularisation strength, as in
        :class:`sklearn.linear_model.LogisticRegression`.
    max_iter : int, default=1000
        Iteration cap of the L-BFGS solver. The scikit-learn default (100) stops
        short of convergence on 512-wide embeddings.
    tol : float, default=1e-4
        Solver tolerance.

    Attributes
    ----------
    classes_, n_features_in_, feature_names_in_
        As for every :class:`~classifiers.probes.base.Probe`.
    n_iter_ : ndarray of shape (1,)
        Solver iterations used.
    pipeline_ : sklearn.pipeline.Pipeline
        The fitted scaler and logistic regression, trained on class indices.
    """

    _parameter_constraints = {
        "C": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
    }
    packages = ("safetensors",)

    def __init__(self, C=1.0, max_iter=1000, tol=1e-4):
        self.C = C
        self.max_iter = max_iter
        self.tol = tol

    def _fit(self, X, y, eval_set):
        self.pipeline_ = make_pipeline(StandardScaler(), self._logistic()).fit(X, y)
        self.n_iter_ = self.pipeline_[-1].n_iter_

    def decision_function(self, X):
        """Linear scores: shape (n_samples,) for two classes (the score of ``classes_[1]``),
        else (n_samples, n_classes)."""
        X = self._validated(X)
        return self.pipeline_.decision_function(X)

    def _predict_proba(self, X):
        return self.pipeline_.predict_proba(X)

    def _logistic(self):
        return LogisticRegression(C=self.C, max_iter=self.max_iter, tol=self.tol)

    def _save_state(self, directory):
        scaler, logistic = self.pipeline_
        write_arrays(directory / ARRAYS_FILE, {
            "scaler.mean": scaler.mean_, "scaler.scale": scaler.scale_, "scaler.var": scaler.var_,
            "logistic.coef": logistic.coef_, "logistic.intercept": logistic.intercept_})
        return {"n_iter": self.n_iter_.tolist(), "n_samples_seen": int(scaler.n_samples_seen_)}

    def _load_state(self, directory, fitted):
        path = directory / ARRAYS_FILE
        a = read_arrays(path, ("scaler.mean", "scaler.scale", "scaler.var", "logistic.coef",
                               "logistic.intercept"))
        n, rows = self.n_features_in_, 1 if len(self.classes_) == 2 else len(self.classes_)
        check_shapes(path, self, {"logistic.coef": (a["logistic.coef"].shape, (rows, n)),
                                  "scaler.mean": (a["scaler.mean"].shape, (n,))})
        # The same pipeline _fit builds, given the fitted state it would have.
        scaler, logistic = StandardScaler(), self._logistic()
        scaler.mean_, scaler.scale_ = a["scaler.mean"], a["scaler.scale"]
        scaler.var_ = a["scaler.var"]
        scaler.n_samples_seen_ = fitted["n_samples_seen"]
        logistic.coef_, logistic.intercept_ = a["logistic.coef"], a["logistic.intercept"]
        self.n_iter_ = logistic.n_iter_ = np.array(fitted["n_iter"], dtype=np.int32)
        scaler.n_features_in_ = logistic.n_features_in_ = n
        logistic.classes_ = np.arange(len(self.classes_))
        self.pipeline_ = make_pipeline(scaler, logistic)
