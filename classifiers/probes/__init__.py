"""The probe kinds: one module each on :class:`~classifiers.probes.base.Probe`.

Adding a kind means one module and one entry in :data:`PROBES`.
"""

from classifiers.probes.base import Probe
from classifiers.probes.boosting import XGBoostProbe
from classifiers.probes.layer_weighted import LayerWeightedProbe
from classifiers.probes.logistic import LogisticProbe
from classifiers.probes.mlp import MLPClassifier

__all__ = ["PROBES", "LayerWeightedProbe", "LogisticProbe", "MLPClassifier", "Probe",
           "XGBoostProbe"]

#: The probe kinds, by the name used on the command line and in ``model.json``.
PROBES = {"mlp": MLPClassifier, "logistic": LogisticProbe, "xgboost": XGBoostProbe,
          "layer-weighted": LayerWeightedProbe}
