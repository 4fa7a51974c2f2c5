"""Nucleotide Transformer checkpoints of every family: find them, read them without running code.

:func:`load_checkpoint` takes a released name (:data:`RELEASED_MODELS`; resolved through the
Hugging Face hub cache, see :mod:`.resolve`) or a directory in one of the layouts of
:mod:`.layouts`: the official JAX layout of v1/v2 (``jax_model/hyperparams.json`` +
``pytree_ckpt.joblib``, read by a restricted unpickler, :mod:`.safe_pickle`; or the
``params.safetensors`` copy of :func:`convert_checkpoint`), transformers' ESM layout of v1/v2
and the NTv3 hub layout (both ``config.json`` + ``model.safetensors``).

A model is identified in the cache by :func:`parameter_digest`, a SHA-256 of its
architecture and every parameter, never by its name or layout.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np

from embedcache.checkpoints.base import Checkpoint, expected_shapes, parameter_digest
from embedcache.checkpoints.convert import convert_checkpoint
from embedcache.checkpoints.layouts import read_directory
from embedcache.checkpoints.resolve import (
    ALIASES, CONVERTED_FILE, CONVERTED_FORMAT, CONVERTED_FORMAT_VERSION, HUB_CONFIG_FILE, HYPERPARAMS_FILE, PICKLE_FILE, RELEASED, RELEASED_MODELS, SAFETENSORS_FILE,
    embedcache_home, released_models, resolve,
)
from embedcache.errors import CheckpointError
from embedcache.families.ntv3 import config as ntv3
from embedcache.families.nt.config import normalize_hyperparams, parameter_shapes

__all__ = [
    "ALIASES",
    "RELEASED",
    "RELEASED_MODELS",
    "RELEASED_ARCHITECTURES",
    "RANDOM_PREFIX",
    "RandomWeightsWarning",
    "random_checkpoint",
    "CONVERTED_FORMAT",
    "CONVERTED_FORMAT_VERSION",
    "HYPERPARAMS_FILE",
    "PICKLE_FILE",
    "CONVERTED_FILE",
    "HUB_CONFIG_FILE",
    "SAFETENSORS_FILE",
    "Checkpoint",
    "load_checkpoint",
    "resolve_checkpoint",
    "convert_checkpoint",
    "embedcache_home",
    "released_models",
    "normalize_hyperparams",
    "parameter_shapes",
    "parameter_digest",
]

RANDOM_PREFIX = "random-"
# Architectures known without downloading anything, for random-weight runs. NTv3_8M_pre's
# shape is that of the released model (7,692,475 parameters); the hub config gives its
# exact fields when the files are at hand.
RELEASED_ARCHITECTURES = {
    "50M_multi_species_v2": {
        "max_positions": 2048, "embed_scale": 1.0, "emb_layer_norm_before": False,
        "attention_heads": 16, "embed_dim": 512, "ffn_embed_dim": 2048, "num_layers": 12,
        "positional_embedding": None, "add_bias_kv": False, "add_bias_ffn": False,
        "use_glu_in_ffn": True, "ffn_activation_name": "swish", "use_rotary_embedding": True,
        "token_dropout": False, "masking_ratio": 0.1, "masking_prob": 0.8, "k_for_kmers": 6,
    },
    "NTv3_8M_pre": {
        "alphabet_size": 11, "num_downsamples": 7, "token_embed_dim": 16, "conv_init_embed_dim": 256,
        "embed_dim": 256, "num_layers": 2, "attention_heads": 8, "key_size": 32, "ffn_embed_dim": 1024,
        "layer_norm_eps": 1e-5, "deconv_upsample_type": "conv_transpose",
    },
}


def load_checkpoint(
    model: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    allow_random_weights: bool = False,
) -> Checkpoint:
    """Load a checkpoint by released name or directory.

    Parameters
    ----------
    model
        A released name (see :data:`RELEASED_MODELS`), a checkpoint directory in any
        supported layout (for the official JAX layout, the one holding ``jax_model/``, or
        ``jax_model/`` itself), or ``random-<released name>`` for that architecture with
        seeded random weights (:func:`random_checkpoint`).
    cache_dir
        Hugging Face cache to search and download into; default the hub's own
        (``HF_HUB_CACHE``, ``~/.cache/huggingface/hub``).
    allow_random_weights
        When a released model's weights cannot be had (offline, not cached), fall back on
        its architecture with seeded random weights instead of raising, and warn. For
        trying the pipeline on a machine without the weights; the result says so
        (``Checkpoint.random_weights``).

    Raises
    ------
    CheckpointError
        The model cannot be found, read, or does not match its configuration.
    UnsafeCheckpointError
        The pickle asks for anything other than NumPy arrays and plain containers.
    """
    if isinstance(model, str) and model.startswith(RANDOM_PREFIX) and not os.path.exists(model):
        return random_checkpoint(model[len(RANDOM_PREFIX):])
    try:
        root, name = resolve(model, cache_dir)
    except CheckpointError as exc:
        if not (allow_random_weights and isinstance(model, str) and model in RELEASED_ARCHITECTURES):
            raise
        warnings.warn(
            f"{exc}\nFALLING BACK ON RANDOM WEIGHTS: running the {model} architecture with seeded "
            "random weights. The pipeline is real; the embeddings carry no biology.",
            RandomWeightsWarning,
            stacklevel=2,
        )
        return random_checkpoint(model)
    return read_directory(root, name)


def resolve_checkpoint(model: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None) -> Path:
    """Return the checkpoint directory for a released name or a path (see :mod:`.resolve`).

    Raises
    ------
    CheckpointError
        Unknown name, or files that are neither cached nor downloadable; the message says
        what to fetch and where.
    """
    return resolve(model, cache_dir)[0]


class RandomWeightsWarning(UserWarning):
    """A released model's weights were missing and random weights stand in for them."""


