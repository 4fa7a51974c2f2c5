"""classifiers: probes (logistic, MLP, XGBoost) trained on embedcache features."""

__all__: list[str] = []
