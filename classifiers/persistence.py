"""The probe kinds by name, and saving fitted probes in a format that runs no code when read.

A saved probe is a directory::

    model.json           encoding name and version, kind, get_params(), classes, fitted
                         scalars (history, best epoch, ...), package versions
    params.safetensors   mlp, logistic: the fitted arrays
    booster.json         xgboost: the booster in XGBoost's own JSON format

Nothing is pickled: loading reads JSON, safetensors and XGBoost's JSON, none of which
can execute code, so a saved model from elsewhere is safe to open.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from classifiers.boosting import XGBoostProbe
from classifiers.logistic import LogisticProbe
from classifiers.mlp import MLPClassifier
from embedcache import __version__ as embedcache_version
from embedcache.errors import InputError

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
ESTIMATORS = {"mlp": MLPClassifier, "logistic": LogisticProbe, "xgboost": XGBoostProbe}

ENCODING = "embedcache.classifier"
ENCODING_VERSION = 1
_KNOWN_VERSIONS = (1,)

_MANIFEST = "model.json"
_ARRAYS = "params.safetensors"
_BOOSTER = "booster.json"
_OUR_FILES = {_MANIFEST, _ARRAYS, _BOOSTER}


class ModelFileError(InputError):
    """A saved probe is missing a file, or a file is damaged."""


class ModelVersionError(ModelFileError):
    """A saved probe was written in an encoding version this release does not read."""


def make_estimator(name, **params):
    """A new, unfitted probe of the given kind.

    Parameters
    ----------
    name : {"mlp", "logistic", "xgboost"}
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
    """
    try:
        cls = ESTIMATORS[name]
    except KeyError:
        raise InputError(
            f"Unknown classifier {name!r}; choose one of {', '.join(ESTIMATORS)}."
        ) from None
    return cls(**params)


def estimator_kind(estimator):
    """The kind name (a key of :data:`ESTIMATORS`) of a probe.

    Parameters
    ----------
    estimator : estimator
        An instance of one of the probe classes.

    Returns
    -------
    str
        ``"mlp"``, ``"logistic"`` or ``"xgboost"``.

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
    estimator : MLPClassifier, LogisticProbe or XGBoostProbe
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
        foreign = sorted(p.name for p in directory.iterdir() if p.name not in _OUR_FILES)
        if foreign:
            raise InputError(
                f"{directory} holds files that are not a saved model ({', '.join(foreign[:5])}); "
                "save to a new or empty directory."
            )
    directory.parent.mkdir(parents=True, exist_ok=True)

    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        fitted = _SAVERS[kind](estimator, staging)
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
            "versions": _package_versions(kind),
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
    _LOADERS[kind](estimator, directory, fitted)
    return estimator


# --- one saver and loader per kind -------------------------------------------------------

def _save_mlp(est, directory):
    arrays = {
        f"{layer}.{name}": value
        for layer, values in est.params_.items()
        for name, value in values.items()
    }
    if est.feature_mean_ is not None:
        arrays["standardize.mean"] = est.feature_mean_
        arrays["standardize.scale"] = est.feature_scale_
    _write_arrays(directory / _ARRAYS, arrays)
    return {
        "layers": list(est.params_),
        "history": est.history_,
        "best_epoch": int(est.best_epoch_),
        "n_epochs": int(est.n_epochs_),
    }


def _load_mlp(est, directory, fitted):
    arrays = _read_arrays(directory / _ARRAYS)
    try:
        est.params_ = {
            layer: {name: arrays[f"{layer}.{name}"] for name in ("weight", "bias")}
            for layer in fitted["layers"]
        }
        standardized = "standardize.mean" in arrays
        est.feature_mean_ = arrays["standardize.mean"] if standardized else None
        est.feature_scale_ = arrays["standardize.scale"] if standardized else None
        est.history_ = fitted["history"]
        est.best_epoch_ = fitted["best_epoch"]
        est.n_epochs_ = fitted["n_epochs"]
    except KeyError as exc:
        raise ModelFileError(
            f"{directory / _ARRAYS} lacks {exc} (or model.json lacks it); re-fit the model."
        ) from None
    shapes = [layer["weight"].shape for layer in est.params_.values()]
    widths = [est.n_features_in_, *(s[1] for s in shapes)]
    if any(s != (a, b) for s, a, b in zip(shapes, widths[:-1], widths[1:])) or widths[-1] != (
        1 if len(est.classes_) == 2 else len(est.classes_)
    ):
        raise ModelFileError(
            f"{directory / _ARRAYS}: layer shapes {shapes} do not fit {est.n_features_in_} "
            f"features and {len(est.classes_)} classes in model.json; re-fit the model."
        )