def random_checkpoint(name: str, *, seed: int = 0) -> Checkpoint:
    """A released architecture with seeded random weights, named ``random-<name>``.

    The values depend only on (seed, parameter name, shape): the same call gives the
    same model, and so the same cache key, on every machine. Linear weights are
    N(0, 1/fan_in), biases N(0, 0.02^2), layer-norm scales 1 + N(0, 0.1^2), offsets
    N(0, 0.05^2), embeddings N(0, 1): activations stay in the range of a trained model.

    Parameters
    ----------
    name
        A name of :data:`RELEASED_ARCHITECTURES`.
    seed
        Seed of the weights.
    """
    if name not in RELEASED_ARCHITECTURES:
        raise CheckpointError(
            f"no architecture is recorded for {name!r}; random weights exist for "
            f"{', '.join(sorted(RELEASED_ARCHITECTURES))}"
        )
    if name.startswith("NTv3"):
        variant = "v3"
        hp = ntv3.NTv3Config.from_hub_config(RELEASED_ARCHITECTURES[name]).to_dict()
    else:
        variant = "v2" if name.endswith("_v2") else "v1"
        hp = normalize_hyperparams(RELEASED_ARCHITECTURES[name])
    shapes = expected_shapes(hp, variant)
    params: dict[str, dict[str, np.ndarray]] = {}
    for (module, pname), shape in shapes.items():
        tag = hashlib.sha256(f"{seed}|{module}|{pname}|{shape}".encode()).digest()
        z = np.random.Generator(np.random.PCG64(int.from_bytes(tag[:16], "little"))).standard_normal(
            shape, dtype=np.float32
        )
        scale, offset = _random_scale(module, pname, shape)
        params.setdefault(module, {})[pname] = z * np.float32(scale) + np.float32(offset)
    digest = parameter_digest(hp, variant, params)
    return Checkpoint(
        name=f"{RANDOM_PREFIX}{name}", source=f"random weights, seed {seed}", hyperparams=hp,
        variant=variant, params=params, digest=digest, random_weights=True, layout="random",
    )


def _random_scale(module: str, pname: str, shape) -> tuple[float, float]:
    """(std, mean) of a random parameter, by role."""
    # v1/v2 names (w, b, scale, offset) or NTv3 names (weight/bias, layer norms by module).
    if pname == "scale" or (pname == "weight" and module.endswith("layer_norm")):
        return 0.1, 1.0
    if pname == "offset" or (pname == "bias" and module.endswith("layer_norm")):
        return 0.05, 0.0
    if pname in ("b", "bias"):
        return 0.02, 0.0
    if pname == "w":
        return 1.0 / np.sqrt(shape[0]), 0.0
    if pname == "weight" and ("modulation" in module):
        return 0.02, 0.0  # near the official zero init: conditioning nudges, does not swamp
    if pname == "weight" and len(shape) >= 2 and not module.endswith(("embed_layer", "cond_tables.0")):
        fan_in = int(np.prod(shape[1:])) if len(shape) == 3 else shape[1]
        return 1.0 / np.sqrt(fan_in), 0.0
    return 1.0, 0.0
