"""The NTv3 forward pass in plain JAX (architecture and layout: :mod:`embedcache.families.ntv3.config`)."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from embedcache.families.ntv3.config import FINAL, NTv3Config, check_request, parameter_shapes

__all__ = ["forward", "prepare_params"]

_CONV_LN_EPS = 1e-5
_ROTARY_BASE = 10000.0


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
    """NTv3, a :class:`~embedcache.families.base.Forward` (parameters and outputs as
    declared there) on ``(B, P)`` token ids, ``P`` a multiple of ``2**num_downsamples``.

    ``params`` is the tree of :func:`prepare_params`; each row of ``tokens`` is right-padded
    with ``N`` (:meth:`NTv3Tokenizer.encode_padded`), which is not masked. ``layers``: core
    layers 1..num_layers, ``(B, P / 2**num_downsamples, embed_dim)``, and/or ``"final"``,
    ``(B, P, conv_init_embed_dim)`` under ``out["final"]``; attention maps are the core's,
    ``(B, T, T)``; logits come from the pre-training head, ``(B, P, alphabet_size)``.
    ``species``: ``(B,)`` condition token ids, required by post-trained models and refused
    otherwise (NTv3's own input).
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

    # "final" sits beside the int-keyed layers: mixed keys would not make a JAX pytree.
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
            out[FINAL] = x.astype(jnp.float32)
        if logits:
            out["logits"] = _linear(jax.nn.gelu(x), params["lm_head.head"], precision).astype(jnp.float32)
    return out
