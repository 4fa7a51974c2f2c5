"""An independent float64 NumPy reading of the NT semantics in tests/golden/README.md.

Used to check architectures the golden file does not cover (v1, the full 50M v2 shape).
It processes one unpadded sequence at a time, loops over heads, and shares no code with
embedcache.families.nt.forward, so a mistake would have to be made twice to go unnoticed.
"""

from __future__ import annotations

from math import erf, sqrt

import numpy as np

P = "esm_transformer"
_erf = np.vectorize(erf)


def _ln(x, p):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * p["scale"] + p["offset"]


def _lin(x, p):
    y = x @ p["w"].astype(np.float64)
    return y + p["b"] if "b" in p else y


def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x / sqrt(2.0)))


def _act(name, x):
    if name == "swish":
        return x / (1.0 + np.exp(-x))
    assert name == "gelu-no-approx", name
    return _gelu(x)


def _rope(x):
    # x: (T, K); rotate-half with inv_freq 10000^(-2j/K), positions 0..T-1
    t, k = x.shape
    out = np.empty_like(x)
    half = k // 2
    for pos in range(t):
        for j in range(half):
            theta = pos * 10000.0 ** (-2.0 * j / k)
            c, s = np.cos(theta), np.sin(theta)
            a, b = x[pos, j], x[pos, j + half]
            out[pos, j] = a * c - b * s
            out[pos, j + half] = b * c + a * s
    return out


def run(params, hp, tokens, mask_id=2):
    """Per-layer outputs (1-based dict) and attention probs [layer][head] for one sequence."""
    pr = {m: {n: np.asarray(v, np.float64) for n, v in d.items()} for m, d in params.items()}
    tokens = np.asarray(tokens)
    t = len(tokens)
    d = hp["embed_dim"]
    h = hp["attention_heads"]
    k = d // h
    x = pr[f"{P}/~/embed"]["embeddings"][tokens]
    if hp.get("token_dropout", False):
        x = np.where((tokens == mask_id)[:, None], 0.0, x)
        observed = (tokens == mask_id).sum() / t
        x = x * (1 - hp["masking_ratio"] * hp["masking_prob"]) / (1 - observed)
    x = x * hp.get("embed_scale", 1.0)
    rotary = hp.get("use_rotary_embedding", False)
    if hp.get("positional_embedding", "learned") == "learned":
        x = x + pr[f"{P}/~/esm_learned_positional_embeddings/~/embed"]["embeddings"][np.arange(t) + 2]
    outs, maps = {}, {}
    n_layers = hp["num_layers"]
    for i in range(n_layers):
        base = f"{P}/attention_layer_{i}/~"
        y = _ln(x, pr[f"{base}/mha_layer_norm"])
        q = _lin(y, pr[f"{base}/mha/query"])
        kk = _lin(y, pr[f"{base}/mha/key"])
        v = _lin(y, pr[f"{base}/mha/value"])
        heads_out = []
        maps[i + 1] = {}
        for hh in range(h):
            qh, kh, vh = q[:, hh * k:(hh + 1) * k], kk[:, hh * k:(hh + 1) * k], v[:, hh * k:(hh + 1) * k]
            if rotary:
                qh, kh = _rope(qh), _rope(kh)
            s = qh @ kh.T / np.sqrt(k)
            s = np.exp(s - s.max(-1, keepdims=True))
            a = s / s.sum(-1, keepdims=True)
            maps[i + 1][hh + 1] = a
            heads_out.append(a @ vh)
        x = x + _lin(np.concatenate(heads_out, -1), pr[f"{base}/mha/mha_output"])
        y = _lin(_ln(x, pr[f"{base}/final_layer_norm"]), pr[f"{base}/fc1"])
        if hp.get("use_glu_in_ffn", False):
            half = y.shape[-1] // 2
            y = _act(hp.get("ffn_activation_name", "gelu-no-approx"), y[:, :half]) * y[:, half:]
        else:
            y = _act(hp.get("ffn_activation_name", "gelu-no-approx"), y)
        x = x + _lin(y, pr[f"{base}/fc2"])
        outs[i + 1] = x
    outs[n_layers] = _ln(x, pr[f"{P}/~/esm_roberta_lm_head/~/emb_layer_norm_after"])
    return outs, maps
