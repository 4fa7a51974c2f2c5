"""The Nucleotide Transformer forward pass in plain JAX.

Both released families are covered by one function, :func:`forward`:

* **v1** (``500M_human_ref``, ``500M_1000G``, ``2B5_*``): learned positional embeddings
  (ESM style: the real token at position ``t`` reads row ``t + 2``), exact-erf GELU,
  biases in the feed-forward network, and token-dropout scaling applied at inference
  (embeddings x ``(1 - masking_ratio * masking_prob) / (1 - observed mask ratio)``).
* **v2** (``*_multi_species_v2``): rotary embeddings (rotate-half, base 10000) on
  queries and keys, SwiGLU feed-forward network without biases.

Blocks are pre-LayerNorm (``x += MHA(LN(x)); x += FFN(LN(x))``) with eps 1e-5. Layers are
numbered 1..``num_layers`` as in the official output keys; the output of layer
``num_layers`` is taken after the LM head's first LayerNorm (``emb_layer_norm_after``),
as the official model does, while layers below it are the residual stream after their
block. Attention maps are addressed as ``(layer, head)``, both 1-based and meaning
exactly that head. (The official ``attention_map_layer_L_number_N`` key holds 0-based
head ``min(N + 1, heads - 1)``, i.e. our head ``min(N + 2, heads)``.)

Parameters are the flat checkpoint tree with the on-disk names of the released
checkpoints (``esm_transformer/attention_layer_0/~/mha/query`` ...), so an official
checkpoint is used as it is, without conversion.

Padding never changes the outputs at real positions: padded keys are masked out of every
softmax, rotary positions count from the start of each row, and learned positions are
computed from the non-pad tokens only.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from embedcache.families.nt.config import PREFIX, NTConfig

__all__ = ["forward", "prepare_params"]

_LAYER_NORM_EPS = 1e-5
_ROTARY_BASE = 10000.0

Params = Mapping[str, Mapping[str, Any]]


def prepare_params(params: Params, dtype: Any = jnp.float32) -> dict:
    """Device copy of a flat checkpoint tree, cast to ``dtype`` (layer-norm params stay f32)."""
    out = {}
    for module, leaves in params.items():
        keep_f32 = "layer_norm" in module.rsplit("/", 1)[-1]
        out[module] = {
            name: jnp.asarray(np.asarray(value), dtype=jnp.float32 if keep_f32 else dtype)
            for name, value in leaves.items()
        }
    return out


def _layer_norm(x: jax.Array, p: Mapping[str, jax.Array]) -> jax.Array:
    # Statistics in float32 whatever the compute dtype: bfloat16 variances are too coarse.
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    y = (x32 - mean) * jax.lax.rsqrt(var + _LAYER_NORM_EPS) * p["scale"] + p["offset"]
    return y.astype(x.dtype)


def _linear(x: jax.Array, p: Mapping[str, jax.Array], precision) -> jax.Array:
    y = jnp.matmul(x, p["w"].astype(x.dtype), precision=precision)
    if "b" in p:
        y = y + p["b"].astype(x.dtype)
    return y


def _activation(name: str, x: jax.Array) -> jax.Array:
    if name == "gelu-no-approx":
        return jax.nn.gelu(x, approximate=False)
    if name == "gelu":
        return jax.nn.gelu(x, approximate=True)
    if name == "swish":
        return jax.nn.swish(x)
    if name == "relu":
        return jax.nn.relu(x)
    raise ValueError(f"unsupported ffn_activation_name {name!r}")


def _rotary(x: jax.Array, key_size: int) -> jax.Array:
    """Rotate-half rotary embedding over (B, T, H, K) heads; positions 0..T-1."""
    t = x.shape[1]
    inv_freq = 1.0 / (_ROTARY_BASE ** (np.arange(0, key_size, 2, dtype=np.float64) / key_size))
    angles = np.arange(t, dtype=np.float64)[:, None] * inv_freq[None, :]
    angles = np.concatenate([angles, angles], axis=-1)
    # Tables built in float64 on the host: exact, and constant-folded into the program.
    cos = jnp.asarray(np.cos(angles), dtype=x.dtype)[None, :, None, :]
    sin = jnp.asarray(np.sin(angles), dtype=x.dtype)[None, :, None, :]
    half = key_size // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


def _embed(params: Params, tokens: jax.Array, cfg: NTConfig, dtype) -> jax.Array:
    x = params[f"{PREFIX}/~/embed"]["embeddings"][tokens].astype(dtype)
    if cfg.token_dropout:
        # Inference-time rescaling of the official model: masked tokens are zeroed and the
        # rest scaled by (1 - train mask ratio) / (1 - observed mask ratio).
        is_mask = tokens == cfg.mask_token_id
        x = jnp.where(is_mask[..., None], 0.0, x)
        n_real = jnp.sum(tokens != cfg.pad_token_id, axis=-1)
        observed = jnp.sum(is_mask, axis=-1) / jnp.maximum(n_real, 1)
        scale = (1.0 - cfg.masking_ratio * cfg.masking_prob) / (1.0 - observed)
        x = x * scale[:, None, None].astype(dtype)
    x = cfg.embed_scale * x
    if cfg.positional_embedding == "learned":
        real = tokens != cfg.pad_token_id
        positions = jnp.cumsum(real, axis=1) * real + cfg.pad_token_id
        table = params[f"{PREFIX}/~/esm_learned_positional_embeddings/~/embed"]["embeddings"]
        x = x + table[positions].astype(dtype)
    if cfg.emb_layer_norm_before:
        x = _layer_norm(x, params[f"{PREFIX}/~/emb_layer_norm_before"])
    return x


def _attention(x, p_mha, key_mask, cfg: NTConfig, precision):
    """Multi-head self-attention; returns (output, probabilities (B, H, T, T'))."""
    b, t, _ = x.shape
    h, k = cfg.attention_heads, cfg.key_size
    q = _linear(x, p_mha["query"], precision).reshape(b, t, h, k)
    kk = _linear(x, p_mha["key"], precision).reshape(b, t, h, k)
    v = _linear(x, p_mha["value"], precision).reshape(b, t, h, k)
    if cfg.use_rotary_embedding:
        q, kk = _rotary(q, k), _rotary(kk, k)
    if cfg.add_bias_kv:
        # ESM's extra learned key/value slot, always attendable.
        kk = jnp.concatenate([kk, jnp.broadcast_to(p_mha["bias_k"].astype(x.dtype), (b, 1, h, k))], axis=1)
        v = jnp.concatenate([v, jnp.broadcast_to(p_mha["bias_v"].astype(x.dtype), (b, 1, h, k))], axis=1)
        key_mask = jnp.concatenate([key_mask, jnp.ones((b, 1), bool)], axis=1)
    logits = jnp.einsum("bthd,bThd->bhtT", q, kk, precision=precision).astype(jnp.float32)
    logits = logits / math.sqrt(k)
    logits = jnp.where(key_mask[:, None, None, :], logits, -1e30)
    probs = jax.nn.softmax(logits, axis=-1)
    out = jnp.einsum("bhtT,bThd->bthd", probs.astype(x.dtype), v, precision=precision)
    out = _linear(out.reshape(b, t, h * k), p_mha["mha_output"], precision)
    return out, probs


def _ffn(x, p_layer, cfg: NTConfig, precision):
    y = _linear(x, p_layer["fc1"], precision)
    if cfg.use_glu_in_ffn:
        y1, y2 = jnp.split(y, 2, axis=-1)
        y = _activation(cfg.ffn_activation_name, y1) * y2
    else:
        y = _activation(cfg.ffn_activation_name, y)
    return _linear(y, p_layer["fc2"], precision)


def _layer_params(params: Params, i: int) -> dict:
    base = f"{PREFIX}/attention_layer_{i}/~"
    mha = {name: params[f"{base}/mha/{name}"] for name in ("query", "key", "value", "mha_output")}
    if f"{base}/mha" in params:  # bias_k / bias_v live on the mha module itself
        mha.update(params[f"{base}/mha"])
    return {
        "mha": mha,
        "mha_layer_norm": params[f"{base}/mha_layer_norm"],
        "final_layer_norm": params[f"{base}/final_layer_norm"],
        "fc1": params[f"{base}/fc1"],
        "fc2": params[f"{base}/fc2"],
    }


def forward(
    params: Params,
    tokens: jax.Array,
    *,
    config: NTConfig,
    layers: Sequence[int] = (),
    attention: Sequence[tuple[int, int]] = (),
    logits: bool = False,
    dtype: Any = jnp.float32,
) -> dict:
    """The v1/v2 encoder, a :class:`~embedcache.families.base.Forward` (parameters and
    outputs as declared there).

    ``params`` is the flat checkpoint tree with on-disk module names (:func:`prepare_params`);
    ``tokens`` start with ``<cls>`` and are padded at the end with ``pad_token_id``, whose
    keys are masked. Embeddings are ``(B, T, D)`` for layers 1..num_layers (the last after
    the final layer norm); attention maps ``(B, T, T)``.
    """
    cfg = config
    # float32 matmuls at full precision: accelerators otherwise default to TF32-like modes.
    precision = jax.lax.Precision.HIGHEST if jnp.dtype(dtype) == jnp.float32 else None
    tokens = jnp.asarray(tokens)
    key_mask = tokens != cfg.pad_token_id
    want_layers = set(layers)
    heads_by_layer: dict[int, list[int]] = {}
    for layer, head in attention:
        heads_by_layer.setdefault(layer, []).append(head)

    out: dict = {"embeddings": {}, "attention": {}}
    x = _embed(params, tokens, cfg, dtype)
    # Layers past the deepest one asked for are not run (the LM head needs them all).
    depth = cfg.num_layers if logits else max([*want_layers, *heads_by_layer], default=0)
    for i in range(depth):
        p = _layer_params(params, i)
        attn_out, probs = _attention(_layer_norm(x, p["mha_layer_norm"]), p["mha"], key_mask, cfg, precision)
        x = x + attn_out
        x = x + _ffn(_layer_norm(x, p["final_layer_norm"]), p, cfg, precision)
        layer = i + 1
        for head in heads_by_layer.get(layer, ()):
            out["attention"][(layer, head)] = probs[:, head - 1, :, : tokens.shape[1]]
        if layer in want_layers and layer < cfg.num_layers:
            out["embeddings"][layer] = x.astype(jnp.float32)

    head_p = f"{PREFIX}/~/esm_roberta_lm_head/~"
    if cfg.num_layers in want_layers or logits:
        final = _layer_norm(x, params[f"{head_p}/emb_layer_norm_after"])
        if cfg.num_layers in want_layers:
            out["embeddings"][cfg.num_layers] = final.astype(jnp.float32)
        if logits:
            y = jax.nn.gelu(_linear(final, params[f"{head_p}/lm_head_fc_1"], precision), approximate=False)
            y = _layer_norm(y, params[f"{head_p}/lm_head_layer_norm"])
            out["logits"] = _linear(y, params[f"{head_p}/lm_final_fc"], precision).astype(jnp.float32)
    return out

