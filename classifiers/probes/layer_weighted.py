"""A layer-weighted probe: a learned softmax weight per backbone layer, and a head on the mix.

Which layer of a DNA language model to probe is the first question; instead of fitting one
probe per layer (``classify sweep``), this probe learns it. The pooled embedding of every
requested layer is standardized per layer and dimension, the layers are mixed with weights
``softmax(a)`` (one learned logit per layer, zero at the start: an even mix), and a linear
head (or an MLP head, ``hidden_layer_sizes``) classifies the mix. The weights and the head
are trained jointly with Adam, with early stopping on the validation loss, exactly as
:class:`~classifiers.probes.mlp.MLPClassifier` trains its network.
"""

from __future__ import annotations

import numpy as np
from scipy.special import softmax

from classifiers.probes.base import check_shapes
from classifiers.probes.mlp import MLPClassifier, _init_dense, _init_dense_shapes

__all__ = ["LayerWeightedProbe"]


class LayerWeightedProbe(MLPClassifier):
    """Softmax-weighted mix of per-layer embeddings, with a linear (or MLP) head.

    ``X`` is the stack of the layers' pooled embeddings, shape (n_samples, n_layers,
    n_features); a 2-D ``X`` is one layer. The other parameters and attributes are those of
    :class:`~classifiers.probes.mlp.MLPClassifier`; the defaults differ: a linear head, and
    up to 50 epochs with early stopping after 5 without a lower validation loss, and a
    larger step.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=()
        Hidden layers of the head; () is a linear head (logistic regression on the mix).
    batch_size, weight_decay, validation_fraction, standardize, random_state
        As for :class:`~classifiers.probes.mlp.MLPClassifier`.
    max_epochs : int, default=50
    learning_rate : float, default=1e-2
        Larger than the MLP's: the layer logits start even and must move far enough to
        single out a layer within the epochs.
    patience : int or None, default=5

    Attributes
    ----------
    layer_weights_ : ndarray of shape (n_layers,)
        The learned mixing weights (non-negative, summing to 1), in the order of X's layers.
    n_features_in_ : int
        ``X.shape[1]`` in ``fit``: the number of layers for 3-D X, of features for 2-D X.
    params_ : dict
        ``{"mix": {"logits": (n_layers,)}, "head": {"hidden_1": ..., "output": ...}}``.
    feature_mean_, feature_scale_ : ndarray of shape (n_layers, n_features) or None
        The per-layer standardization.
    """

    _allow_nd = True

    def __init__(self, hidden_layer_sizes=(), batch_size=32, max_epochs=50,
                 learning_rate=1e-2, weight_decay=0.0, validation_fraction=0.1, patience=5,
                 standardize=True, random_state=0):
        super().__init__(hidden_layer_sizes=hidden_layer_sizes, batch_size=batch_size,
                         max_epochs=max_epochs, learning_rate=learning_rate,
                         weight_decay=weight_decay, validation_fraction=validation_fraction,
                         patience=patience, standardize=standardize, random_state=random_state)

    def _fit(self, X, y, eval_set):
        if X.ndim not in (2, 3):
            raise ValueError(f"X must be (n_samples, n_layers, n_features) or (n_samples, "
                             f"n_features); got shape {X.shape}.")
        if eval_set is not None:
            eval_set = (_stacked(eval_set[0]), eval_set[1])
        super()._fit(_stacked(X), y, eval_set)
        self.layer_weights_ = softmax(self.params_["mix"]["logits"].astype(np.float64))

    def _validated(self, X):
        X = super()._validated(X)
        stacked = _stacked(X)
        expected = (len(self.params_["mix"]["logits"]), self._head_width())
        if stacked.shape[1:] != expected:
            raise ValueError(f"X has layers x features {stacked.shape[1:]}, but the probe was "
                             f"fitted on {expected}.")
        return stacked

    def _head_width(self):
        first = "hidden_1" if "hidden_1" in self.params_["head"] else "output"
        return self.params_["head"][first]["weight"].shape[0]

    def _init_network(self, feature_shape, n_outputs, rng):
        n_layers, width = feature_shape
        return {"mix": {"logits": np.zeros(n_layers, dtype=np.float32)},
                "head": _init_dense((width, *self.hidden_layer_sizes, n_outputs), rng)}

    @staticmethod
    def _logits(params, X, xp):
        a = params["mix"]["logits"]
        w = xp.exp(a - a.max())
        w = w / w.sum()
        return MLPClassifier._logits(params["head"], xp.einsum("l,nld->nd", w, X), xp)

    def _load_state(self, directory, fitted):
        super()._load_state(directory, fitted)
        self.layer_weights_ = softmax(self.params_["mix"]["logits"].astype(np.float64))

    def _check_loaded_shapes(self, path):
        head = self.params_.get("head", {})
        width = self._head_width() if head.get("output", head.get("hidden_1")) else 0
        n_out = 1 if len(self.classes_) == 2 else len(self.classes_)
        expected = _init_dense_shapes((width, *self.hidden_layer_sizes, n_out))
        shapes = {f"head.{n}": (head.get(n, {}).get("weight", np.empty(0)).shape, s)
                  for n, s in expected.items()}
        n_layers = len(self.params_["mix"].get("logits", ()))
        if n_layers not in (1, self.n_features_in_):
            shapes["mix.logits"] = ((n_layers,), (self.n_features_in_,))
        check_shapes(path, self, shapes)


def _stacked(X):
    """2-D X as one layer, (n, 1, features)."""
    return X[:, None, :] if X.ndim == 2 else X
