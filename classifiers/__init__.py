"""classifiers: probes (logistic, MLP, XGBoost, layer-weighted) trained on embedcache features."""

from classifiers.baselines import KmerFrequencies, make_baseline
from classifiers.metrics import bootstrap_intervals, classification_metrics
from classifiers.persistence import (
    ESTIMATORS,
    ModelFileError,
    ModelVersionError,
    load_estimator,
    make_estimator,
    save_estimator,
)
from classifiers.probes import LayerWeightedProbe, LogisticProbe, MLPClassifier, XGBoostProbe
from classifiers.runs import (
    compare_runs,
    cross_validate,
    evaluate_run,
    fit_run,
    predict_run,
    read_run,
)
from classifiers.splits import assign_splits

__all__: list[str] = [
    "ESTIMATORS",
    "KmerFrequencies",
    "LayerWeightedProbe",
    "LogisticProbe",
    "MLPClassifier",
    "ModelFileError",
    "ModelVersionError",
    "XGBoostProbe",
    "assign_splits",
    "bootstrap_intervals",
    "classification_metrics",
    "compare_runs",
    "cross_validate",
    "evaluate_run",
    "fit_run",
    "load_estimator",
    "make_baseline",
    "make_estimator",
    "predict_run",
    "read_run",
    "save_estimator",
]
