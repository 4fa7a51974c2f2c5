"""The on-disk layouts of NT v1/v2 checkpoints, each read into one :class:`~embedcache.checkpoints.Checkpoint`.

* **official JAX**: ``jax_model/hyperparams.json`` + ``jax_model/pytree_ckpt.joblib``
  (read by the restricted unpickler), or ``jax_model/params.safetensors`` written by
  ``embedcache convert``. Module names of the official loader's renamed form
  (``nucleotide_transformer<name>/.../self_attention``) are canonicalized to the on-disk form.
* **transformers**: ``config.json`` + ``model.safetensors`` with transformers' ESM names
  (``esm.encoder.layer.0.attention.self.query.weight``), what a user who ran the models
  through ``transformers`` has in their cache. Mapped onto the official names (linear weights
  transposed), so the same weights are the same model: same digest, same cache rows. The
  numerics stay the official ones: ``config.json`` says ``layer_norm_eps`` 1e-12, the released
  JAX models use 1e-5, and the forward always uses 1e-5.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from embedcache.checkpoints.base import Checkpoint, check_architecture, parameter_digest
from embedcache.checkpoints.files import float_array, read_json, read_safetensors, safetensors_keys
from embedcache.checkpoints.resolve import (
    CONVERTED_FILE, CONVERTED_FORMAT, CONVERTED_FORMAT_VERSION, HUB_CONFIG_FILE, HYPERPARAMS_FILE, PICKLE_FILE,
    SAFETENSORS_FILE,
)
from embedcache.checkpoints.safe_pickle import read_pickle
from embedcache.errors import CheckpointError
from embedcache.families.base import Layout
from embedcache.families.nt import config as nt

__all__ = ["LAYOUTS", "canonical_params", "read_hyperparams"]

_P = nt.PREFIX
_RENAMED_PREFIX = "nucleotide_transformer"
_RENAMED_TO_ONDISK = {"self_attention_layer_norm": "mha_layer_norm", "roberta_lm_head": "esm_roberta_lm_head"}
_HEAD = f"{_P}/~/esm_roberta_lm_head/~"


# --- official JAX ---------------------------------------------------------------------------


def read_hyperparams(path: Path) -> dict:
    return nt.normalize_hyperparams(read_json(path, "the model's hyperparams.json"), source=str(path))


def _read_jax(root: Path, name: str) -> Checkpoint:
    hp_path, pickle_path = root / HYPERPARAMS_FILE, root / PICKLE_FILE
    missing = [str(p) for p in (hp_path, pickle_path) if not p.is_file()]
    if missing:
        raise CheckpointError(f"checkpoint {root} lacks {', '.join(missing)}; both files of the released layout are needed")
    hyperparams = read_hyperparams(hp_path)
    params = canonical_params(read_pickle(pickle_path), pickle_path)
    nt.check_layer_count(params, hyperparams, hp_path)
    variant = nt.infer_variant(params, hyperparams)
    check_architecture(params, hyperparams, variant, pickle_path)
    digest = parameter_digest(hyperparams, variant, params)
    return Checkpoint(name=name, source=str(root), hyperparams=hyperparams, variant=variant, params=params, digest=digest)


def _read_converted(root: Path) -> Checkpoint:
    from safetensors import SafetensorError, safe_open

    path = root / CONVERTED_FILE
    redo = "delete it and run `embedcache convert` on the original checkpoint again"
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            if meta.get("embedcache_format") != CONVERTED_FORMAT:
                raise CheckpointError(f"{path} was not written by `embedcache convert` (no {CONVERTED_FORMAT} metadata); {redo}")
            version = meta.get("embedcache_format_version")
            if version != CONVERTED_FORMAT_VERSION:
                raise CheckpointError(
                    f"{path} is in {CONVERTED_FORMAT} version {version!r}; this release knows version "
                    f"{CONVERTED_FORMAT_VERSION!r} only. Upgrade embedcache, or {redo}"
                )
            hyperparams = nt.normalize_hyperparams(json.loads(meta["hyperparams"]), source=str(path))
            variant, digest, name = meta["variant"], meta["digest"], meta["name"]
            tree: dict[str, dict[str, np.ndarray]] = {}
            for key in f.keys():
                module, _, param = key.rpartition(":")
                tree.setdefault(module, {})[param] = f.get_tensor(key)
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{path} is damaged ({type(exc).__name__}: {exc}); {redo}") from exc
    hp_path = root / HYPERPARAMS_FILE
    if hp_path.is_file() and read_hyperparams(hp_path) != hyperparams:
        raise CheckpointError(
            f"{hp_path} does not describe the converted parameters in {path} (the converted copy is "
            f"stale); {redo}"
        )
    params = canonical_params(tree, path)
    nt.check_layer_count(params, hyperparams, path)
    # The stored digest stands in for re-hashing gigabytes; the names and shapes still must fit.
    check_architecture(params, hyperparams, variant, path)
    return Checkpoint(name=name, source=str(root), hyperparams=hyperparams, variant=variant, params=params,
                      digest=digest, layout="converted")


def _canonical_module(module: str) -> str:
    """The on-disk module path for either naming form."""
    parts = module.split("/")
    if parts[0].startswith(_RENAMED_PREFIX):
        parts[0] = _P
    if len(parts) > 3 and parts[1].startswith("attention_layer_") and parts[3] == "self_attention":
        parts[3] = "mha"
    return "/".join(_RENAMED_TO_ONDISK.get(p, p) for p in parts)


def canonical_params(tree: Any, source: Path) -> dict[str, dict[str, np.ndarray]]:
    if not isinstance(tree, Mapping):
        raise CheckpointError(f"{source} holds a {type(tree).__name__}, not a {{module: {{name: array}}}} parameter tree")
    params: dict[str, dict[str, np.ndarray]] = {}
    for module, leaves in tree.items():
        if not isinstance(module, str) or not isinstance(leaves, Mapping):
            raise CheckpointError(f"{source}: entry {module!r} is not a module of named arrays")
        canonical = params.setdefault(_canonical_module(module), {})
        for name, value in leaves.items():
            if name in canonical:
                raise CheckpointError(f"{source}: parameter {_canonical_module(module)}:{name} appears under both naming forms")
            canonical[name] = float_array(value, f"{module}:{name}", source)
    return params


# --- transformers' ESM layout ----------------------------------------------------------------


_ESM_LAYER = re.compile(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$")
_ESM_LAYER_MODULES = {
    "attention.self.query": "mha/query",
    "attention.self.key": "mha/key",
    "attention.self.value": "mha/value",
    "attention.output.dense": "mha/mha_output",
    "attention.LayerNorm": "mha_layer_norm",
    "intermediate.dense": "fc1",
    "output.dense": "fc2",
    "LayerNorm": "final_layer_norm",
}
_ESM_TOP = {
    "embeddings.word_embeddings.weight": (f"{_P}/~/embed", "embeddings"),
    "embeddings.position_embeddings.weight": (f"{_P}/~/esm_learned_positional_embeddings/~/embed", "embeddings"),
    "embeddings.layer_norm.weight": (f"{_P}/~/emb_layer_norm_before", "scale"),
    "embeddings.layer_norm.bias": (f"{_P}/~/emb_layer_norm_before", "offset"),
    "encoder.emb_layer_norm_after.weight": (f"{_HEAD}/emb_layer_norm_after", "scale"),
    "encoder.emb_layer_norm_after.bias": (f"{_HEAD}/emb_layer_norm_after", "offset"),
    "lm_head.dense.weight": (f"{_HEAD}/lm_head_fc_1", "w"),
    "lm_head.dense.bias": (f"{_HEAD}/lm_head_fc_1", "b"),
    "lm_head.layer_norm.weight": (f"{_HEAD}/lm_head_layer_norm", "scale"),
    "lm_head.layer_norm.bias": (f"{_HEAD}/lm_head_layer_norm", "offset"),
    "lm_head.decoder.weight": (f"{_HEAD}/lm_final_fc", "w"),
    "lm_head.bias": (f"{_HEAD}/lm_final_fc", "b"),
    "lm_head.decoder.bias": (f"{_HEAD}/lm_final_fc", "b"),  # newer transformers: the same tensor
}
# Not part of NT: ESM's contact head, buffers, a fine-tuned model's own head.
_ESM_IGNORED = ("contact_head.", "pooler.", "classifier.", "embeddings.position_ids")


def _esm_target(key: str) -> tuple[str, str] | None:
    if key in _ESM_TOP:
        return _ESM_TOP[key]
    m = _ESM_LAYER.match(key)
    if m and m.group(2) in _ESM_LAYER_MODULES:
        module = f"{_P}/attention_layer_{int(m.group(1))}/~/{_ESM_LAYER_MODULES[m.group(2)]}"
        ln = "layer_norm" in module.rsplit("/", 1)[-1]
        return module, {"weight": "scale" if ln else "w", "bias": "offset" if ln else "b"}[m.group(3)]
    return None


def _read_transformers(root: Path, name: str) -> Checkpoint:
    path = root / SAFETENSORS_FILE
    raw = read_json(root / HUB_CONFIG_FILE, "the model's Hugging Face config.json")
    params: dict[str, dict[str, np.ndarray]] = {}
    for key, value in read_safetensors(path).items():
        short = key.removeprefix("esm.")
        if short.startswith(_ESM_IGNORED) or short.endswith("rotary_embeddings.inv_freq"):
            continue
        target = _esm_target(short)
        if target is None:
            raise CheckpointError(
                f"{path}: tensor {key!r} is not a parameter of a Nucleotide Transformer in transformers' "
                "ESM layout (names such as esm.encoder.layer.0.attention.self.query.weight)"
            )
        module, pname = target
        array = float_array(value, key, path)
        # transformers stores Linear weights as [out, in]; the official tree as [in, out].
        params.setdefault(module, {})[pname] = np.ascontiguousarray(array.T) if pname == "w" else array
    hyperparams = _esm_hyperparams(raw, params, root / HUB_CONFIG_FILE)
    nt.check_layer_count(params, hyperparams, root / HUB_CONFIG_FILE)
    variant = nt.infer_variant(params, hyperparams)
    check_architecture(params, hyperparams, variant, path)
    digest = parameter_digest(hyperparams, variant, params)
    return Checkpoint(name=name, source=str(root), hyperparams=hyperparams, variant=variant, params=params,
                      digest=digest, layout="transformers")


def _esm_hyperparams(cfg: Mapping[str, Any], params, source: Path) -> dict:
    """The official hyperparameters of an ESM-layout NT ``config.json``.

    ``max_position_embeddings`` counts the two rows ESM's learned table reserves, so
    ``max_positions`` is 2 fewer. Whether the FFN is gated is read from ``fc1``'s width.
    ``layer_norm_eps`` is deliberately not read: the official models use 1e-5.
    """
    try:
        d, ffn = int(cfg["hidden_size"]), int(cfg["intermediate_size"])
        position = cfg.get("position_embedding_type", "absolute")
        vocab = int(cfg["vocab_size"])
        k = next((k for k in range(1, 9) if 4**k + 9 <= vocab <= 4**k + 11), 6)
        fc1 = params.get(f"{_P}/attention_layer_0/~/fc1", {}).get("w")
        glu = fc1 is not None and fc1.shape[-1] == 2 * ffn
        hp = {
            "max_positions": int(cfg["max_position_embeddings"]) - 2,
            "embed_dim": d,
            "attention_heads": int(cfg["num_attention_heads"]),
            "ffn_embed_dim": ffn,
            "num_layers": int(cfg["num_hidden_layers"]),
            "k_for_kmers": k,
            "positional_embedding": "learned" if position == "absolute" else None,
            "use_rotary_embedding": position == "rotary",
            "add_bias_ffn": bool(cfg.get("add_bias_fnn", True)),
            "use_glu_in_ffn": glu,
            "ffn_activation_name": "swish" if glu else "gelu-no-approx",
            "emb_layer_norm_before": bool(cfg.get("emb_layer_norm_before", False)),
            "token_dropout": bool(cfg.get("token_dropout", False)),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source} is not a Nucleotide Transformer config.json (missing or bad {exc})") from exc
    if position not in ("absolute", "rotary"):
        raise CheckpointError(f"{source}: position_embedding_type {position!r} is not one NT uses (absolute or rotary)")
    return nt.normalize_hyperparams(hp, source=str(source))


def _is_transformers(root: Path) -> bool:
    tensors = root / SAFETENSORS_FILE
    return ((root / HUB_CONFIG_FILE).is_file() and tensors.is_file()
            and not any(k.startswith("core.") for k in safetensors_keys(tensors)))


# Tried in this order: a converted copy stands in for the pickle beside it.
LAYOUTS = (
    Layout("converted", lambda root: (root / CONVERTED_FILE).is_file(), lambda root, name: _read_converted(root)),
    Layout("jax", lambda root: (root / PICKLE_FILE).is_file() or (root / HYPERPARAMS_FILE).is_file(), _read_jax),
    Layout("transformers", _is_transformers, _read_transformers),
)
