"""The NTv3 family object: what the pipeline asks of a single-base U-Net, answered from its config.

Numerics are :mod:`.forward`'s; config, tokenizer and parameter layout :mod:`.config`'s.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from embedcache.errors import InputError
from embedcache.families.ntv3 import config as v3
from embedcache.families.ntv3.layouts import LAYOUTS

__all__ = ["NTv3Family"]

# A whole NTv3 context (1 Mb) is rarely wanted by default: windows of this many bases are.
_NTV3_DEFAULT_TOKENS = 131_072
_NTV3_CONTEXT = 1_048_576


class NTv3Family:
    """NTv3: single-base tokens, core layers 1..num_layers plus ``final``, ``mean`` pooling only."""

    name = "ntv3"
    variants = ("v3",)
    layouts = LAYOUTS
    pools = ("mean", "center", "mlm")
    default_pools = ("mean",)  # what a build without --pool stores
    prefix = 0  # no CLS
    masks_padding = False  # padding flows through the convolutions: one padded length per row
    token_note = " (bases)"

    @classmethod
    def config_of(cls, hyperparams, variant: str) -> v3.NTv3Config:
        return v3.NTv3Config.from_hub_config(hyperparams)

    @classmethod
    def tokenizer_of(cls, hyperparams, variant: str) -> v3.NTv3Tokenizer:
        return v3.NTv3Tokenizer(int(hyperparams["num_downsamples"]))

    @classmethod
    def architecture(cls, hyperparams, variant: str) -> dict:
        return v3.NTv3Config.from_hub_config(hyperparams).to_dict()

    @classmethod
    def parameter_shapes(cls, hyperparams, variant: str) -> dict:
        return v3.parameter_shapes(v3.NTv3Config.from_hub_config(hyperparams))

    def __init__(self, checkpoint: Any, *, species: str | None = None) -> None:
        from embedcache.checkpoints.resolve import RELEASED

        self.config = checkpoint.config
        self.tokenizer = checkpoint.tokenizer()
        self.num_layers = int(self.config.num_layers)
        self.pad_id = self.tokenizer.pad_id  # N: padding flows through the convolutions
        released = RELEASED.get(str(checkpoint.name).removeprefix("random-"))
        self.max_tokens = int(released.context) if released is not None else _NTV3_CONTEXT
        self.default_max_tokens = min(self.max_tokens, _NTV3_DEFAULT_TOKENS)
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

    @property
    def attention_stride(self) -> int:
        """Bases per attention-map position (the core's resolution)."""
        return self.config.block

    def count_tokens(self, seqs: Sequence[str]) -> np.ndarray:
        return np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))

    def encode_batch(self, seqs: Sequence[str]) -> list:
        return [self.tokenizer.encode(s) for s in seqs]

    def ladder(self, max_tokens: int) -> tuple[int, ...]:
        """Every multiple of 2**num_downsamples up to the padded ``max_tokens``: a sequence is
        only ever batched at its own padded length (its outputs are defined there)."""
        return tuple(range(self.config.block, self.padded_length(max_tokens) + 1, self.config.block))

    @property
    def logits_dim(self) -> int:
        """Width of the LM head's output: the ``mlm`` pool's."""
        return int(self.config.alphabet_size)

    def feature_dim(self, layer) -> int:
        """``final`` has the stem's width, core layers the core's."""
        return int(self.config.filters[0] if layer == "final" else self.config.embed_dim)

    def attention_size(self, max_tokens: int) -> int:
        return self.padded_length(max_tokens) // self.config.block

    def attrs(self) -> dict:
        cfg = self.config
        return {"tokenizer": {"variant": "v3", "k": 1, "vocab_size": len(self.tokenizer.vocabulary),
                              "pad": "N", "block": cfg.block},
                "feature_dim": int(cfg.embed_dim), "final_dim": int(cfg.filters[0]), "num_layers": self.num_layers,
                "attention_heads": int(cfg.attention_heads), "attention_stride": int(cfg.block)}

    def prepare_params(self, params, dtype):
        from embedcache.families.ntv3.forward import prepare_params

        return prepare_params(params, self.config, dtype)

    def filler(self, length: int) -> np.ndarray:
        """A padding row (all ``N``); rows never mix, so its content does not matter."""
        return np.full(length, self.pad_id, dtype=np.int32)

    def center_positions(self, tokens: np.ndarray, n_tokens: np.ndarray) -> np.ndarray:
        """Per row, the middle base's position (``n // 2``; one token per base)."""
        return np.asarray(n_tokens, dtype=np.int64) // 2

    def masked_logits(self, params, tokens, centers, *, dtype: Any = None):
        """LM-head logits at ``centers`` (B,) with those bases replaced by ``<mask>``; jit-able."""
        import jax.numpy as jnp

        from embedcache.families.ntv3.forward import forward

        b = tokens.shape[0]
        rows = jnp.arange(b)
        masked = tokens.at[rows, centers].set(self.tokenizer.vocabulary.index("<mask>"))
        species = None if self.species_token is None else jnp.full((b,), self.species_token, jnp.int32)
        kwargs = {} if dtype is None else {"dtype": dtype}
        out = forward(params, masked, config=self.config, species=species, logits=True, **kwargs)
        return out["logits"][rows, centers]

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
        if "mlm" in pools and list(layers) != ["final"]:
            raise InputError("pool mlm (masked-LM logits at the middle base) comes from the LM head on the "
                             "full-resolution output: ask for it with --layers final alone.")
        try:
            v3.check_request(self.config, list(layers), list(attention))
        except ValueError as exc:
            raise InputError(str(exc)) from None

    def compute(self, params, tokens, n_tokens, *, layers: Sequence, pools: Sequence[str] = default_pools,
                attention: Sequence[tuple[int, int]] = (), dtype: Any = None) -> dict:
        """Forward plus pooling on a (B, P) batch of equal padded length; jit-able.

        Returns ``{"pooled": {"L/mean": (B, D), "L/center": (B, D)}, "attention": {(l, h): (B, T, T)}}``
        with ``L`` a layer number or ``final``; ``center`` is the middle base's position
        (``final``) or the bottleneck position covering it (core layers); ``final/mlm`` the
        LM-head logits at the middle base with that base masked; attention is zero outside the
        covered positions.
        """
        import jax.numpy as jnp

        from embedcache.families.ntv3.forward import forward

        b = tokens.shape[0]
        species = None if self.species_token is None else jnp.full((b,), self.species_token, jnp.int32)
        kwargs = {} if dtype is None else {"dtype": dtype}
        embedded = [p for p in pools if p != "mlm"]
        out = (forward(params, tokens, config=self.config, layers=list(layers), attention=list(attention),
                       species=species, **kwargs) if embedded or attention else {"attention": {}})
        n = jnp.asarray(n_tokens)[:, None]
        covered = -(-n // self.config.block)
        pooled = {}
        if "mlm" in pools:
            pooled["final/mlm"] = self.masked_logits(params, tokens, n[:, 0] // 2, dtype=dtype)
        for layer in layers if embedded else ():
            h, count = (out["final"], n) if layer == "final" else (out["embeddings"][layer], covered)
            mask = jnp.arange(h.shape[1])[None, :] < count
            if "mean" in pools:
                pooled[f"{layer}/mean"] = jnp.sum(jnp.where(mask[..., None], h, 0.0), axis=1) / jnp.maximum(count, 1)
            if "center" in pools:
                # The middle base (offset n // 2), or the bottleneck position covering it.
                mid = n // 2 if layer == "final" else (n // 2) // self.config.block
                pooled[f"{layer}/center"] = jnp.take_along_axis(h, mid[:, :, None], axis=1)[:, 0]
        t = jnp.arange(tokens.shape[1] // self.config.block)[None, :] < covered
        pair = (t[:, :, None] & t[:, None, :]).astype(jnp.float32)
        maps = {key: a * pair for key, a in out["attention"].items()}
        return {"pooled": pooled, "attention": maps}

    def plan(self, n_tokens: Sequence[int]) -> dict[int, np.ndarray]:
        """Row indices grouped by padded length: the only batches NTv3 may form."""
        lengths = np.array([self.padded_length(int(n)) for n in n_tokens])
        return {int(p): np.flatnonzero(lengths == p) for p in np.unique(lengths)}
