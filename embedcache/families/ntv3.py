"""Nucleotide Transformer v3 (NTv3) in plain JAX: config, tokenizer, parameter layout, forward.

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
``[out, in]``, convolutions ``[out, in, K]``, transposed convolutions (the upsampling
convs and the upsampling tower's 1x1 residual convs) ``[in, out, K]``.

Padding cannot be masked (it flows through the convolutions), so a sequence's outputs are
those of the sequence alone, right-padded with ``N`` to a multiple of ``2**num_downsamples``
(:meth:`NTv3Tokenizer.padded_length`); never ``<pad>``, which the models never saw.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from embedcache.errors import AlphabetError

__all__ = ["NTv3Config", "NTv3Tokenizer", "forward", "parameter_shapes", "prepare_params", "FINAL"]

FINAL = "final"
_CONV_LN_EPS = 1e-5
_ROTARY_BASE = 10000.0
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
        """Read a hub ``config.json`` dict (the released field names, official defaults)."""
        heads = int(cfg.get("attention_heads", cfg.get("num_attention_heads", 16)))
        embed_dim = int(cfg.get("embed_dim", cfg.get("hidden_size", 512)))
        key_size = cfg.get("key_size")
        if key_size is None:
            if embed_dim % heads:
                raise ValueError(f"embed_dim {embed_dim} is not divisible by {heads} heads")
            key_size = embed_dim // heads
        upsample = str(cfg.get("deconv_upsample_type", "conv_transpose"))
        if upsample not in _UPSAMPLE_TYPES:
            raise ValueError(f"deconv_upsample_type {upsample!r} is not one of {_UPSAMPLE_TYPES}")
        vocab = cfg.get("conditions_vocab_size") or []
        if len(vocab) > 1:
            raise ValueError(f"only one condition (species) is supported, the config has {len(vocab)}")
        return cls(
            alphabet_size=int(cfg.get("alphabet_size", cfg.get("vocab_size", 11))),
            num_downsamples=int(cfg.get("num_downsamples", 8)),
            token_embed_dim=int(cfg.get("token_embed_dim", 16)),
            conv_init_embed_dim=int(cfg.get("conv_init_embed_dim", 512)),
            embed_dim=embed_dim,
            num_layers=int(cfg.get("num_layers", cfg.get("num_hidden_layers", 12))),
            attention_heads=heads,
            key_size=int(key_size),
            ffn_embed_dim=int(cfg.get("ffn_embed_dim", cfg.get("intermediate_size", 2048))),
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

    Input must be normalized by :func:`embedcache.alphabet.normalize` (upper case, ACGTN).
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
                "(pass sequences through embedcache.alphabet.normalize)"
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


def prepare_params(params: Mapping[str, Mapping[str, Any]], cfg: NTv3Config, dtype: Any = jnp.float32) -> dict:
    """Device copy of the parameters the forward reads, cast to ``dtype`` (layer norms stay f32)."""
    out: dict = {}
    for module, pname in parameter_shapes(cfg):
        keep_f32 = "layer_norm" in module
        out.setdefault(module, {})[pname] = jnp.asarray(
            np.asarray(params[module][pname]), dtype=jnp.float32 if keep_f32 else dtype
        )
    if "lm_head.head" in params:
        out["lm_head.head"] = {k: jnp.asarray(np.asarray(v), dtype) for k, v in params["lm_head.head"].items()}
    return out


# ---- forward ------------------------------------------------------------------------------


def _linear(x, p, precision):
    y = jnp.matmul(x, p["weight"].astype(x.dtype).T, precision=precision)
    return y + p["bias"].astype(x.dtype) if "bias" in p else y


def _conv(x, w_torch, b, precision):
    """'SAME' 1-D convolution of (B, L, C) by a PyTorch-layout [out, in, K] kernel."""
    k = jnp.transpose(w_torch.astype(x.dtype), (2, 1, 0))  # -> (K, in, out)
    y = jax.lax.conv_general_dilated(x, k, (1,), "SAME", dimension_numbers=("NWC", "WIO", "NWC"),
                                     precision=precision)
    return y + b.astype(x.dtype)


def _conv_transpose(x, w_torch, b, stride, precision):
    """Transposed 1-D convolution of (B, L, C) by a PyTorch-layout [in, out, K] kernel.

    The official layer calls ``lax.conv_transpose`` with 'SAME' padding and does not flip
    the kernel; we do the same, so stride 2 maps L -> 2L exactly as it does.
    """
    k = jnp.transpose(w_torch.astype(x.dtype), (2, 1, 0))  # -> (K, out, in)
    y = jax.lax.conv_transpose(x, k, (stride,), "SAME", dimension_numbers=("NWC", "WOI", "NWC"),
                               precision=precision)
    return y + b.astype(x.dtype)


def _modulation(cond, params, module):
    return None if cond is None else _linear(cond, params[f"{module}.modulation_layers.0"], None)[:, None, :]


def _layer_norm(x, params, module, eps, cond):
    # Statistics in float32 whatever the compute dtype.
    p = params[module]
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    y = (x32 - mean) * jax.lax.rsqrt(var + eps) * p["weight"] + p["bias"]
    mod = _modulation(cond, params, module)
    if mod is not None:
        shift, scale = jnp.split(mod.astype(jnp.float32), 2, axis=-1)
        y = y * (1.0 + scale) + shift
    return y.astype(x.dtype)


def _gated(x, branch, params, module, cond):
    gate = _modulation(cond, params, module)
    return x + branch if gate is None else x + (1.0 + gate.astype(x.dtype)) * branch


def _conv_block(x, params, b, cfg, cond, up, precision):
    y = _layer_norm(x, params, f"{b}.conv.layer_norm", _CONV_LN_EPS, cond)
    p = params[f"{b}.conv.conv"]
    if not up:
        y = _conv(y, p["weight"], p["bias"], precision)
    elif cfg.deconv_upsample_type == "conv_transpose":
        y = _conv_transpose(y, p["weight"], p["bias"], 2, precision)
    else:
        y = _conv(jnp.repeat(y, 2, axis=1), p["weight"], p["bias"], precision)
    y = jax.nn.gelu(y)
    r = _layer_norm(y, params, f"{b}.res_conv.conv_block.layer_norm", _CONV_LN_EPS, cond)
    p = params[f"{b}.res_conv.conv_block.conv"]
    r = _conv_transpose(r, p["weight"], p["bias"], 1, precision) if up else _conv(r, p["weight"], p["bias"], precision)
    return _gated(y, jax.nn.gelu(r), params, f"{b}.res_conv", cond)


def _rotary(x):
    """Rotate-half rotary embedding over (B, T, H, K) heads; positions 0..T-1."""
    t, k = x.shape[1], x.shape[-1]
    inv_freq = 1.0 / (_ROTARY_BASE ** (np.arange(0, k, 2, dtype=np.float64) / k))
    angles = np.arange(t, dtype=np.float64)[:, None] * inv_freq[None, :]
    cos = jnp.asarray(np.cos(angles), x.dtype)[None, :, None, :]
    sin = jnp.asarray(np.sin(angles), x.dtype)[None, :, None, :]
    x1, x2 = x[..., : k // 2], x[..., k // 2:]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def _transformer_block(x, params, b, cfg, cond, precision):
    bsz, t, _ = x.shape
    h, k = cfg.attention_heads, cfg.key_size
    y = _layer_norm(x, params, f"{b}.self_attention_layer_norm", cfg.layer_norm_eps, cond)
    q, kk, v = (_linear(y, params[f"{b}.sa_layer.{n}_head.linear"], precision).reshape(bsz, t, h, k)
                for n in ("query", "key", "value"))
    q, kk = _rotary(q), _rotary(kk)
    logits = jnp.einsum("bthd,bThd->bhtT", q, kk, precision=precision).astype(jnp.float32) / math.sqrt(k)
    probs = jax.nn.softmax(logits, axis=-1)
    att = jnp.einsum("bhtT,bThd->bthd", probs.astype(x.dtype), v, precision=precision)
    x = x + _linear(att.reshape(bsz, t, h * k), params[f"{b}.sa_layer.mha_output"], precision)
    y = _layer_norm(x, params, f"{b}.final_layer_norm", cfg.layer_norm_eps, cond)
    y1, y2 = jnp.split(_linear(y, params[f"{b}.fc1"], precision), 2, axis=-1)
    y = _linear(jax.nn.swish(y1) * y2, params[f"{b}.fc2"], precision)
    return _gated(x, y, params, b, cond), probs


def forward(
    params: Mapping[str, Mapping[str, jax.Array]],
    tokens: jax.Array,
    *,
    config: NTv3Config,
    layers: Sequence[int | str] = (),
    attention: Sequence[tuple[int, int]] = (),
    species: jax.Array | None = None,
    logits: bool = False,
    dtype: Any = jnp.float32,
) -> dict:
    """Run NTv3 on a (B, P) batch of token ids, P a multiple of ``2**num_downsamples``.

    Parameters
    ----------
    params
        The tree of :func:`prepare_params`.
    tokens
        Token ids, each row right-padded with ``N`` (:meth:`NTv3Tokenizer.encode_padded`).
    config
        The architecture.
    layers
        Core layers 1..num_layers (outputs (B, P / 2**num_downsamples, embed_dim)) and/or
        ``"final"`` (B, P, conv_init_embed_dim).
    attention
        ``(layer, head)`` pairs, both 1-based: core attention probabilities (B, T, T).
    species
        (B,) condition token ids; required by post-trained models, refused otherwise.
    logits
        Also return the LM head's logits (B, P, alphabet_size) (pre-training head).
    dtype
        Compute dtype; outputs are float32.
    """
    cfg = config
    check_request(cfg, layers, attention)
    tokens = jnp.asarray(tokens)
    if tokens.shape[1] % cfg.block:
        raise ValueError(f"token length {tokens.shape[1]} is not a multiple of {cfg.block}")
    if cfg.conditioned != (species is not None):
        raise ValueError("post-trained NTv3 models need species tokens; pre-trained ones take none")
    precision = jax.lax.Precision.HIGHEST if jnp.dtype(dtype) == jnp.float32 else None
    cond = None if species is None else params["cond_tables.0"]["weight"][jnp.asarray(species)].astype(dtype)

    x = params["embed_layer"]["weight"][tokens].astype(dtype)
    p = params["stem.conv"]
    x = jax.nn.gelu(_conv(x, p["weight"], p["bias"], precision))
    skips = []
    for i in range(cfg.num_downsamples):
        skips.append(x)
        x = _conv_block(x, params, f"conv_tower_blocks.{i}", cfg, cond, False, precision)
        x = 0.5 * (x[:, 0::2] + x[:, 1::2])  # average pooling by 2 (lengths are even)

    out: dict = {"embeddings": {}, "attention": {}}
    want = set(layers)
    for i in range(cfg.num_layers):
        x, probs = _transformer_block(x, params, f"transformer_blocks.{i}", cfg, cond, precision)
        for layer, head in attention:
            if layer == i + 1:
                out["attention"][(layer, head)] = probs[:, head - 1]
        if i + 1 in want:
            out["embeddings"][i + 1] = x.astype(jnp.float32)
    if FINAL in want or logits:
        for i in range(cfg.num_downsamples):
            x = _conv_block(x, params, f"deconv_tower_blocks.{i}", cfg, cond, True, precision)
            if cfg.use_skip_connection:
                x = x + skips[-1 - i]
        if FINAL in want:
            out["embeddings"][FINAL] = x.astype(jnp.float32)
        if logits:
            out["logits"] = _linear(jax.nn.gelu(x), params["lm_head.head"], precision).astype(jnp.float32)
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
