"""A gradient-boosted trees probe: xgboost's XGBClassifier with any kind of class label."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from classifiers.probes.base import ModelFileError, Probe

__all__ = ["XGBoostProbe"]

_BOOSTER = "booster.json"
#: XGBoost keeps its real-valued parameters as float32 and refuses larger values mid-fit.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class XGBoostProbe(Probe):
    """Gradient-boosted trees (``xgboost.XGBClassifier``) for two or more classes.

    A thin estimator over XGBClassifier: the base class encodes labels of any type (XGBoost
    itself takes only 0..n_classes-1) and the seed is fixed, so the same data give the same
    trees. Two classes use ``binary:logistic``, more ``multi:softprob`` (XGBoost picks the
    objective from the labels).

    Parameters
    ----------
    n_estimators : int, default=100
        Number of boosting rounds.
    max_depth : int, default=6
        Maximum tree depth.
    learning_rate : float, default=0.3
        Shrinkage of each tree's contribution, in (0, 1].
    subsample : float, default=1.0
        Share of rows sampled for each tree.
    colsample_bytree : float, default=1.0
        Share of features sampled for each tree.
    min_child_weight : float, default=1.0
        Minimum summed hessian in a leaf.
    reg_lambda : float, default=1.0
        L2 regularisation on leaf weights.
    early_stopping_rounds : int or None, default=None
        With an ``eval_set`` in ``fit``, stop when its loss has not improved for
        this many rounds; prediction then uses the best round.
    tree_method : {"hist", "approx", "exact", "auto"}, default="hist"
        XGBoost's tree construction algorithm.
    n_jobs : int, default=1
        Threads; -1 uses every core. One by default because probes usually run on
        shared machines: with more threads than free cores, OpenMP's spin-waiting
        made fits two to three times slower (``bench/classifier_speed.py``). On
        cores of your own, -1 is faster. The trees do not depend on the thread count.
    random_state : int, default=0
        Seed of XGBoost's row and column sampling.

    Attributes
    ----------
    classes_, n_features_in_, feature_names_in_
        As for every :class:`~classifiers.probes.base.Probe`.
    model_ : xgboost.XGBClassifier
        The fitted booster, trained on the label indices ``0..n_classes-1``.
    """

    _parameter_constraints = {
        "n_estimators": [Interval(Integral, 1, None, closed="left")],
        "max_depth": [Interval(Integral, 0, None, closed="left")],
        "learning_rate": [Interval(Real, 0, 1, closed="right")],  # XGBoost's eta range
        "subsample": [Interval(Real, 0, 1, closed="right")],
        "colsample_bytree": [Interval(Real, 0, 1, closed="right")],
        "min_child_weight": [Interval(Real, 0, _FLOAT32_MAX, closed="both")],
        "reg_lambda": [Interval(Real, 0, _FLOAT32_MAX, closed="both")],
        "early_stopping_rounds": [Interval(Integral, 1, None, closed="left"), None],
        "tree_method": [StrOptions({"hist", "approx", "exact", "auto"})],
        "n_jobs": [Integral],
        "random_state": [Integral],
    }
    packages = ("xgboost",)
    files = (_BOOSTER,)
    _dtype = np.float32

    def __init__(self, n_estimators=100, max_depth=6, learning_rate=0.3, subsample=1.0,
                 colsample_bytree=1.0, min_child_weight=1.0, reg_lambda=1.0,
                 early_stopping_rounds=None, tree_method="hist", n_jobs=1, random_state=0):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.early_stopping_rounds = early_stopping_rounds
        self.tree_method = tree_method
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _fit(self, X, y, eval_set):
        evals = None if eval_set is None else [eval_set]
        self.model_ = self._booster_estimator().fit(X, y, eval_set=evals, verbose=False)

    def _predict_proba(self, X):
        return self.model_.predict_proba(X)

    def _booster_estimator(self):
        """An unfitted XGBClassifier with this probe's parameters."""
        from xgboost import XGBClassifier

        return XGBClassifier(**self.get_params())

    def _save_state(self, directory):
        self.model_.save_model(directory / _BOOSTER)
        return {}

    def _load_state(self, directory, fitted):
        from xgboost.core import XGBoostError

        path = directory / _BOOSTER
        if not path.is_file():
            raise ModelFileError(f"{path} not found; the saved model is incomplete, re-fit it.")
        model = self._booster_estimator()
        try:
            model.load_model(path)
        except (XGBoostError, ValueError) as exc:
            raise ModelFileError(
                f"{path} is damaged ({str(exc).splitlines()[0]}); re-fit the model.") from None
        if model.n_classes_ != len(self.classes_) or model.n_features_in_ != self.n_features_in_:
            raise ModelFileError(
                f"{path} holds a booster for {model.n_classes_} classes and "
                f"{model.n_features_in_} features, but model.json says {len(self.classes_)} and "
                f"{self.n_features_in_}; re-fit the model.")
        self.model_ = model
