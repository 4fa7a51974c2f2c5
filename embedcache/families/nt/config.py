"""Nucleotide Transformer v1/v2: architecture (hyperparameters), parameter layout, family object.

The forward pass lives in :mod:`embedcache.families.nt.forward` and the 6-mer tokenizer in
:mod:`embedcache.families.nt.tokenizer`; this module holds what the checkpoint readers need to know
about the architecture (the official defaults, the names and shapes of every parameter)
without importing JAX (the family object is :class:`.family.NTFamily`).

Parameter trees are ``{module_path: {param_name: array}}`` with the on-disk names of the
released JAX checkpoints (``esm_transformer/attention_layer_0/~/mha/query`` ...).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Mapping

from embedcache.errors import CheckpointError

__all__ = ["NTConfig", "PREFIX", "check_layer_count", "normalize_hyperparams", "parameter_shapes", "infer_variant", "architecture_keys"]

PREFIX = "esm_transformer"

_REQUIRED_HYPERPARAMS = (
    "max_positions", "embed_dim", "attention_heads", "ffn_embed_dim", "num_layers", "k_for_kmers",
)
# The official model's defaults for keys that older hyperparams.json files leave out.
_DEFAULT_HYPERPARAMS = {
    "add_bias_ffn": True,
    "ffn_activation_name": "gelu-no-approx",
    "use_glu_in_ffn": False,
    "add_bias_kv": False,
    "use_rotary_embedding": False,
    "positional_embedding": "learned",
    "emb_layer_norm_before": False,
    "embed_scale": 1.0,
    "token_dropout": False,
    "masking_ratio": 0.1,
    "masking_prob": 0.8,
}
# Special tokens in the embedding table besides the 4**k k-mers and the 5 single bases.
SPECIAL_ROWS = {"v2": 6, "v1": 4}
PAD_TOKEN_ID = 1
# 4**k k-mer tokens: beyond this the vocabulary alone would not fit in memory.
_MAX_K = 10
_LAYER = re.compile(rf"{PREFIX}/attention_layer_(\d+)/")


def architecture_keys() -> tuple[str, ...]:
    """The hyperparameters that define the computation (and so enter the parameter digest).

    Released ``hyperparams.json`` files also carry run options (layers to save, gradient
    checkpointing ...); the same weights read from another layout do not, and must still
    be the same model.
    """
    return (*_REQUIRED_HYPERPARAMS, *_DEFAULT_HYPERPARAMS, "key_dim")


def normalize_hyperparams(hyperparams: Mapping[str, Any], *, source: str = "hyperparams") -> dict:
    """Return the hyperparameters with the official defaults filled in.

    Parameters
    ----------
    hyperparams
        A released ``hyperparams.json`` as a dict.
    source
        Where they come from, for error messages.

    Returns
    -------
    dict
        A new dict with every default key and ``key_dim`` (``embed_dim // attention_heads``
        unless given). Idempotent.

    Raises
    ------
    CheckpointError
        A required key is missing or the architecture is not one NT uses.
    """
    if not isinstance(hyperparams, Mapping):
        raise CheckpointError(f"{source}: hyperparameters must be a JSON object, not {type(hyperparams).__name__}")
    missing = [k for k in _REQUIRED_HYPERPARAMS if k not in hyperparams]
    if missing:
        raise CheckpointError(
            f"{source} lacks the hyperparameters {missing}; it must hold at least "
            f"{list(_REQUIRED_HYPERPARAMS)} (compare with a released jax_model/hyperparams.json)"
        )
    hp = dict(hyperparams)
    for key in (*_REQUIRED_HYPERPARAMS, *(("key_dim",) if hp.get("key_dim") is not None else ())):
        hp[key] = _count(hp[key], key, source)
    if not 1 <= hp["k_for_kmers"] <= _MAX_K:
        raise CheckpointError(f"{source}: k_for_kmers {hp['k_for_kmers']} is not a k-mer size NT uses (1..{_MAX_K}; "
                              "the released models use 6, Codon-NT 3)")
    for key, default in _DEFAULT_HYPERPARAMS.items():
        hp.setdefault(key, default)
    if hp.get("key_dim") is None:
        if int(hp["embed_dim"]) % int(hp["attention_heads"]):
            raise CheckpointError(
                f"{source}: embed_dim {hp['embed_dim']} is not divisible by attention_heads "
                f"{hp['attention_heads']}; give key_dim explicitly"
            )
        hp["key_dim"] = int(hp["embed_dim"]) // int(hp["attention_heads"])
    if hp["positional_embedding"] not in ("learned", None):
        raise CheckpointError(
            f"{source}: positional_embedding {hp['positional_embedding']!r} is not supported; "
            "NT uses 'learned' (v1) or null with use_rotary_embedding (v2)"
        )
    return hp


def _count(value: Any, key: str, source: str) -> int:
    """A positive whole number from a configuration file (JSON may spell it 512.0)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CheckpointError(f"{source}: {key} must be a positive whole number, not {value!r}")
    return value


