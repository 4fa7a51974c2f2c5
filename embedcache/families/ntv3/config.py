"""Nucleotide Transformer v3 (NTv3): config, tokenizer, parameter layout (the forward: :mod:`.ntv3_forward`).

NTv3 reads one token per base and is a U-Net:

* token embedding (``token_embed_dim``) -> **stem** (convolution, kernel 15, GELU) to
  ``conv_init_embed_dim`` channels;
* a **downsampling tower** of ``num_downsamples`` blocks. Block ``i`` maps
  ``filters[i] -> filters[i + 1]`` channels, with ``filters = linspace(conv_init_embed_dim,
  embed_dim, num_downsamples + 1)`` truncated to ints: LN -> conv k5 -> GELU, then a
  residual (LN -> conv k1 -> GELU), then average pooling by 2. Each block's *input* is kept
  for a skip connection;
* a **transformer core** of ``num_layers`` pre-LN blocks with rotary attention (rotate-half,
  base 10000) and a bias-free SwiGLU feed-forward network, over one position per
  ``2**num_downsamples`` bases;
* an **upsampling tower** mirroring the first: LN -> upsampling conv k5 -> GELU (either a
  stride-2 transposed convolution or "repeat each position twice, then convolve"), a
  residual (LN -> 1x1 transposed conv -> GELU), then the matching skip added;
* ``final`` is the tower's output at base resolution, ``conv_init_embed_dim`` wide.

GELU in the convolutional parts is the tanh approximation (``jax.nn.gelu``'s default, as
the official model uses); convolution layer norms use eps 1e-5, the core's
``layer_norm_eps``.

Post-trained models condition on a species token: its embedding (``cond_tables.0``) drives,
through zero-initialised linear "modulation" layers, every layer norm
(``LN(x) * (1 + scale) + shift``), every residual convolution branch and every feed-forward
branch (``x + (1 + gate) * branch(x)``). The attention branch is not gated.

Parameters keep the names and (PyTorch) layouts of the hub's ``model.safetensors`` minus
the ``core.`` prefix, as a ``{module: {"weight"|"bias": array}}`` tree: linear weights
``[out, in]``, convolutions ``[out, in, K]`` (also the "repeat+conv" upsampling convs),
transposed convolutions ``[in, out, K]`` (the stride-2 "conv_transpose" upsampling convs and
the upsampling tower's 1x1 residual convs, which the official model builds as transposed).

Padding cannot be masked (it flows through the convolutions), so a sequence's outputs are
those of the sequence alone, right-padded with ``N`` to a multiple of ``2**num_downsamples``
(:meth:`NTv3Tokenizer.padded_length`); never ``<pad>``, which the models never saw.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from embedcache.errors import AlphabetError

__all__ = ["NTv3Config", "NTv3Tokenizer", "parameter_shapes", "check_request", "FINAL"]

FINAL = "final"
_UPSAMPLE_TYPES = ("conv_transpose", "repeat+conv")


@dataclass(frozen=True)
class NTv3Config:
    """Architecture of an NTv3 model, read from a hub ``config.json`` by :meth:`from_hub_config`."""

    alphabet_size: int
    num_downsamples: int
    token_embed_dim: int
    conv_init_embed_dim: int
    embed_dim: int
    num_layers: int
    attention_heads: int
    key_size: int
    ffn_embed_dim: int
    layer_norm_eps: float = 1e-5
    deconv_upsample_type: str = "conv_transpose"
    use_skip_connection: bool = True
    # Post-trained models only: species name -> condition token id.
    species_to_token_id: Mapping[str, int] = field(default_factory=dict)
    conditions_vocab_size: int = 0
    num_species_special_tokens: int = 6

    @classmethod
    def from_hub_config(cls, cfg: Mapping[str, Any]) -> "NTv3Config":
        """Read a hub ``config.json`` dict (the released field names, official defaults).

        Run options of the official code (layers to save, dtypes, remat) are ignored: they
        do not change the outputs at float32. The output of :meth:`to_dict` reads back.
        """
        heads = _count(cfg.get("attention_heads", cfg.get("num_attention_heads", 16)), "attention_heads")
        embed_dim = _count(cfg.get("embed_dim", cfg.get("hidden_size", 512)), "embed_dim")
        key_size = cfg.get("key_size")
        if key_size is None:
            if embed_dim % heads:
                raise ValueError(f"embed_dim {embed_dim} is not divisible by {heads} heads")
            key_size = embed_dim // heads
        upsample = str(cfg.get("deconv_upsample_type", "conv_transpose"))
        if upsample not in _UPSAMPLE_TYPES:
            raise ValueError(f"deconv_upsample_type {upsample!r} is not one of {_UPSAMPLE_TYPES}")
        vocab = cfg.get("conditions_vocab_size") or []
        vocab = [vocab] if isinstance(vocab, int) else list(vocab)  # to_dict() stores the int
        if len(vocab) > 1:
            raise ValueError(f"only one condition (species) is supported, the config has {len(vocab)}")
        return cls(
            alphabet_size=_count(cfg.get("alphabet_size", cfg.get("vocab_size", 11)), "alphabet_size"),
            num_downsamples=_count(cfg.get("num_downsamples", 8), "num_downsamples", lowest=0),
            token_embed_dim=_count(cfg.get("token_embed_dim", 16), "token_embed_dim"),
            conv_init_embed_dim=_count(cfg.get("conv_init_embed_dim", 512), "conv_init_embed_dim"),
            embed_dim=embed_dim,
            num_layers=_count(cfg.get("num_layers", cfg.get("num_hidden_layers", 12)), "num_layers"),
            attention_heads=heads,
            key_size=_count(key_size, "key_size"),
            ffn_embed_dim=_count(cfg.get("ffn_embed_dim", cfg.get("intermediate_size", 2048)), "ffn_embed_dim"),
            layer_norm_eps=float(cfg.get("layer_norm_eps", 1e-5)),
            deconv_upsample_type=upsample,
            use_skip_connection=bool(cfg.get("use_skip_connection", True)),
            species_to_token_id=dict(cfg.get("species_to_token_id") or {}) if vocab else {},
            conditions_vocab_size=int(vocab[0]) if vocab else 0,
            num_species_special_tokens=int(cfg.get("num_species_special_tokens", 6)),
        )

    def to_dict(self) -> dict:
        """The configuration as a plain JSON-serialisable dict."""
        d = dataclasses.asdict(self)
        d["species_to_token_id"] = dict(self.species_to_token_id)
        return d

    @property
    def filters(self) -> list[int]:
        """Channel widths from the stem's to the core's (the official ``filter_list``)."""
        return [int(v) for v in np.linspace(self.conv_init_embed_dim, self.embed_dim, self.num_downsamples + 1)]

    @property
    def block(self) -> int:
        """Bases per core position, ``2**num_downsamples``."""
        return 2**self.num_downsamples

    @property
    def conditioned(self) -> bool:
        """Whether the model is post-trained (species-conditioned)."""
        return self.conditions_vocab_size > 0

    @property
    def species(self) -> list[str]:
        """Supported species names, sorted (special tokens excluded), as the official model lists them."""
        return sorted(s for s, i in self.species_to_token_id.items()
                      if not s.startswith("<") and i >= self.num_species_special_tokens)

    def species_token(self, name: str | None) -> int | None:
        """The condition token of species ``name``; ``None`` for pre-trained models.

        Raises :class:`ValueError` listing the supported species when the model needs one
        and ``name`` is missing or unknown, or when a pre-trained model is given one.
        """
        if not self.conditioned:
            if name is not None:
                raise ValueError(f"species {name!r} was given, but this NTv3 model is not species-conditioned")
            return None
        if name is None or name not in self.species:
            what = "needs a species" if name is None else f"does not know species {name!r}"
            raise ValueError(f"this post-trained NTv3 model {what}; choose one of: {', '.join(self.species)}")
        return int(self.species_to_token_id[name])


class NTv3Tokenizer:
    """One token per base: ``A`` 6, ``T`` 7, ``C`` 8, ``G`` 9, ``N`` 10; no CLS, BOS or EOS.

    Input must be normalized by :func:`embedcache.sequences.alphabet.normalize` (upper case, ACGTN).
    Unlike the official tokenizer, which silently turns lower case and IUPAC codes into
    ``<unk>``, soft-masked regions therefore embed as their bases, and any other character
    raises :class:`~embedcache.errors.AlphabetError` instead of becoming ``<unk>``.
    """

    vocabulary = ("<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>", "A", "T", "C", "G", "N")
    pad_id = 10  # padding is N, the token the models saw for unknown bases
    _LUT = np.full(256, 255, dtype=np.uint8)
    for _i, _c in enumerate("ATCGN"):
        _LUT[ord(_c)] = 6 + _i

    def __init__(self, num_downsamples: int):
        self.num_downsamples = int(num_downsamples)

    def encode(self, seq: str) -> np.ndarray:
        """Token ids (int32) of one normalized sequence, unpadded."""
        ids = self._LUT[np.frombuffer(seq.encode("latin-1", "replace"), dtype=np.uint8)]
        bad = np.flatnonzero(ids == 255)
        if bad.size:
            raise AlphabetError(
                f"position {bad[0] + 1} holds {seq[bad[0]]!r}: NTv3 takes normalized A, C, G, T, N "
                "(pass sequences through embedcache.sequences.alphabet.normalize)"
            )
        return ids.astype(np.int32)

    def count_tokens(self, seq: str) -> int:
        """Tokens of a sequence before padding: its length."""
        return len(seq)

    def padded_length(self, n_tokens: int) -> int:
        """Smallest positive multiple of ``2**num_downsamples`` holding ``n_tokens``."""
        block = 2**self.num_downsamples
        return max(block, -(-n_tokens // block) * block)

    def encode_padded(self, seq: str) -> np.ndarray:
        """Token ids right-padded with ``N`` to :meth:`padded_length`."""
        ids = self.encode(seq)
        out = np.full(self.padded_length(len(ids)), self.pad_id, dtype=np.int32)
        out[: len(ids)] = ids
        return out


# ---- parameter layout ---------------------------------------------------------------------


def _count(value: Any, key: str, lowest: int = 1) -> int:
    """A whole number of at least ``lowest`` from a configuration file (JSON may spell it 512.0)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        raise ValueError(f"{key} must be a whole number >= {lowest}, not {value!r}")
    return value


