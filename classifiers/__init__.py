"""classifiers: probes (logistic, MLP, XGBoost, layer-weighted) trained on embedcache features.

The names below are imported on first use, so that importing a small part (the command line's
``classifiers.defaults``) does not load scikit-learn, JAX and pandas.
"""

import importlib

# name -> the module that defines it
_EXPORTS = {
    "DEFAULT_POOL": "classifiers.defaults",
    "DEFAULT_PROBE": "classifiers.defaults",
    "KmerFrequencies": "classifiers.baselines",
    "make_baseline": "classifiers.baselines",
    "bootstrap_intervals": "classifiers.metrics",
    "classification_metrics": "classifiers.metrics",
    "ESTIMATORS": "classifiers.persistence",
    "ModelFileError": "classifiers.persistence",
    "ModelVersionError": "classifiers.persistence",
    "load_estimator": "classifiers.persistence",
    "make_estimator": "classifiers.persistence",
    "save_estimator": "classifiers.persistence",
    "LayerWeightedProbe": "classifiers.probes",
    "LogisticProbe": "classifiers.probes",
    "MLPClassifier": "classifiers.probes",
    "XGBoostProbe": "classifiers.probes",
    "compare_runs": "classifiers.runs",
    "cross_validate": "classifiers.runs",
    "evaluate_run": "classifiers.runs",
    "fit_run": "classifiers.runs",
    "predict_run": "classifiers.runs",
    "read_run": "classifiers.runs",
    "assign_splits": "classifiers.splits",
}

__all__: list[str] = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'classifiers' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
