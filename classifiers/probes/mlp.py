"""A multilayer perceptron probe in JAX + Optax, with the scikit-learn estimator API.

The defaults are those of the reference probing workflow for Nucleotide Transformer
embeddings: two ReLU hidden layers of 128 and 64 units, minibatches of 32, 6 epochs
of Adam, cross-entropy loss, early stopping on the validation loss with the best
epoch's parameters kept.

Training (:mod:`classifiers.probes.training`) runs one jitted function per epoch, so the
Python loop is over epochs, not steps. Prediction is
plain NumPy in float64: it needs neither JAX nor a compilation, and a row's result
does not depend on which other rows are predicted with it.

The network is described by two hooks, ``_init_network`` and ``_logits``, so that a probe
with another input stage (:class:`~classifiers.probes.layer_weighted.LayerWeightedProbe`)
reuses the training loop, early stopping and persistence.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
from scipy.special import expit, softmax
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, InvalidParameterError

from classifiers.probes.base import (ARRAYS_FILE, ModelFileError, Probe, check_shapes,
                                     read_arrays, write_arrays)
from classifiers.probes.training import train

__all__ = ["MAX_HIDDEN_LAYERS", "MAX_LAYER_WIDTH", "MLPClassifier"]

#: Bounds on ``hidden_layer_sizes``, so a typo cannot exhaust memory: two 8,192-wide layers
#: are 256 MiB of float32 weights, four times that with gradients and Adam's two moments,
#: while probes need far less (the reference workflow uses 128 and 64).
MAX_LAYER_WIDTH = 8192
MAX_HIDDEN_LAYERS = 8


_LAYER_SIZES = (f"a tuple of at most {MAX_HIDDEN_LAYERS} integers, each in [1, "
                f"{MAX_LAYER_WIDTH}]")


def _layer_sizes_ok(sizes) -> bool:
    return (isinstance(sizes, (tuple, list)) and len(sizes) <= MAX_HIDDEN_LAYERS
            and all(isinstance(s, Integral) and not isinstance(s, bool)
                    and 1 <= s <= MAX_LAYER_WIDTH for s in sizes))


class MLPClassifier(Probe):
    """Multilayer perceptron classifier trained with Adam on cross-entropy (JAX + Optax).

    Two classes are modelled with one output logit and the sigmoid binary
    cross-entropy; three or more with one logit per class and the softmax
    cross-entropy. Labels may be of any type (strings included); they are
    kept in ``classes_``.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(128, 64)
        Width of each hidden layer (ReLU activation), input side first.
    batch_size : int, default=32
        Rows per Adam step. The last minibatch of an epoch may be smaller.
    max_epochs : int, default=6
        Number of passes over the training data (fewer when ``patience`` stops early).
    learning_rate : float, default=1e-3
        Adam step size.
    weight_decay : float, default=0.0
        Decoupled weight decay (AdamW); 0 is plain Adam.
    validation_fraction : float, default=0.1
        Share of the training data held out, stratified by class, to choose the
        best epoch when ``fit`` gets no ``eval_set``. 0 trains on all rows and
        keeps the last epoch.
    patience : int or None, default=None
        Stop after this many epochs without a lower validation loss. None runs
        all ``max_epochs``. Either way the parameters of the epoch with the
        lowest validation loss are kept.
    standardize : bool, default=True
        Centre and scale each feature with the training rows' mean and standard
        deviation before the first layer. Transformer embeddings have a few
        dimensions far larger than the rest; unscaled, they dominate the
        first steps of Adam.
    random_state : int, RandomState instance or None, default=0
        Seeds the validation split, the initial weights and the shuffling.
        The same seed on the same data gives identical predictions.

    Attributes
    ----------
    classes_, n_features_in_, feature_names_in_
        As for every :class:`~classifiers.probes.base.Probe`.
    params_ : dict
        The kept network parameters: ``{"hidden_1": {"weight": (n_in, n_out),
        "bias": (n_out,)}, ..., "output": {...}}``, float32 NumPy arrays.
    feature_mean_, feature_scale_ : ndarray of shape (n_features_in_,) or None
        The standardization applied before the first layer (None when
        ``standardize=False``).
    history_ : dict of list
        Per epoch: ``"epoch"`` (1-based), ``"train_loss"`` (mean minibatch loss)
        and, when there was validation data, ``"val_loss"``.
    best_epoch_ : int
        The 1-based epoch whose parameters are kept.
    n_epochs_ : int
        Number of epochs run.

    Notes
    -----
    Results are reproducible for a given seed, data and machine. Floating-point
    summation order inside XLA may differ between CPU types, so bit-identical
    results across different machines are not promised.
    """

    _parameter_constraints = {
        # Bounded element-wise in _validate_params: scikit-learn has no constraint for that.
        "hidden_layer_sizes": ["array-like"],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "patience": [Interval(Integral, 1, None, closed="left"), None],
        "standardize": ["boolean"],
        "random_state": ["random_state"],
    }
    packages = ("jax", "optax", "safetensors")
    _dtype = np.float32

    def __init__(self, hidden_layer_sizes=(128, 64), batch_size=32, max_epochs=6,
                 learning_rate=1e-3, weight_decay=0.0, validation_fraction=0.1, patience=None,
                 standardize=True, random_state=0):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.standardize = standardize
        self.random_state = random_state

    def _validate_params(self):
        super()._validate_params()
        if not _layer_sizes_ok(self.hidden_layer_sizes):
            raise InvalidParameterError(
                f"The 'hidden_layer_sizes' parameter of {type(self).__name__} must be "
                f"{_LAYER_SIZES}. Got {self.hidden_layer_sizes!r} instead.")

    def _fit(self, X, y, eval_set):
        rng = check_random_state(self.random_state)
        if eval_set is not None:
            (X_train, y_train), (X_val, y_val) = (X, y), eval_set
        elif self.validation_fraction > 0:
            X_train, X_val, y_train, y_val = _split(X, y, self.validation_fraction, rng)
        else:
            X_train, y_train, X_val, y_val = X, y, None, None

        if self.standardize:
            mean = X_train.mean(axis=0, dtype=np.float64)
            scale = X_train.std(axis=0, dtype=np.float64)
            # A constant feature carries no signal; dividing by 1 keeps it finite.
            scale[scale < 10 * np.finfo(np.float32).eps] = 1.0
            self.feature_mean_, self.feature_scale_ = mean, scale
        else:
            self.feature_mean_ = self.feature_scale_ = None

        n_outputs = 1 if len(self.classes_) == 2 else len(self.classes_)
        # A huge step overflows float32 on the way in; the loss check in _train says so once,
        # instead of NumPy's overflow warnings.
        with np.errstate(over="ignore", invalid="ignore"):
            params, history, best_epoch = train(
                type(self)._logits,
                self._init_network(X.shape[1:], n_outputs, rng),
                self._standardized(X_train).astype(np.float32),
                y_train,
                None if X_val is None else self._standardized(X_val).astype(np.float32),
                y_val,
                binary=n_outputs == 1,
                # No larger than the data: the padded epoch's size follows the batch size.
                batch_size=min(self.batch_size, len(X_train)),
                max_epochs=self.max_epochs,
                learning_rate=float(self.learning_rate),
                weight_decay=float(self.weight_decay),
                patience=self.patience,
                rng=rng,
            )
        self.params_ = params
        self.history_ = history
        self.best_epoch_ = best_epoch
        self.n_epochs_ = len(history["epoch"])

    # -- the network ------------------------------------------------------------------------

    def _init_network(self, feature_shape, n_outputs, rng):
        return _init_dense((feature_shape[0], *self.hidden_layer_sizes, n_outputs), rng)

    @staticmethod
    def _logits(params, X, xp):
        """The network's output for standardized X; ``xp`` is ``jax.numpy`` or NumPy."""
        *hidden, output = _dense_layers(params)
        h = X
        for layer in hidden:
            h = xp.maximum(h @ layer["weight"] + layer["bias"], 0.0)
        return h @ output["weight"] + output["bias"]

    # -- prediction -------------------------------------------------------------------------

    def decision_function(self, X):
        """Output logits, float64: shape (n_samples,) for two classes (the logit of
        ``classes_[1]``), else (n_samples, n_classes)."""
        return self._decision(self._validated(X))

    def _decision(self, X):
        logits = self._logits(_as_float64(self.params_), self._standardized(X.astype(np.float64)),
                              np)
        return logits[:, 0] if len(self.classes_) == 2 else logits

    def _predict_proba(self, X):
        logits = self._decision(X)
        if logits.ndim == 1:
            p = expit(logits)
            return np.column_stack([1.0 - p, p])
        return softmax(logits, axis=1)

    def _standardized(self, X):
        if self.feature_mean_ is None:
            return X
        return (X - self.feature_mean_) / self.feature_scale_

    # -- persistence ------------------------------------------------------------------------

    def _save_state(self, directory):
        arrays = _flatten(self.params_)
        if self.feature_mean_ is not None:
            arrays["standardize.mean"] = self.feature_mean_
            arrays["standardize.scale"] = self.feature_scale_
        write_arrays(directory / ARRAYS_FILE, arrays)
        return {"layers": list(self.params_), "history": self.history_,
                "best_epoch": int(self.best_epoch_), "n_epochs": int(self.n_epochs_)}

    def _load_state(self, directory, fitted):
        path = directory / ARRAYS_FILE
        arrays = read_arrays(path, ())
        self.params_ = _unflatten({name: value for name, value in arrays.items()
                                   if name.split(".")[0] in fitted["layers"]})
        missing = [layer for layer in fitted["layers"] if layer not in self.params_]
        if missing:
            raise ModelFileError(f"{path} lacks the layers {missing}; re-fit the model.")
        standardized = "standardize.mean" in arrays
        self.feature_mean_ = arrays["standardize.mean"] if standardized else None
        self.feature_scale_ = arrays["standardize.scale"] if standardized else None
        self.history_ = fitted["history"]
        self.best_epoch_ = fitted["best_epoch"]
        self.n_epochs_ = fitted["n_epochs"]
        self._check_loaded_shapes(path)

    def _check_loaded_shapes(self, path):
        expected = _init_dense_shapes(
            (self.n_features_in_, *self.hidden_layer_sizes,
             1 if len(self.classes_) == 2 else len(self.classes_)))
        got = {name: layer.get("weight", np.empty(0)).shape
               for name, layer in self.params_.items()}
        check_shapes(path, self, {n: (got.get(n, ()), s) for n, s in expected.items()})