def _ln_shapes(module: str, dim: int, cfg: NTv3Config, out: dict) -> None:
    out[(module, "weight")] = (dim,)
    out[(module, "bias")] = (dim,)
    if cfg.conditioned:
        out[(f"{module}.modulation_layers.0", "weight")] = (2 * dim, cfg.token_embed_dim)
        out[(f"{module}.modulation_layers.0", "bias")] = (2 * dim,)


def _gate_shapes(module: str, dim: int, cfg: NTv3Config, out: dict) -> None:
    if cfg.conditioned:
        out[(f"{module}.modulation_layers.0", "weight")] = (dim, cfg.token_embed_dim)
        out[(f"{module}.modulation_layers.0", "bias")] = (dim,)


def _tower_shapes(prefix: str, pairs, up: bool, cfg: NTv3Config, out: dict) -> None:
    for i, (d_in, d_out) in enumerate(pairs):
        b = f"{prefix}.{i}"
        # Upsampling and 1x1 residual convs of the up tower are transposed convs: [in, out, K].
        main = (d_in, d_out, 5) if up and cfg.deconv_upsample_type == "conv_transpose" else (d_out, d_in, 5)
        out[(f"{b}.conv.conv", "weight")] = main
        out[(f"{b}.conv.conv", "bias")] = (d_out,)
        _ln_shapes(f"{b}.conv.layer_norm", d_in, cfg, out)
        out[(f"{b}.res_conv.conv_block.conv", "weight")] = (d_out, d_out, 1)
        out[(f"{b}.res_conv.conv_block.conv", "bias")] = (d_out,)
        _ln_shapes(f"{b}.res_conv.conv_block.layer_norm", d_out, cfg, out)
        _gate_shapes(f"{b}.res_conv", d_out, cfg, out)


