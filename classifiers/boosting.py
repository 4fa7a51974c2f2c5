"""A gradient-boosted trees probe: xgboost's XGBClassifier with any kind of class label."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["XGBoostProbe"]


class XGBoostProbe(ClassifierMixin, BaseEstimator):
    """Gradient-boosted trees (``xgboost.XGBClassifier``) for two or more classes.

    A thin estimator over XGBClassifier: it encodes labels of any type (XGBoost
    itself takes only 0..n_classes-1) and fixes the seed, so the same data give
    the same trees. Two classes use ``binary:logistic``, more ``multi:softprob``
    (XGBoost picks the objective from the labels).

    Parameters
    ----------
    n_estimators : int, default=100
        Number of boosting rounds.
    max_depth : int, default=6
        Maximum tree depth.
    learning_rate : float, default=0.3
        Shrinkage of each tree's contribution.
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
    tree_method : str, default="hist"
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
    classes_ : ndarray of shape (n_classes,)
        The class labels, sorted.
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when ``fit`` was given a DataFrame with string column names.
    model_ : xgboost.XGBClassifier
        The fitted booster, trained on the label indices ``0..n_classes-1``.
    """

    def __init__(
        self,
        n_estimators=100,
        max_depth=6,
        learning_rate=0.3,
        subsample=1.0,
        colsample_bytree=1.0,
        min_child_weight=1.0,
        reg_lambda=1.0,
        early_stopping_rounds=None,
        tree_method="hist",
        n_jobs=1,
        random_state=0,
    ):
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

    def fit(self, X, y, *, eval_set=None):
        """Grow the trees.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training features.
        y : array-like of shape (n_samples,)
            Class labels (at least two distinct values).
        eval_set : tuple (X_val, y_val), optional
            Validation data, monitored each round (``model_.evals_result()``) and
            used for early stopping when ``early_stopping_rounds`` is set.

        Returns
        -------
        self : XGBoostProbe
            The fitted estimator.
        """
        X, y = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y)
        classes, y_index = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                f"XGBoostProbe needs samples of at least 2 classes, but y holds only one class "
                f"({classes[0]!r}); give it labelled data of two or more classes."
            )
        evals = None
        if eval_set is not None:
            X_val, y_val = eval_set
            X_val = validate_data(self, X_val, reset=False, dtype=np.float32)
            y_val = np.asarray(y_val)
            unknown = np.setdiff1d(y_val, classes)
            if unknown.size:
                raise ValueError(
                    f"eval_set: labels {unknown[:5].tolist()} do not occur in the training "
                    f"labels {classes.tolist()}; validate on the classes the model is trained on."
                )
            evals = [(X_val, np.searchsorted(classes, y_val))]
        self.classes_ = classes
        self.model_ = self._booster_estimator().fit(X, y_index, eval_set=evals, verbose=False)
        return self

    def predict_proba(self, X):
        """Class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Probabilities in the order of ``classes_``.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float32)
        return self.model_.predict_proba(X)

    def predict(self, X):
        """Most probable class.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features.

        Returns
        -------
        ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        index = self.predict_proba(X).argmax(axis=1)
        return self.classes_[index]

    def _booster_estimator(self):
        """An unfitted XGBClassifier with this probe's parameters."""
        from xgboost import XGBClassifier

        return XGBClassifier(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            subsample=self.subsample,
            colsample_bytree=self.colsample_bytree,
            min_child_weight=self.min_child_weight,
            reg_lambda=self.reg_lambda,
            early_stopping_rounds=self.early_stopping_rounds,
            tree_method=self.tree_method,
            n_jobs=self.n_jobs,
            random_state=self.random_state,
        )
