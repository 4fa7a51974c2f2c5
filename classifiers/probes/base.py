"""What every probe shares: parameter validation, label encoding, ``predict`` from
``predict_proba``, and the hooks through which it saves and loads its own fitted state.

A probe kind is one subclass of :class:`Probe` in its own module plus an entry in
:data:`classifiers.probes.PROBES`; :mod:`classifiers.persistence` writes the manifest
common to all kinds and asks the probe for the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from embedcache.errors import EmbedcacheError, InputError

__all__ = ["FitDivergedError", "ModelFileError", "Probe", "ProbeParameterError", "check_shapes",
           "read_arrays", "write_arrays"]

#: The on-disk encoding of a saved probe (model.json, safetensors metadata).
ENCODING = "embedcache.classifier"
ENCODING_VERSION = 1
ARRAYS_FILE = "params.safetensors"


class ModelFileError(InputError):
    """A saved probe is missing a file, or a file is damaged."""


class ProbeParameterError(InputError, TypeError):
    """A probe parameter is unknown to the probe, or its value breaks the declared constraints.

    A ``TypeError`` too, as scikit-learn's own parameter errors are.
    """


class FitDivergedError(EmbedcacheError, ArithmeticError):
    """Training went to NaN or infinity: nothing fitted is usable, and nothing is written.

    Exit code 1, not 2: the parameters were valid, the numerics failed on this data.
    """

    exit_code = 1


class Probe(ClassifierMixin, BaseEstimator):
    """Base class of the probes: a scikit-learn classifier over labels of any type.

    Subclasses declare ``_parameter_constraints`` (checked by scikit-learn's parameter
    validation at the start of ``fit``) and implement

    - ``_fit(X, y, eval_set)``: ``y`` holds class indices ``0..n_classes-1``; ``eval_set`` is
      None or ``(X_val, y_val)`` validated and encoded the same way;
    - ``_predict_proba(X)``: probabilities in the order of ``classes_``;
    - ``_save_state(directory) -> dict`` and ``_load_state(directory, fitted)``: the fitted
      state beyond ``classes_`` and ``n_features_in_`` (arrays in safetensors, or the
      probe's own format; the returned dict goes into ``model.json``).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, sorted.
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when ``fit`` was given a DataFrame with string column names.
    """

    #: Distributions whose versions are recorded with a saved model.
    packages: ClassVar[tuple[str, ...]] = ()
    #: Files a saved model of this kind consists of, besides model.json.
    files: ClassVar[tuple[str, ...]] = (ARRAYS_FILE,)
    #: Whether X may be (n_samples, n_layers, n_features) as well as 2-D.
    _allow_nd: ClassVar[bool] = False
    _dtype: ClassVar = np.float64

    def fit(self, X, y, *, eval_set=None):
        """Fit the probe.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training features.
        y : array-like of shape (n_samples,)
            Class labels (at least two distinct values, of any type).
        eval_set : tuple (X_val, y_val), optional
            Validation data, for probes that stop early or choose an epoch on it.

        Returns
        -------
        self
        """
        self._validate_params()
        X, y = validate_data(self, X, y, dtype=self._dtype, allow_nd=self._allow_nd)
        check_classification_targets(y)
        classes, y_index = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes, but y holds only "
                f"one class ({classes[0]!r}); give it labelled data of two or more classes.")
        self.classes_ = classes
        self._fit(X, y_index, None if eval_set is None else self._encoded_eval_set(eval_set))
        return self

    def predict_proba(self, X):
        """Class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Probabilities in the order of ``classes_``; rows sum to 1.
        """
        return self._predict_proba(self._validated(X))

    def predict(self, X):
        """Most probable class.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]

    def _validated(self, X):
        check_is_fitted(self)
        return validate_data(self, X, reset=False, dtype=self._dtype, allow_nd=self._allow_nd)

    def _encoded_eval_set(self, eval_set):
        try:
            X_val, y_val = eval_set
        except (TypeError, ValueError):
            raise ValueError("eval_set must be a pair (X_val, y_val).") from None
        X_val = validate_data(self, X_val, reset=False, dtype=self._dtype,
                              allow_nd=self._allow_nd)
        y_val = np.asarray(y_val)
        if y_val.shape != (X_val.shape[0],):
            raise ValueError(f"eval_set: y_val has shape {y_val.shape}, expected "
                             f"({X_val.shape[0]},) to match X_val's rows.")
        unknown = np.setdiff1d(y_val, self.classes_)
        if unknown.size:
            raise ValueError(
                f"eval_set: labels {unknown[:5].tolist()} do not occur in the training labels "
                f"{self.classes_.tolist()}; validate on the classes the model is trained on.")
        return X_val, np.searchsorted(self.classes_, y_val)

    @classmethod
    def from_params(cls, params: Mapping, *, kind: str | None = None) -> Probe:
        """A probe with ``params``, checked against the declared constraints before any fit.

        Parameters
        ----------
        params : mapping
            Constructor parameters, typed (numbers as numbers, tuples as tuples).
        kind : str, optional
            The probe's name in messages (``"logistic"``); default the class name.

        Raises
        ------
        ProbeParameterError
            A name the probe does not take, or a value outside what its
            ``_parameter_constraints`` allow; the message names the parameter, the value
            and what is allowed.
        """
        what = f"the {kind} probe ({cls.__name__})" if kind else cls.__name__
        names = cls._get_param_names()
        unknown = [name for name in params if name not in names]
        if unknown:
            raise ProbeParameterError(
                f"{what} has no parameter {unknown[0]!r}; its parameters are "
                f"{', '.join(names)}.")
        probe = cls(**params)
        try:
            probe._validate_params()  # what fit checks first, checked before any data is read
        except InvalidParameterError as exc:
            raise ProbeParameterError(str(exc)) from None
        return probe

    # -- to implement ---------------------------------------------------------------------

    def _fit(self, X, y, eval_set):  # pragma: no cover - abstract
        raise NotImplementedError

    def _predict_proba(self, X):  # pragma: no cover - abstract
        raise NotImplementedError

    def _save_state(self, directory: Path) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _load_state(self, directory: Path, fitted: dict) -> None:  # pragma: no cover
        raise NotImplementedError


def write_arrays(path: Path, arrays: dict) -> None:
    """Named arrays to a safetensors file (no code runs when it is read)."""
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path),
              metadata={"encoding": ENCODING, "version": str(ENCODING_VERSION)})


def read_arrays(path: Path, names) -> dict:
    """The named arrays of a safetensors file; a missing file or array is a ModelFileError."""
    from safetensors.numpy import load_file

    if not path.is_file():
        raise ModelFileError(f"{path} not found; the saved model is incomplete, re-fit it.")
    try:
        arrays = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types, or OSError
        raise ModelFileError(f"{path} is damaged ({exc}); re-fit the model.") from None
    missing = [n for n in names if n not in arrays]
    if missing:
        raise ModelFileError(f"{path} lacks {missing[:3]}; re-fit the model.")
    return arrays


def check_shapes(path: Path, probe: Probe, shapes: dict) -> None:
    """Refuse saved arrays whose shapes do not fit the manifest (``name -> (got, expected)``)."""
    wrong = {name: got for name, (got, expected) in shapes.items()
             if tuple(got) != tuple(expected)}
    if wrong:
        raise ModelFileError(
            f"{path}: array shapes {wrong} do not fit {probe.n_features_in_} features and "
            f"{len(probe.classes_)} classes in model.json; re-fit the model.")