def check_layer_count(params: Mapping[str, Any], hyperparams: Mapping[str, Any], source) -> None:
    """``num_layers`` must be the number of ``attention_layer_<i>`` blocks present (checked before
    :func:`parameter_shapes` makes a name for each)."""
    from embedcache.checkpoints.files import check_repeats

    found = {int(m.group(1)) for module in params if (m := _LAYER.match(module))}
    check_repeats(source, hyperparams, "num_layers", found, "attention_layer_")


def parameter_shapes(hyperparams: Mapping[str, Any], variant: str) -> dict[tuple[str, str], tuple[int, ...]]:
    """The parameters an NT model of this architecture has, with on-disk names.

    Parameters
    ----------
    hyperparams
        Architecture (defaults are filled in here).
    variant
        ``"v1"`` or ``"v2"``; fixes the embedding table's rows (``4**k + 9`` or ``4**k + 11``)
        unless the hyperparameters give ``alphabet_size``.

    Returns
    -------
    dict
        ``{(module_path, param_name): shape}``.
    """
    hp = normalize_hyperparams(hyperparams)
    d, heads, key_dim = int(hp["embed_dim"]), int(hp["attention_heads"]), int(hp["key_dim"])
    ffn = int(hp["ffn_embed_dim"])
    vocab = int(hp.get("alphabet_size", SPECIAL_ROWS[variant] + 4 ** int(hp["k_for_kmers"]) + 5))
    qkv = heads * key_dim
    # With GLU, fc1 produces both halves of the gated product.
    fc1_out = 2 * ffn if hp["use_glu_in_ffn"] else ffn

    shapes: dict[tuple[str, str], tuple[int, ...]] = {}

    def linear(module: str, n_in: int, n_out: int, bias: bool = True) -> None:
        shapes[(module, "w")] = (n_in, n_out)
        if bias:
            shapes[(module, "b")] = (n_out,)

    def layer_norm(module: str) -> None:
        shapes[(module, "scale")] = (d,)
        shapes[(module, "offset")] = (d,)

    shapes[(f"{PREFIX}/~/embed", "embeddings")] = (vocab, d)
    if hp["positional_embedding"] == "learned":
        rows = int(hp["max_positions"]) + PAD_TOKEN_ID + 1
        shapes[(f"{PREFIX}/~/esm_learned_positional_embeddings/~/embed", "embeddings")] = (rows, d)
    if hp["emb_layer_norm_before"]:
        layer_norm(f"{PREFIX}/~/emb_layer_norm_before")
    for i in range(int(hp["num_layers"])):
        block = f"{PREFIX}/attention_layer_{i}/~"
        for projection in ("query", "key", "value"):
            linear(f"{block}/mha/{projection}", d, qkv)
        linear(f"{block}/mha/mha_output", qkv, d)
        if hp["add_bias_kv"]:
            shapes[(f"{block}/mha", "bias_k")] = (1, 1, heads, key_dim)
            shapes[(f"{block}/mha", "bias_v")] = (1, 1, heads, key_dim)
        layer_norm(f"{block}/mha_layer_norm")
        layer_norm(f"{block}/final_layer_norm")
        linear(f"{block}/fc1", d, fc1_out, bias=hp["add_bias_ffn"])
        linear(f"{block}/fc2", ffn, d, bias=hp["add_bias_ffn"])
    head = f"{PREFIX}/~/esm_roberta_lm_head/~"
    layer_norm(f"{head}/emb_layer_norm_after")
    linear(f"{head}/lm_head_fc_1", d, d)
    layer_norm(f"{head}/lm_head_layer_norm")
    linear(f"{head}/lm_final_fc", d, vocab)
    return shapes


