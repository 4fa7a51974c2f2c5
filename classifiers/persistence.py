"""The probe kinds by name, and saving fitted probes in a format that runs no code when read.

A saved probe is a directory::

    model.json           encoding name and version, kind, get_params(), classes, fitted
                         scalars (history, best epoch, ...), package versions
    params.safetensors   mlp, logistic, layer-weighted: the fitted arrays
    booster.json         xgboost: the booster in XGBoost's own JSON format

This module writes and checks what every kind shares (the manifest, the atomic replacement
of the directory); each probe writes and reads its own state (``Probe._save_state``,
``Probe._load_state``).

Nothing is pickled: loading reads JSON, safetensors and XGBoost's JSON, none of which
can execute code, so a saved model from elsewhere is safe to open.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from sklearn.utils.validation import check_is_fitted

from classifiers.probes import PROBES
from classifiers.probes.base import ENCODING, ENCODING_VERSION, ModelFileError
from embedcache import __version__ as embedcache_version
from embedcache.util.versions import package_versions
from embedcache.errors import InputError
from embedcache.util.atomic import replace_directory

__all__ = [
    "ESTIMATORS",
    "ENCODING",
    "ENCODING_VERSION",
    "ModelFileError",
    "ModelVersionError",
    "estimator_kind",
    "load_estimator",
    "make_estimator",
    "save_estimator",
]

#: The probe kinds, by the name used on the command line and in ``model.json``.
ESTIMATORS = PROBES

_KNOWN_VERSIONS = (1,)
_MANIFEST = "model.json"


class ModelVersionError(ModelFileError):
    """A saved probe was written in an encoding version this release does not read."""


def make_estimator(name, **params):
    """A new, unfitted probe of the given kind.

    Parameters
    ----------
    name : {"mlp", "logistic", "xgboost", "layer-weighted"}
        The kind of probe.
    **params
        Constructor parameters of that estimator.

    Returns
    -------
    estimator
        An unfitted :class:`~classifiers.MLPClassifier`,
        :class:`~classifiers.LogisticProbe` or :class:`~classifiers.XGBoostProbe`.

    Raises
    ------
    InputError
        If ``name`` is not one of the kinds.
    ProbeParameterError
        If a parameter is unknown to that kind, or its value breaks the kind's declared
        constraints (checked here, before any data is read).
    """
    try:
        cls = ESTIMATORS[name]
    except KeyError:
        raise InputError(
            f"Unknown classifier {name!r}; choose one of {', '.join(ESTIMATORS)}."
        ) from None
    return cls.from_params(params, kind=name)


def estimator_kind(estimator):
    """The kind name (a key of :data:`ESTIMATORS`) of a probe.

    Parameters
    ----------
    estimator : estimator
        An instance of one of the probe classes.

    Returns
    -------
    str
        A key of :data:`ESTIMATORS`.

    Raises
    ------
    TypeError
        If the estimator is not one of the probe classes.
    """
    for kind, cls in ESTIMATORS.items():
        if type(estimator) is cls:
            return kind
    names = ", ".join(cls.__name__ for cls in ESTIMATORS.values())
    raise TypeError(
        f"Only embedcache probes can be saved ({names}); got {type(estimator).__name__}."
    )


def save_estimator(estimator, directory):
    """Write a fitted probe to ``directory`` without pickle.

    The files are written to a temporary directory beside ``directory`` and moved
    into place only when complete, so an interrupted save leaves any earlier model
    in ``directory`` as it was.

    Parameters
    ----------
    estimator : classifiers.probes.Probe
        A fitted probe.
    directory : str or os.PathLike
        Where to save. Created if missing; an earlier saved model there is
        replaced. A directory holding other files is refused.

    Raises
    ------
    InputError
        If ``directory`` holds files that are not a saved model.
    sklearn.exceptions.NotFittedError
        If the estimator is not fitted.
    """
    kind = estimator_kind(estimator)
    check_is_fitted(estimator)
    directory = Path(directory)
    if directory.exists():
        if not directory.is_dir():
            raise InputError(f"{directory} is a file; save the model to a directory.")
        ours = {_MANIFEST} | {f for cls in ESTIMATORS.values() for f in cls.files}
        foreign = sorted(p.name for p in directory.iterdir() if p.name not in ours)
        if foreign:
            raise InputError(
                f"{directory} holds files that are not a saved model ({', '.join(foreign[:5])}); "
                "save to a new or empty directory."
            )
    directory.parent.mkdir(parents=True, exist_ok=True)

    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        fitted = estimator._save_state(staging)
        params, unsaved = _json_params(estimator.get_params())
        manifest = {
            "encoding": ENCODING,
            "version": ENCODING_VERSION,
            "kind": kind,
            "estimator": type(estimator).__name__,
            "params": params,
            "params_not_saved": unsaved,
            "classes": estimator.classes_.tolist(),
            "classes_dtype": estimator.classes_.dtype.str,
            "n_features_in": int(estimator.n_features_in_),
            "feature_names_in": (
                estimator.feature_names_in_.tolist()
                if hasattr(estimator, "feature_names_in_")
                else None
            ),
            "fitted": fitted,
            "versions": _package_versions(estimator),
        }
        _check_classes_encodable(estimator.classes_, manifest["classes"])
        # The manifest is written last: a directory with a readable model.json is complete.
        (staging / _MANIFEST).write_text(json.dumps(manifest, indent=2, allow_nan=False) + "\n")
        _replace_directory(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def load_estimator(directory):
    """Read a probe written by :func:`save_estimator`.

    Parameters
    ----------
    directory : str or os.PathLike
        A directory written by :func:`save_estimator`.

    Returns
    -------
    estimator
        The fitted probe; it predicts exactly as the saved one did.

    Raises
    ------
    ModelVersionError
        If the model was written in an encoding version this release does not know.
    ModelFileError
        If a file is missing or damaged.
    """
    directory = Path(directory)
    manifest_path = directory / _MANIFEST
    if not manifest_path.is_file():
        raise ModelFileError(
            f"{manifest_path} not found: {directory} is not a saved classifier; "
            "give the model directory of a `classify fit` run (RUN_DIR/model)."
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        encoding, version = manifest["encoding"], manifest["version"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ModelFileError(
            f"{manifest_path} is damaged ({exc}); re-fit the model to write it again."
        ) from None
    if encoding != ENCODING:
        raise ModelFileError(
            f"{manifest_path} is not an embedcache classifier (encoding {encoding!r}, "
            f"expected {ENCODING!r})."
        )
    if version not in _KNOWN_VERSIONS:
        written_by = manifest.get("versions", {}).get("embedcache", "an unknown version")
        raise ModelVersionError(
            f"{manifest_path} uses classifier encoding version {version!r}; embedcache "
            f"{embedcache_version} reads version(s) {', '.join(map(str, _KNOWN_VERSIONS))}. "
            f"Re-fit the model with this release, or load it with embedcache {written_by}, "
            "which wrote it."
        )
    try:
        kind = manifest["kind"]
        cls = ESTIMATORS[kind]
        estimator = cls(**_restore_param_types(cls, manifest["params"]))
        classes_dtype = np.dtype(manifest["classes_dtype"])
        estimator.classes_ = np.array(manifest["classes"], dtype=classes_dtype)
        estimator.n_features_in_ = int(manifest["n_features_in"])
        if manifest["feature_names_in"] is not None:
            estimator.feature_names_in_ = np.array(manifest["feature_names_in"], dtype=object)
        fitted = manifest["fitted"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(
            f"{manifest_path} is damaged (bad or missing entry: {exc}); re-fit the model."
        ) from None
    estimator._load_state(directory, fitted)
    return estimator


# --- helpers ------------------------------------------------------------------------------

def _json_params(params):
    """get_params() as JSON values; parameters that have none are listed, not saved."""
    saved, unsaved = {}, []
    for name, value in params.items():
        if isinstance(value, tuple):
            value = list(value)
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            # e.g. random_state=np.random.RandomState(...): the fitted model is saved
            # whole, only a re-fit of the loaded estimator would draw other numbers.
            saved[name] = None
            unsaved.append(name)
        else:
            saved[name] = value
    return saved, unsaved


def _restore_param_types(cls, params):
    """JSON has no tuples: give tuple-valued defaults (hidden_layer_sizes) their type back."""
    defaults = cls().get_params()
    return {
        name: tuple(value) if isinstance(defaults.get(name), tuple) and isinstance(value, list)
        else value
        for name, value in params.items()
    }


def _check_classes_encodable(classes, encoded):
    restored = np.array(encoded, dtype=classes.dtype).tolist()
    if len(restored) != len(classes) or any(
        a != b or type(a) is not type(b) for a, b in zip(restored, classes.tolist())
    ):
        raise InputError(
            f"Class labels {classes[:5].tolist()} cannot be saved as JSON; use strings or "
            "integers as labels."
        )


def _package_versions(estimator):
    return package_versions(("embedcache", "numpy", "scikit-learn", *estimator.packages))


def _replace_directory(staging, directory):
    """Move the complete ``staging`` directory to ``directory``, replacing an earlier model."""
    for path in staging.iterdir():
        with open(path, "rb") as f:
            os.fsync(f.fileno())
    replace_directory(staging, directory)
