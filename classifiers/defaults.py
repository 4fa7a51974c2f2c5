"""The defaults every ``classify`` workflow shares, in one dependency-free place (the command
line reads them at start-up without importing the classifiers).

- :data:`DEFAULT_PROBE` ``"logistic"``: the linear probe. It asks what an embedding encodes
  linearly, the usual question of a probing study; it is convex (one answer, no epochs or
  seeds to tune) and fast enough to fit once per layer and pooling, so ``sweep``, ``fit``
  and ``cv`` all default to it and the sweep's choice is the probe ``fit`` then trains. The
  MLP and XGBoost are a ``--probe`` away.
- :data:`DEFAULT_POOL` ``"mean"``: the pooling every model family has (NTv3 has no CLS
  token) and one ``embedcache build`` stores by default.
"""

__all__ = ["DEFAULT_POOL", "DEFAULT_PROBE"]

DEFAULT_PROBE = "logistic"
DEFAULT_POOL = "mean"