def _split(X, y, fraction, rng):
    """Hold out ``fraction`` of the rows, stratified when every class allows it."""
    seed = rng.randint(np.iinfo(np.int32).max)
    try:
        return train_test_split(X, y, test_size=fraction, stratify=y, random_state=seed)
    except ValueError:
        # Too few rows of some class to stratify (tiny data sets); a plain split still
        # gives a validation set.
        return train_test_split(X, y, test_size=fraction, random_state=seed)


def _init_dense_shapes(sizes):
    n_layers = len(sizes) - 1
    return {("output" if i == n_layers else f"hidden_{i}"): (n_in, n_out)
            for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1)}


def _init_dense(sizes, rng):
    """Glorot-uniform weights and zero biases for layers of the given widths."""
    params = {}
    for name, (n_in, n_out) in _init_dense_shapes(sizes).items():
        limit = math.sqrt(6.0 / (n_in + n_out))
        params[name] = {
            "weight": rng.uniform(-limit, limit, size=(n_in, n_out)).astype(np.float32),
            "bias": np.zeros(n_out, dtype=np.float32),
        }
    return params


def _dense_layers(params):
    """The layers in input-to-output order (pytrees sort dict keys, so not their order)."""
    return [params[f"hidden_{i}"] for i in range(1, len(params))] + [params["output"]]


def _flatten(tree, prefix=""):
    """Nested dicts of arrays as ``{"a.b": array}`` (the safetensors names)."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _unflatten(flat):
    tree = {}
    for name, value in flat.items():
        *path, leaf = name.split(".")
        node = tree
        for key in path:
            node = node.setdefault(key, {})
        node[leaf] = value
    return tree


def _as_float64(tree):
    return {k: _as_float64(v) if isinstance(v, dict) else np.asarray(v, dtype=np.float64)
            for k, v in tree.items()}
