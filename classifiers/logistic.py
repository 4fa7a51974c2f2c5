"""A logistic-regression probe: scikit-learn's LogisticRegression on standardized features."""

from __future__ import annotations

from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["LogisticProbe"]


class LogisticProbe(ClassifierMixin, BaseEstimator):
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
    classes_ : ndarray of shape (n_classes,)
        The class labels, sorted.
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when ``fit`` was given a DataFrame with string column names.
    n_iter_ : ndarray of shape (1,)
        Solver iterations used.
    pipeline_ : sklearn.pipeline.Pipeline
        The fitted scaler and logistic regression.
    """

    def __init__(self, C=1.0, max_iter=1000, tol=1e-4):
        self.C = C
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X, y):
        """Fit the scaler and the logistic regression.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training features.
        y : array-like of shape (n_samples,)
            Class labels (at least two distinct values).

        Returns
        -------
        self : LogisticProbe
            The fitted estimator.
        """
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        self.pipeline_ = make_pipeline(
            StandardScaler(), LogisticRegression(C=self.C, max_iter=self.max_iter, tol=self.tol)
        ).fit(X, y)
        self.classes_ = self.pipeline_.classes_
        self.n_iter_ = self.pipeline_[-1].n_iter_
        return self

    def decision_function(self, X):
        """Linear scores.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features.

        Returns
        -------
        ndarray of shape (n_samples,) for two classes (the score of ``classes_[1]``),
        else (n_samples, n_classes)
            The scores.
        """
        X = self._validated(X)
        return self.pipeline_.decision_function(X)

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
        X = self._validated(X)
        return self.pipeline_.predict_proba(X)

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
        X = self._validated(X)
        return self.pipeline_.predict(X)

    def _validated(self, X):
        check_is_fitted(self)
        return validate_data(self, X, reset=False)