def parameter_shapes(cfg: NTv3Config) -> dict[tuple[str, str], tuple[int, ...]]:
    """``{(module, "weight"|"bias"): shape}`` of every parameter the forward reads."""
    out: dict[tuple[str, str], tuple[int, ...]] = {}
    f = cfg.filters
    out[("embed_layer", "weight")] = (cfg.alphabet_size, cfg.token_embed_dim)
    out[("stem.conv", "weight")] = (f[0], cfg.token_embed_dim, 15)
    out[("stem.conv", "bias")] = (f[0],)
    _tower_shapes("conv_tower_blocks", list(zip(f[:-1], f[1:])), False, cfg, out)
    rf = f[::-1]
    _tower_shapes("deconv_tower_blocks", list(zip(rf[:-1], rf[1:])), True, cfg, out)
    d, hk = cfg.embed_dim, cfg.attention_heads * cfg.key_size
    for i in range(cfg.num_layers):
        b = f"transformer_blocks.{i}"
        _ln_shapes(f"{b}.self_attention_layer_norm", d, cfg, out)
        _ln_shapes(f"{b}.final_layer_norm", d, cfg, out)
        _gate_shapes(b, d, cfg, out)
        for head in ("query_head", "key_head", "value_head"):
            out[(f"{b}.sa_layer.{head}.linear", "weight")] = (hk, d)
            out[(f"{b}.sa_layer.{head}.linear", "bias")] = (hk,)
        out[(f"{b}.sa_layer.mha_output", "weight")] = (d, hk)
        out[(f"{b}.sa_layer.mha_output", "bias")] = (d,)
        out[(f"{b}.fc1", "weight")] = (2 * cfg.ffn_embed_dim, d)
        out[(f"{b}.fc2", "weight")] = (d, cfg.ffn_embed_dim)
    if cfg.conditioned:
        out[("cond_tables.0", "weight")] = (cfg.conditions_vocab_size, cfg.token_embed_dim)
    return out


def check_request(cfg: NTv3Config, layers: Sequence[int | str], attention: Sequence[tuple[int, int]]) -> None:
    """Raise :class:`ValueError` for layers or (layer, head) pairs the model does not have."""
    for layer in layers:
        if layer != FINAL and not (isinstance(layer, (int, np.integer)) and 1 <= layer <= cfg.num_layers):
            raise ValueError(f"layer {layer!r} is out of range: NTv3 has layers 1..{cfg.num_layers} and 'final'")
    for layer, head in attention:
        if not (1 <= layer <= cfg.num_layers and 1 <= head <= cfg.attention_heads):
            raise ValueError(
                f"attention map ({layer}, {head}): NTv3 has layers 1..{cfg.num_layers} and "
                f"heads 1..{cfg.attention_heads} per layer"
            )
