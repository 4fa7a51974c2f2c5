"""The NT v1/v2 family object: what the pipeline asks of a 6-mer model, answered from its config.

Numerics are :mod:`.forward`'s, tokens :mod:`.tokenizer`'s, the architecture :mod:`.config`'s.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from embedcache.errors import InputError
from embedcache.families.base import bucket_lengths
from embedcache.families.nt import config as nt_config
from embedcache.families.nt.layouts import LAYOUTS
from embedcache.families.nt.tokenizer import tokenizer_for

__all__ = ["NTFamily", "center_token"]


def center_token(bases):
    """Per row, the index of the token holding the middle base (offset ``n_bases // 2``).

    ``bases`` (B, T) holds the bases each token covers (0 for CLS, padding and specials); the
    middle base lies in the first token whose cumulative base count exceeds ``n_bases // 2``.
    Works on NumPy and JAX arrays alike.
    """
    ends = bases.cumsum(axis=1)
    return (ends <= ends[:, -1:] // 2).sum(axis=1)


class NTFamily:
    """NT v1/v2: 6-mer tokens with CLS first; layers 1..num_layers; ``cls``, ``mean`` and ``center``.

    Numerics are :mod:`embedcache.families.nt.forward`'s; this adapter only answers the pipeline.
    """

    name = "nt"
    variants = ("v1", "v2")
    layouts = LAYOUTS
    pools = ("cls", "mean", "center", "mlm")
    default_pools = ("cls", "mean")  # what a build without --pool stores
    prefix = 1  # CLS leads every window
    masks_padding = True  # any padded length gives the same outputs: batches may mix buckets
    token_note = ", CLS included"
    default_max_tokens = 512
    attention_stride = 1
    species = None
    key_extra: dict = {}

    @classmethod
    def config_of(cls, hyperparams, variant: str) -> nt_config.NTConfig:
        return nt_config.NTConfig.from_hyperparams(hyperparams, variant)

    @classmethod
    def tokenizer_of(cls, hyperparams, variant: str):
        return tokenizer_for(variant, int(hyperparams["k_for_kmers"]))

    @classmethod
    def architecture(cls, hyperparams, variant: str) -> dict:
        """Only what defines the computation: run options in a hyperparams.json (layers to
        save ...) must not make the same weights from another layout another model."""
        hp = nt_config.normalize_hyperparams(hyperparams)
        return {k: hp[k] for k in nt_config.architecture_keys() if k in hp}

    @classmethod
    def parameter_shapes(cls, hyperparams, variant: str) -> dict:
        return nt_config.parameter_shapes(hyperparams, variant)

    def __init__(self, checkpoint: Any, *, species: str | None = None) -> None:
        if species is not None:
            raise InputError(f"{checkpoint.name} is a Nucleotide Transformer {checkpoint.variant}: it takes no "
                             "species (--species is for post-trained NTv3 models); drop --species.")
        self.config = checkpoint.config
        self.tokenizer = checkpoint.tokenizer()
        self.num_layers = int(self.config.num_layers)
        self.max_tokens = int(self.config.max_tokens)
        self.pad_id = int(self.config.pad_token_id)
        # Bases each token id covers (k for a k-mer, 1 for a single base or N, 0 for specials):
        # the ``center`` pool finds the token holding a row's middle base from these.
        self.bases_per_token = np.array([len(t) if set(t) <= set("ACGTN") else 0 for t in self.tokenizer.tokens],
                                        dtype=np.int32)

    @property
    def layer_names(self) -> list:
        return list(range(1, self.num_layers + 1))

    def check(self, layers: Sequence, pools: Sequence[str], attention: Sequence[tuple[int, int]]) -> None:
        n_layers, n_heads = self.num_layers, int(self.config.attention_heads)
        for layer in layers:
            if not (isinstance(layer, (int, np.integer)) and 1 <= layer <= n_layers):
                raise InputError(f"layer {layer} does not exist: the model has layers 1..{n_layers}; "
                                 "pass --layers within that range ('final' is NTv3's).")
            if "mlm" in pools and layer != n_layers:
                raise InputError(f"pool mlm (masked-LM logits at the middle token) comes from the LM head "
                                 f"after the last layer: ask for it with --layers {n_layers} alone.")
        for layer, head in attention:
            if not (1 <= layer <= n_layers and 1 <= head <= n_heads):
                raise InputError(f"attention map {layer}:{head} does not exist: the model has layers 1..{n_layers} "
                                 f"and heads 1..{n_heads} (both 1-based); fix --attention.")

    def count_tokens(self, seqs: Sequence[str]) -> np.ndarray:
        return np.asarray(self.tokenizer.count_tokens(seqs))

    def encode_batch(self, seqs: Sequence[str]) -> list:
        return self.tokenizer.encode_batch(seqs)

    def ladder(self, max_tokens: int) -> tuple[int, ...]:
        return bucket_lengths(max_tokens)

    def feature_dim(self, layer) -> int:
        return int(self.config.embed_dim)

    @property
    def logits_dim(self) -> int:
        """Width of the LM head's output: the ``mlm`` pool's."""
        return int(self.config.alphabet_size)

    def attention_size(self, max_tokens: int) -> int:
        return int(max_tokens)

    def attrs(self) -> dict:
        tok = self.tokenizer
        return {"tokenizer": {"variant": tok.variant, "k": tok.k, "vocab_size": tok.vocab_size},
                "feature_dim": int(self.config.embed_dim), "num_layers": self.num_layers,
                "attention_heads": int(self.config.attention_heads), "attention_stride": 1}

    def prepare_params(self, params, dtype):
        from embedcache.families.nt.forward import prepare_params

        return prepare_params(params, dtype)

    def center_positions(self, tokens: np.ndarray, n_tokens: np.ndarray) -> np.ndarray:
        """Per row of a padded (B, T) batch, the token holding the middle base (see :func:`center_token`)."""
        return np.asarray(center_token(self.bases_per_token[np.asarray(tokens)]))

    def masked_logits(self, params, tokens, centers, *, dtype: Any = None):
        """LM-head logits at ``centers`` (B,) with those tokens replaced by ``<mask>``; jit-able.

        The forward is the official one on the masked input, token dropout's rescaling
        included where the hyperparameters enable it (one masked token of the row's real ones).
        """
        import jax.numpy as jnp

        from embedcache.families.nt.forward import forward

        rows = jnp.arange(tokens.shape[0])
        masked = tokens.at[rows, centers].set(self.tokenizer.mask_id)
        kwargs = {} if dtype is None else {"dtype": dtype}
        return forward(params, masked, config=self.config, logits=True, **kwargs)["logits"][rows, centers]

    def filler(self, length: int) -> np.ndarray:
        """A padding row: a lone CLS, so that no softmax row is entirely masked."""
        row = np.full(length, self.pad_id, dtype=np.int32)
        row[0] = self.tokenizer.cls_id
        return row

    def compute(self, params, tokens, n_tokens, *, layers: Sequence, pools: Sequence[str] = default_pools,
                attention: Sequence[tuple[int, int]] = (), dtype: Any = None) -> dict:
        """Forward plus pooling on a padded (B, T) batch; jit-able. ``cls`` is position 0,
        ``mean`` the mean over real tokens after CLS (CLS itself for a CLS-only row), ``center``
        the token holding the row's middle base (0-based base offset ``n_bases // 2``), ``mlm``
        the LM-head logits there with that token masked (:meth:`masked_logits`; last layer only)."""
        import jax.numpy as jnp

        from embedcache.families.nt.forward import forward

        kwargs = {} if dtype is None else {"dtype": dtype}
        embedded = [p for p in pools if p != "mlm"]
        out = (forward(params, tokens, config=self.config, layers=sorted(set(layers)), attention=list(attention),
                       **kwargs) if embedded or attention else {"embeddings": {}, "attention": {}})
        real = tokens != self.pad_id
        body = real.at[:, 0].set(False)
        n_body = jnp.sum(body, axis=1, keepdims=True)
        pooled = {}
        if "center" in pools or "mlm" in pools:
            center = center_token(jnp.asarray(self.bases_per_token)[tokens])
        if "mlm" in pools:
            pooled[f"{self.num_layers}/mlm"] = self.masked_logits(params, tokens, center, dtype=dtype)
        for layer in layers if embedded else ():
            h = out["embeddings"][layer]
            if "center" in pools:
                pooled[f"{layer}/center"] = jnp.take_along_axis(h, center[:, None, None], axis=1)[:, 0]
            if "cls" in pools:
                pooled[f"{layer}/cls"] = h[:, 0]
            if "mean" in pools:
                mean = jnp.sum(jnp.where(body[..., None], h, 0.0), axis=1) / jnp.maximum(n_body, 1)
                pooled[f"{layer}/mean"] = jnp.where(n_body > 0, mean, h[:, 0])
        pair = (real[:, :, None] & real[:, None, :]).astype(jnp.float32)
        return {"pooled": pooled, "attention": {k: a * pair for k, a in out["attention"].items()}}
