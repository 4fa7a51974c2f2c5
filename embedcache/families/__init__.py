"""Model families: what the engine, the store and the CLI ask of a model, answered per family.

Each family module holds its tokenizer, config and parameter layout (``nt``: v1/v2 6-mer
models, forward in :mod:`embedcache.model`; ``ntv3``: single-base U-Net, forward in
:mod:`.ntv3_forward`). A family object wraps a loaded checkpoint and answers what the
pipeline asks, so callers need not branch on the family (v1/v2 are still answered by
:class:`embedcache.engine.Embedder` itself; wiring both through one interface is the
engine's next step):

* ``tokenizer`` and ``padded_length(n_tokens)``: how a sequence becomes a padded row;
* ``layer_names``, ``pools``, ``check(layers, pools, attention)``: what may be asked;
* ``positions(n_tokens, layer)``: how many output positions of a layer cover the sequence
  (the geometry of its attention maps too);
* ``species`` / ``key_extra``: a post-trained NTv3's species, part of the model key;
* ``compute(params, tokens, n_tokens, ...)``: the jit-able forward with pooling.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from embedcache.errors import InputError

__all__ = ["NTv3Family"]


class NTv3Family:
    """NTv3: single-base tokens, core layers 1..num_layers plus ``final``, ``mean`` pooling only."""

    name = "ntv3"
    pools = ("mean",)

    def __init__(self, checkpoint: Any, *, species: str | None = None) -> None:
        self.config = checkpoint.config
        self.tokenizer = checkpoint.tokenizer()
        try:
            self.species_token = self.config.species_token(species)
        except ValueError as exc:
            raise InputError(f"{checkpoint.name}: {exc} (--species NAME)") from None
        self.species = species if self.species_token is not None else None

    @property
    def key_extra(self) -> dict:
        """What besides the parameters identifies the model's outputs: the species."""
        return {"species": self.species} if self.species else {}

    @property
    def layer_names(self) -> list:
        return [*range(1, self.config.num_layers + 1), "final"]

    def padded_length(self, n_tokens: int) -> int:
        """The one padded length whose outputs define the sequence's (never another)."""
        return self.tokenizer.padded_length(n_tokens)

    def positions(self, n_tokens: int, layer) -> int:
        """Output positions of ``layer`` that cover ``n_tokens`` bases."""
        return n_tokens if layer == "final" else -(-n_tokens // self.config.block)

    def check(self, layers: Sequence, pools: Sequence[str], attention: Sequence[tuple[int, int]]) -> None:
        if "cls" in pools:
            raise InputError(
                "pool 'cls' does not exist for NTv3: it has no CLS token. Use --pool mean (the mean "
                "over the positions that cover the sequence)."
            )
        unknown = set(pools) - set(self.pools)
        if unknown:
            raise InputError(f"unknown pooling {sorted(unknown)} for NTv3; choose from {list(self.pools)}")
        from embedcache.families.ntv3 import check_request

        try:
            check_request(self.config, list(layers), list(attention))
        except ValueError as exc:
            raise InputError(str(exc)) from None

    def compute(self, params, tokens, n_tokens, *, layers: Sequence, attention: Sequence[tuple[int, int]] = (),
                dtype: Any = None) -> dict:
        """Forward plus pooling on a (B, P) batch of equal padded length; jit-able.

        Returns ``{"pooled": {"L/mean": (B, D)}, "attention": {(l, h): (B, T, T)}}`` with
        ``L`` a layer number or ``final``; attention is zero outside the covered positions.
        """
        import jax.numpy as jnp

        from embedcache.families.ntv3_forward import forward

        b = tokens.shape[0]
        species = None if self.species_token is None else jnp.full((b,), self.species_token, jnp.int32)
        kwargs = {} if dtype is None else {"dtype": dtype}
        out = forward(params, tokens, config=self.config, layers=list(layers), attention=list(attention),
                      species=species, **kwargs)
        n = jnp.asarray(n_tokens)[:, None]
        covered = -(-n // self.config.block)
        pooled = {}
        for layer in layers:
            h, count = (out["final"], n) if layer == "final" else (out["embeddings"][layer], covered)
            mask = jnp.arange(h.shape[1])[None, :] < count
            pooled[f"{layer}/mean"] = jnp.sum(jnp.where(mask[..., None], h, 0.0), axis=1) / jnp.maximum(count, 1)
        t = jnp.arange(tokens.shape[1] // self.config.block)[None, :] < covered
        pair = (t[:, :, None] & t[:, None, :]).astype(jnp.float32)
        maps = {key: a * pair for key, a in out["attention"].items()}
        return {"pooled": pooled, "attention": maps}

    def plan(self, n_tokens: Sequence[int]) -> dict[int, np.ndarray]:
        """Row indices grouped by padded length: the only batches NTv3 may form."""
        lengths = np.array([self.padded_length(int(n)) for n in n_tokens])
        return {int(p): np.flatnonzero(lengths == p) for p in np.unique(lengths)}
