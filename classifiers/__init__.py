"""classifiers: probes (logistic, MLP, XGBoost) trained on embedcache features."""

from classifiers.baselines import KmerFrequencies, make_baseline
from classifiers.boosting import XGBoostProbe
from classifiers.logistic import LogisticProbe
from classifiers.metrics import bootstrap_intervals, classification_metrics
from classifiers.mlp import MLPClassifier
from classifiers.persistence import (
    ESTIMATORS,
    ModelFileError,
    ModelVersionError,
    load_estimator,
    make_estimator,
    save_estimator,
)
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
