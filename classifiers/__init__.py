"""classifiers: probes (logistic, MLP, XGBoost) trained on embedcache features."""

from classifiers.boosting import XGBoostProbe
from classifiers.logistic import LogisticProbe
from classifiers.mlp import MLPClassifier
from classifiers.persistence import (
    ESTIMATORS,
    ModelFileError,
    ModelVersionError,
    load_estimator,
    make_estimator,
    save_estimator,
)

__all__: list[str] = [
    "ESTIMATORS",
    "LogisticProbe",
    "MLPClassifier",
    "ModelFileError",
    "ModelVersionError",
    "XGBoostProbe",
    "load_estimator",
    "make_estimator",
    "save_estimator",
]