def infer_variant(params: Mapping[str, Mapping[str, Any]], hyperparams: Mapping[str, Any]) -> str:
    """v2 embeds 4**k + 11 tokens, v1 4**k + 9; the table says which, else the position scheme."""
    table = params.get(f"{PREFIX}/~/embed", {}).get("embeddings")
    if table is not None and table.ndim == 2:
        kmers = 4 ** int(hyperparams["k_for_kmers"])
        for variant, special in SPECIAL_ROWS.items():
            if table.shape[0] == kmers + special + 5:
                return variant
    return "v2" if hyperparams["use_rotary_embedding"] else "v1"


@dataclass(frozen=True)
class NTConfig:
    """Architecture of a Nucleotide Transformer, as read from ``hyperparams.json``.

    Build it with :meth:`from_hyperparams`; the field names follow the released
    hyperparameter files.
    """

    variant: str
    alphabet_size: int
    embed_dim: int
    attention_heads: int
    key_size: int
    ffn_embed_dim: int
    num_layers: int
    max_positions: int
    positional_embedding: str | None
    use_rotary_embedding: bool
    add_bias_kv: bool
    add_bias_ffn: bool
    use_glu_in_ffn: bool
    ffn_activation_name: str
    emb_layer_norm_before: bool
    embed_scale: float
    token_dropout: bool
    masking_ratio: float
    masking_prob: float
    k_for_kmers: int
    pad_token_id: int = 1
    mask_token_id: int = 2

    @classmethod
    def from_hyperparams(cls, hp: Mapping[str, Any], variant: str) -> "NTConfig":
        """Read a released ``hyperparams.json`` dict, filling the official defaults.

        Parameters
        ----------
        hp
            The hyperparameters (``embed_dim``, ``num_layers``, ...).
        variant
            ``"v1"`` or ``"v2"``: the vocabulary family, which fixes the alphabet size
            (``4**k + 9`` rows for v1, ``4**k + 11`` for v2).
        """
        if variant not in ("v1", "v2"):
            raise ValueError(f"variant must be 'v1' or 'v2', not {variant!r}")
        k = int(hp.get("k_for_kmers", 6))
        heads = int(hp["attention_heads"])
        embed_dim = int(hp["embed_dim"])
        key_size = hp.get("key_dim")
        if key_size is None:
            if embed_dim % heads:
                raise ValueError(f"embed_dim {embed_dim} is not divisible by {heads} heads")
            key_size = embed_dim // heads
        default_alphabet = 4**k + (11 if variant == "v2" else 9)
        return cls(
            variant=variant,
            alphabet_size=int(hp.get("alphabet_size", default_alphabet)),
            embed_dim=embed_dim,
            attention_heads=heads,
            key_size=int(key_size),
            ffn_embed_dim=int(hp["ffn_embed_dim"]),
            num_layers=int(hp["num_layers"]),
            max_positions=int(hp["max_positions"]),
            positional_embedding=hp.get("positional_embedding", "learned"),
            use_rotary_embedding=bool(hp.get("use_rotary_embedding", False)),
            add_bias_kv=bool(hp.get("add_bias_kv", False)),
            add_bias_ffn=bool(hp.get("add_bias_ffn", True)),
            use_glu_in_ffn=bool(hp.get("use_glu_in_ffn", False)),
            ffn_activation_name=str(hp.get("ffn_activation_name", "gelu-no-approx")),
            emb_layer_norm_before=bool(hp.get("emb_layer_norm_before", False)),
            embed_scale=float(hp.get("embed_scale", 1.0)),
            token_dropout=bool(hp.get("token_dropout", False)),
            masking_ratio=float(hp.get("masking_ratio", 0.1)),
            masking_prob=float(hp.get("masking_prob", 0.8)),
            k_for_kmers=k,
        )

    def to_dict(self) -> dict:
        """The configuration as a plain JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @property
    def max_tokens(self) -> int:
        """Longest token sequence (CLS included) the model accepts.

        Learned positional tables have ``max_positions + 2`` rows, the first two unused by
        real tokens; rotary models were trained on ``max_positions`` tokens too.
        """
        return self.max_positions

    def flops_per_token(self, n_tokens: int) -> float:
        """Multiply-add FLOPs (2 per MAC) of the encoder for one token of an
        ``n_tokens``-long sequence: projections, attention scores and the FFN.
        The LM head is excluded (embedding runs do not compute it)."""
        d, hk, f = self.embed_dim, self.attention_heads * self.key_size, self.ffn_embed_dim
        fc1 = 2 * f if self.use_glu_in_ffn else f
        per_layer = 2 * (3 * d * hk + hk * d + d * fc1 + f * d) + 2 * 2 * n_tokens * hk
        return float(per_layer * self.num_layers)
