"""The training loop of the network probes (MLP, layer-weighted): Adam (AdamW) on
cross-entropy in JAX + Optax, early stopping on the validation loss, the best epoch kept.

Each epoch is one jitted function (a ``jax.lax.scan`` over the minibatches of a shuffled
epoch), so the Python loop is over epochs, not steps; the compilations are cached per network,
loss and optimizer, so repeated fits (cross-validation, seeds, sweeps) reuse them. A training
loss that is not finite stops the fit with :class:`~classifiers.probes.base.FitDivergedError`.
"""

from __future__ import annotations

import functools

import numpy as np

from classifiers.probes.base import FitDivergedError

__all__ = ["train"]


def train(logits_fn, params, X, y, X_val, y_val, *, binary, batch_size, max_epochs,
          learning_rate, weight_decay, patience, rng):
    """Run the epochs; return the kept parameters, the loss history and the best epoch."""
    import jax
    import jax.numpy as jnp

    epoch_fn, loss_fn = _compiled(logits_fn, binary, learning_rate, weight_decay)
    n = X.shape[0]
    n_batches = -(-n // batch_size)
    # Padding the last minibatch to full size keeps one array shape for every epoch;
    # its mask gives the padded rows zero weight.
    mask = (np.arange(n_batches * batch_size) < n).astype(np.float32).reshape(n_batches, batch_size)
    X_dev, y_dev = jnp.asarray(X), jnp.asarray(y.astype(np.int32))
    if X_val is not None:
        X_val_dev, y_val_dev = jnp.asarray(X_val), jnp.asarray(y_val.astype(np.int32))

    state = _optimizer(learning_rate, weight_decay).init(params)
    history = {"epoch": [], "train_loss": []}
    if X_val is not None:
        history["val_loss"] = []
    best_params, best_loss, best_epoch = params, np.inf, 0
    for epoch in range(1, max_epochs + 1):
        order = np.zeros(n_batches * batch_size, dtype=np.int32)
        order[:n] = rng.permutation(n)
        params, state, train_loss = epoch_fn(
            params, state, X_dev, y_dev, order.reshape(n_batches, batch_size), mask
        )
        history["epoch"].append(epoch)
        history["train_loss"].append(float(train_loss))
        if not np.isfinite(history["train_loss"][-1]):
            # Once NaN, always NaN: the parameters are lost, and no epoch after will do.
            raise FitDivergedError(
                f"training diverged: the training loss was {history['train_loss'][-1]} at "
                f"epoch {epoch} (learning_rate={learning_rate:g}); nothing was fitted. Lower "
                "learning_rate and fit again.")
        if X_val is None:
            best_params, best_epoch = params, epoch
            continue
        val_loss = float(loss_fn(params, X_val_dev, y_val_dev))
        history["val_loss"].append(val_loss)
        if val_loss < best_loss:
            best_params, best_loss, best_epoch = params, val_loss, epoch
        elif patience is not None and epoch - best_epoch >= patience:
            break
    return jax.tree_util.tree_map(np.asarray, best_params), history, best_epoch


def _optimizer(learning_rate, weight_decay):
    import optax

    # adamw with weight_decay=0 is exactly Adam.
    return optax.adamw(learning_rate, weight_decay=weight_decay)


@functools.lru_cache(maxsize=16)
def _compiled(logits_fn, binary, learning_rate, weight_decay):
    """The jitted epoch and validation-loss functions for one network, loss and optimizer.

    Cached so that repeated fits (cross-validation, seeds, sweeps) reuse XLA's compilations.
    """
    import jax
    import jax.numpy as jnp
    import optax

    optimizer = _optimizer(learning_rate, weight_decay)

    def row_losses(params, X, y):
        logits = logits_fn(params, X, jnp)
        if binary:
            return optax.sigmoid_binary_cross_entropy(logits[:, 0], y.astype(logits.dtype))
        return optax.softmax_cross_entropy_with_integer_labels(logits, y)

    def batch_loss(params, X, y, weight):
        return jnp.sum(row_losses(params, X, y) * weight) / jnp.sum(weight)

    @jax.jit
    def epoch_fn(params, state, X, y, order, mask):
        def step(carry, batch):
            params, state = carry
            index, weight = batch
            loss, grads = jax.value_and_grad(batch_loss)(params, X[index], y[index], weight)
            updates, state = optimizer.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), loss * jnp.sum(weight)

        (params, state), losses = jax.lax.scan(step, (params, state), (order, mask))
        return params, state, jnp.sum(losses) / jnp.sum(mask)

    @jax.jit
    def loss_fn(params, X, y):
        return jnp.mean(row_losses(params, X, y))

    return epoch_fn, loss_fn