def _save_logistic(est, directory):
    scaler, logistic = est.pipeline_
    _write_arrays(
        directory / _ARRAYS,
        {
            "scaler.mean": scaler.mean_,
            "scaler.scale": scaler.scale_,
            "scaler.var": scaler.var_,
            "logistic.coef": logistic.coef_,
            "logistic.intercept": logistic.intercept_,
        },
    )
    return {"n_iter": est.n_iter_.tolist(), "n_samples_seen": int(scaler.n_samples_seen_)}


def _load_logistic(est, directory, fitted):
    arrays = _read_arrays(directory / _ARRAYS)
    # The same pipeline LogisticProbe.fit builds, given the fitted state it would have.
    scaler = StandardScaler()
    logistic = LogisticRegression(C=est.C, max_iter=est.max_iter, tol=est.tol)
    try:
        scaler.mean_, scaler.scale_, scaler.var_ = (
            arrays["scaler.mean"], arrays["scaler.scale"], arrays["scaler.var"]
        )
        logistic.coef_, logistic.intercept_ = arrays["logistic.coef"], arrays["logistic.intercept"]
        scaler.n_samples_seen_ = fitted["n_samples_seen"]
        est.n_iter_ = logistic.n_iter_ = np.array(fitted["n_iter"], dtype=np.int32)
    except KeyError as exc:
        raise ModelFileError(
            f"{directory / _ARRAYS} lacks {exc} (or model.json lacks it); re-fit the model."
        ) from None
    n_rows = 1 if len(est.classes_) == 2 else len(est.classes_)
    if logistic.coef_.shape != (n_rows, est.n_features_in_) or scaler.mean_.shape != (
        est.n_features_in_,
    ):
        raise ModelFileError(
            f"{directory / _ARRAYS}: coefficient shape {logistic.coef_.shape} does not fit "
            f"{est.n_features_in_} features and {len(est.classes_)} classes in model.json; "
            "re-fit the model."
        )
    scaler.n_features_in_ = logistic.n_features_in_ = est.n_features_in_
    logistic.classes_ = est.classes_
    est.pipeline_ = make_pipeline(scaler, logistic)


def _save_xgboost(est, directory):
    est.model_.save_model(directory / _BOOSTER)
    return {}


def _load_xgboost(est, directory, fitted):
    from xgboost.core import XGBoostError

    path = directory / _BOOSTER
    if not path.is_file():
        raise ModelFileError(f"{path} not found; the saved model is incomplete, re-fit it.")
    model = est._booster_estimator()
    try:
        model.load_model(path)
    except (XGBoostError, ValueError) as exc:
        raise ModelFileError(
            f"{path} is damaged ({str(exc).splitlines()[0]}); re-fit the model."
        ) from None
    if model.n_classes_ != len(est.classes_) or model.n_features_in_ != est.n_features_in_:
        raise ModelFileError(
            f"{path} holds a booster for {model.n_classes_} classes and "
            f"{model.n_features_in_} features, but model.json says {len(est.classes_)} and "
            f"{est.n_features_in_}; re-fit the model."
        )
    est.model_ = model


_SAVERS = {"mlp": _save_mlp, "logistic": _save_logistic, "xgboost": _save_xgboost}
_LOADERS = {"mlp": _load_mlp, "logistic": _load_logistic, "xgboost": _load_xgboost}


# --- helpers ------------------------------------------------------------------------------

def _write_arrays(path, arrays):
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path),
              metadata={"encoding": ENCODING, "version": str(ENCODING_VERSION)})


def _read_arrays(path):
    from safetensors.numpy import load_file

    if not path.is_file():
        raise ModelFileError(f"{path} not found; the saved model is incomplete, re-fit it.")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types, or OSError
        raise ModelFileError(f"{path} is damaged ({exc}); re-fit the model.") from None


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


def _package_versions(kind):
    names = {
        "mlp": ["jax", "optax", "safetensors"],
        "logistic": ["safetensors"],
        "xgboost": ["xgboost"],
    }[kind]
    versions = {
        "embedcache": embedcache_version,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scikit-learn": metadata.version("scikit-learn"),
    }
    for name in names:
        for distribution in (name, f"{name}-cpu"):
            try:
                versions[name] = metadata.version(distribution)
                break
            except metadata.PackageNotFoundError:
                continue
    return versions


def _replace_directory(staging, directory):
    """Move the complete ``staging`` directory to ``directory``, replacing an earlier model."""
    for path in staging.iterdir():
        with open(path, "rb") as f:
            os.fsync(f.fileno())
    if not directory.exists():
        os.rename(staging, directory)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old.", dir=directory.parent))
    os.rename(directory, retired / directory.name)
    os.rename(staging, directory)
    shutil.rmtree(retired)
