"""Nucleotide Transformer checkpoints: find them, read them without running code, convert them.

A checkpoint is a directory in the layout of the released models::

    <dir>/jax_model/hyperparams.json      architecture
    <dir>/jax_model/pytree_ckpt.joblib    {module_path: {param_name: float32 array}} (a pickle)
    <dir>/jax_model/params.safetensors    optional: written by `embedcache convert`

:func:`load_checkpoint` accepts such a directory, or a released model name
(:data:`RELEASED_MODELS`), which resolves first to a converted copy under
``$EMBEDCACHE_HOME/checkpoints/<name>/`` (default ``~/.cache/embedcache``), else to the
official files in the local Hugging Face cache, downloading them only when they are not
there and the hub is not offline (``HF_HUB_OFFLINE=1``).

Loading a pickle runs whatever code the pickle names. The joblib file is therefore read by
a restricted unpickler that admits only NumPy arrays and plain containers and raises
:class:`~embedcache.errors.UnsafeCheckpointError` on anything else before it runs.
:func:`convert_checkpoint` writes the parameters once to ``params.safetensors``, a format
that cannot run code; later loads read it instead and never unpickle anything.

Parameter names are canonicalized to the on-disk form of the released files
(``esm_transformer/attention_layer_0/~/mha/query``...); the renamed form the official
loader produces (``nucleotide_transformer<name>/.../self_attention``...) is accepted too.
The loaded tree is checked against the names and shapes the hyperparameters imply.

A model is identified in the cache by :func:`parameter_digest`, a SHA-256 of its
architecture and every parameter, never by its name.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import pickle
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from joblib.numpy_pickle import NumpyArrayWrapper, NumpyUnpickler

from embedcache.errors import CheckpointError, UnsafeCheckpointError

__all__ = [
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
    "Checkpoint",
    "load_checkpoint",
    "resolve_checkpoint",
    "convert_checkpoint",
    "embedcache_home",
    "normalize_hyperparams",
    "parameter_shapes",
    "parameter_digest",
]

RELEASED_MODELS: dict[str, str] = {
    "50M_multi_species_v2": "InstaDeepAI/nucleotide-transformer-v2-50m-multi-species",
    "100M_multi_species_v2": "InstaDeepAI/nucleotide-transformer-v2-100m-multi-species",
    "250M_multi_species_v2": "InstaDeepAI/nucleotide-transformer-v2-250m-multi-species",
    "500M_multi_species_v2": "InstaDeepAI/nucleotide-transformer-v2-500m-multi-species",
    "500M_human_ref": "InstaDeepAI/nucleotide-transformer-500m-human-ref",
    "500M_1000G": "InstaDeepAI/nucleotide-transformer-500m-1000G",
    "2B5_1000G": "InstaDeepAI/nucleotide-transformer-2.5b-1000G",
    "2B5_multi_species": "InstaDeepAI/nucleotide-transformer-2.5b-multi-species",
}
"""Released model name -> Hugging Face repository holding ``jax_model/``."""

CONVERTED_FORMAT = "embedcache-nt-checkpoint"
CONVERTED_FORMAT_VERSION = "1"

HYPERPARAMS_FILE = "jax_model/hyperparams.json"
PICKLE_FILE = "jax_model/pytree_ckpt.joblib"
CONVERTED_FILE = "jax_model/params.safetensors"

PREFIX = "esm_transformer"
RANDOM_PREFIX = "random-"
# Architectures known without downloading anything, for random-weight runs.
RELEASED_ARCHITECTURES = {
    "50M_multi_species_v2": {
        "max_positions": 2048, "embed_scale": 1.0, "emb_layer_norm_before": False,
        "attention_heads": 16, "embed_dim": 512, "ffn_embed_dim": 2048, "num_layers": 12,
        "positional_embedding": None, "add_bias_kv": False, "add_bias_ffn": False,
        "use_glu_in_ffn": True, "ffn_activation_name": "swish", "use_rotary_embedding": True,
        "token_dropout": False, "masking_ratio": 0.1, "masking_prob": 0.8, "k_for_kmers": 6,
    },
}
_RENAMED_PREFIX = "nucleotide_transformer"
_RENAMED_TO_ONDISK = {
    "self_attention_layer_norm": "mha_layer_norm",
    "roberta_lm_head": "esm_roberta_lm_head",
}

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
_SPECIAL_ROWS = {"v2": 6, "v1": 4}
_PAD_TOKEN_ID = 1
_DIGEST_TAG = b"embedcache-checkpoint-digest/1\n"


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A loaded Nucleotide Transformer checkpoint.

    Attributes
    ----------
    name
        The released name, the directory's name, or the name recorded in a converted copy.
    source
        The directory it was read from.
    hyperparams
        The architecture, official defaults filled in (see :func:`normalize_hyperparams`).
    variant
        ``"v1"`` or ``"v2"``: the vocabulary family, inferred from the embedding table.
    params
        ``{module_path: {param_name: float32 ndarray}}`` with on-disk module names.
    digest
        Hex SHA-256 of architecture and parameters (:func:`parameter_digest`): the
        model's key in the cache.
    random_weights
        True for :func:`random_checkpoint` models: the released architecture with seeded
        random weights, for running the pipeline without the weights. Their embeddings
        carry no biology.
    """

    name: str
    source: str
    hyperparams: dict
    variant: str
    params: dict = field(repr=False)
    digest: str
    random_weights: bool = False

    @property
    def config(self):
        """The model configuration, :class:`embedcache.model.NTConfig`."""
        # Imported here: loading, converting and digesting must not need JAX.
        from embedcache.model import NTConfig

        return NTConfig.from_hyperparams(self.hyperparams, self.variant)

    def tokenizer(self):
        """The tokenizer of this checkpoint's vocabulary, :class:`embedcache.tokenizer.Tokenizer`."""
        from embedcache.tokenizer import tokenizer_for

        return tokenizer_for(self.variant, int(self.hyperparams["k_for_kmers"]))


def embedcache_home() -> Path:
    """Embedcache's own data directory: ``$EMBEDCACHE_HOME``, default ``~/.cache/embedcache``."""
    return Path(os.environ.get("EMBEDCACHE_HOME") or Path.home() / ".cache" / "embedcache").expanduser()


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
        A released name (see :data:`RELEASED_MODELS`), a checkpoint directory (the one
        holding ``jax_model/``, or ``jax_model/`` itself), or ``random-<released name>``
        for that architecture with seeded random weights (:func:`random_checkpoint`).
    cache_dir
        Hugging Face cache to search and download into; default the hub's own
        (``HF_HUB_CACHE``, ``~/.cache/huggingface/hub``).
    allow_random_weights
        When a released model's weights cannot be had (offline, not cached), fall back on
        its architecture with seeded random weights instead of raising, and warn. For
        trying the pipeline on a machine without the weights; the result says so
        (``Checkpoint.random_weights``).

    Returns
    -------
    Checkpoint
        Read from ``params.safetensors`` when present (nothing is unpickled then),
        else from the joblib pickle through the restricted unpickler.

    Raises
    ------
    CheckpointError
        The model cannot be found, read, or does not match its hyperparameters.
    UnsafeCheckpointError
        The pickle asks for anything other than NumPy arrays and plain containers.
    """
    if isinstance(model, str) and model.startswith(RANDOM_PREFIX) and not Path(model).exists():
        return random_checkpoint(model[len(RANDOM_PREFIX):])
    try:
        root, name = _resolve(model, cache_dir)
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
    return _load(root, name)


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
    hp = normalize_hyperparams(RELEASED_ARCHITECTURES[name])
    variant = "v2" if name.endswith("_v2") else "v1"
    params: dict[str, dict[str, np.ndarray]] = {}
    for (module, pname), shape in parameter_shapes(hp, variant).items():
        tag = hashlib.sha256(f"{seed}|{module}|{pname}|{shape}".encode()).digest()
        z = np.random.Generator(np.random.PCG64(int.from_bytes(tag[:16], "little"))).standard_normal(
            shape, dtype=np.float32
        )
        scale = {"w": 1.0 / np.sqrt(shape[0]), "b": 0.02, "scale": 0.1, "offset": 0.05}.get(pname, 1.0)
        value = z * np.float32(scale) + (np.float32(1.0) if pname == "scale" else np.float32(0.0))
        params.setdefault(module, {})[pname] = value
    digest = parameter_digest(hp, variant, params)
    return Checkpoint(
        name=f"{RANDOM_PREFIX}{name}", source=f"random weights, seed {seed}", hyperparams=hp,
        variant=variant, params=params, digest=digest, random_weights=True,
    )


def resolve_checkpoint(model: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None) -> Path:
    """Return the directory holding ``jax_model/`` for a released name or a path.

    A directory is taken as it is. A released name resolves to a converted copy under
    ``embedcache_home()/checkpoints/<name>`` when there is one, else to the official files
    in the Hugging Face cache, which are downloaded only when missing and the hub is online.

    Parameters
    ----------
    model
        A released name or a checkpoint directory.
    cache_dir
        Hugging Face cache directory; default the hub's own.

    Raises
    ------
    CheckpointError
        Unknown name, a directory without the checkpoint files, or files that are
        neither cached nor downloadable; the message says what to fetch and where.
    """
    return _resolve(model, cache_dir)[0]


def convert_checkpoint(
    model: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Write a non-executable copy of a checkpoint that later loads prefer.

    Writes ``<out>/jax_model/params.safetensors`` (tensors named
    ``module_path:param_name``; metadata: format, version, hyperparameters, variant,
    digest, name, source) and ``<out>/jax_model/hyperparams.json``, each to a temporary
    file first and then renamed, so an interrupted conversion leaves nothing half-written.
    The original pickle is never touched.

    Parameters
    ----------
    model
        A released name or a checkpoint directory.
    out_dir
        Destination; default the checkpoint directory itself for a directory, and
        ``embedcache_home()/checkpoints/<name>`` for a released name.
    cache_dir
        Hugging Face cache directory; default the hub's own.

    Returns
    -------
    Path
        The directory holding the converted ``jax_model/``.
    """
    root, name = _resolve(model, cache_dir)
    checkpoint = _load(root, name)
    if out_dir is None:
        out_dir = root if _is_directory_argument(model) else embedcache_home() / "checkpoints" / name
    out = Path(out_dir).expanduser()
    (out / "jax_model").mkdir(parents=True, exist_ok=True)

    from safetensors.numpy import save_file

    tensors = {f"{m}:{n}": a for m, leaves in checkpoint.params.items() for n, a in leaves.items()}
    metadata = {
        "embedcache_format": CONVERTED_FORMAT,
        "embedcache_format_version": CONVERTED_FORMAT_VERSION,
        "hyperparams": json.dumps(checkpoint.hyperparams, sort_keys=True),
        "variant": checkpoint.variant,
        "digest": checkpoint.digest,
        "name": checkpoint.name,
        "source": checkpoint.source,
    }
    _write_atomically(out / CONVERTED_FILE, lambda tmp: save_file(tensors, tmp, metadata))
    # After the tensors: a hyperparams.json that already describes this model is left as it is.
    hp_path = out / HYPERPARAMS_FILE
    if not hp_path.is_file() or _read_hyperparams(hp_path) != checkpoint.hyperparams:
        text = json.dumps(checkpoint.hyperparams, indent=2, sort_keys=True) + "\n"
        _write_atomically(hp_path, lambda tmp: Path(tmp).write_text(text))
    return out


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
        A new dict with every key of :data:`_DEFAULT_HYPERPARAMS` and ``key_dim``
        (``embed_dim // attention_heads`` unless given). Idempotent.

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
    vocab = int(hp.get("alphabet_size", _SPECIAL_ROWS[variant] + 4 ** int(hp["k_for_kmers"]) + 5))
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
        rows = int(hp["max_positions"]) + _PAD_TOKEN_ID + 1
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


def parameter_digest(hyperparams: Mapping[str, Any], variant: str, params: Mapping[str, Mapping[str, np.ndarray]]) -> str:
    """SHA-256 of a model's architecture and parameters: its key in the cache.

    Parameters
    ----------
    hyperparams
        Architecture; defaults are filled in first, so a file that spells out a default
        and one that leaves it out give the same digest.
    variant
        ``"v1"`` or ``"v2"``.
    params
        ``{module_path: {param_name: ndarray}}`` with on-disk names.

    Returns
    -------
    str
        64 hex digits. Covers every parameter's name, dtype, shape and bytes, in sorted
        name order, so it does not depend on how the tree was ordered or named on disk.
    """
    h = hashlib.sha256(_DIGEST_TAG)
    architecture = {"hyperparams": normalize_hyperparams(hyperparams), "variant": variant}
    h.update(json.dumps(architecture, sort_keys=True).encode() + b"\n")
    for module in sorted(params):
        for name in sorted(params[module]):
            array = np.ascontiguousarray(params[module][name])
            h.update(f"{module}:{name}|{array.dtype.str}|{array.shape}\n".encode())
            h.update(array)
    return h.hexdigest()


# --- resolution -------------------------------------------------------------------------


def _is_directory_argument(model: str | os.PathLike) -> bool:
    return Path(model).expanduser().is_dir()


def _resolve(model: str | os.PathLike, cache_dir) -> tuple[Path, str]:
    """Return (directory holding jax_model/, default model name)."""
    path = Path(model).expanduser()
    if path.is_dir():
        if path.name == "jax_model" and not (path / "jax_model").is_dir():
            path = path.parent
        if not ((path / CONVERTED_FILE).is_file() or (path / PICKLE_FILE).is_file()):
            raise CheckpointError(
                f"{path} is not a checkpoint directory: it needs {HYPERPARAMS_FILE} and "
                f"{PICKLE_FILE} (the layout of the released models), or {CONVERTED_FILE} "
                "written by `embedcache convert`"
            )
        # abspath, not resolve: a symlinked checkpoint keeps the name the user gave it.
        path = Path(os.path.abspath(path))
        return path, path.name
    name = str(model)
    if name not in RELEASED_MODELS:
        raise CheckpointError(
            f"{name!r} is neither a checkpoint directory nor a released model name. "
            f"Released names: {', '.join(RELEASED_MODELS)}. A directory must hold "
            f"{HYPERPARAMS_FILE} and {PICKLE_FILE}."
        )
    converted = embedcache_home() / "checkpoints" / name
    if (converted / CONVERTED_FILE).is_file():
        return converted, name
    return _from_hugging_face(name, cache_dir), name


def _hub_offline() -> bool:
    from huggingface_hub import constants

    # The hub reads HF_HUB_OFFLINE once, at import; honour it when it is set later, too.
    return constants.is_offline_mode() or os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}


def _from_hugging_face(name: str, cache_dir) -> Path:
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import EntryNotFoundError

    repo = RELEASED_MODELS[name]
    searched = Path(cache_dir).expanduser() if cache_dir is not None else Path(constants.HF_HUB_CACHE)

    def fetch(local_files_only: bool) -> Path:
        paths = [
            Path(huggingface_hub.hf_hub_download(repo, f, cache_dir=cache_dir, local_files_only=local_files_only))
            for f in (HYPERPARAMS_FILE, PICKLE_FILE)
        ]
        return paths[1].parent.parent  # the snapshot directory holding jax_model/

    def unavailable(reason: str) -> CheckpointError:
        return CheckpointError(
            f"model {name!r} is not available: {reason}.\n"
            f"It needs {HYPERPARAMS_FILE} and {PICKLE_FILE} from the Hugging Face repository "
            f"{repo}; searched the Hugging Face cache at {searched} and converted copies at "
            f"{embedcache_home() / 'checkpoints' / name}.\n"
            f"Way out: on a machine with network run `hf download {repo} {HYPERPARAMS_FILE} "
            f"{PICKLE_FILE}` and copy its Hugging Face cache to {searched} (or point HF_HUB_CACHE "
            "at it), or pass a checkpoint directory (--model PATH) holding those two files."
        )

    # The local cache first: no network at all when the files are there.
    try:
        return fetch(local_files_only=True)
    except EntryNotFoundError:
        pass
    if _hub_offline():
        raise unavailable("the hub is offline (HF_HUB_OFFLINE) and the files are not in the local cache")
    try:
        return fetch(local_files_only=False)
    except Exception as exc:  # any failure to fetch is the same situation for the user
        raise unavailable(f"download failed ({type(exc).__name__}: {exc})") from exc


# --- reading ----------------------------------------------------------------------------


def _load(root: Path, name: str) -> Checkpoint:
    if (root / CONVERTED_FILE).is_file():
        return _load_converted(root)
    hp_path, pickle_path = root / HYPERPARAMS_FILE, root / PICKLE_FILE
    missing = [str(p) for p in (hp_path, pickle_path) if not p.is_file()]
    if missing:
        raise CheckpointError(f"checkpoint {root} lacks {', '.join(missing)}; both files of the released layout are needed")
    hyperparams = _read_hyperparams(hp_path)
    params = _canonical_params(_read_pickle(pickle_path), pickle_path)
    variant = _infer_variant(params, hyperparams)
    _check_architecture(params, hyperparams, variant, pickle_path)
    digest = parameter_digest(hyperparams, variant, params)
    return Checkpoint(name=name, source=str(root), hyperparams=hyperparams, variant=variant, params=params, digest=digest)


def _read_hyperparams(path: Path) -> dict:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path} ({exc}); it must be the model's hyperparams.json") from exc
    return normalize_hyperparams(raw, source=str(path))


def _load_converted(root: Path) -> Checkpoint:
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
            hyperparams = normalize_hyperparams(json.loads(meta["hyperparams"]), source=str(path))
            variant, digest, name = meta["variant"], meta["digest"], meta["name"]
            tree: dict[str, dict[str, np.ndarray]] = {}
            for key in f.keys():
                module, _, param = key.rpartition(":")
                tree.setdefault(module, {})[param] = f.get_tensor(key)
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{path} is damaged ({type(exc).__name__}: {exc}); {redo}") from exc
    hp_path = root / HYPERPARAMS_FILE
    if hp_path.is_file() and _read_hyperparams(hp_path) != hyperparams:
        raise CheckpointError(
            f"{hp_path} does not describe the converted parameters in {path} (the converted copy is "
            f"stale); {redo}"
        )
    params = _canonical_params(tree, path)
    # The stored digest stands in for re-hashing gigabytes; the names and shapes still must fit.
    _check_architecture(params, hyperparams, variant, path)
    return Checkpoint(name=name, source=str(root), hyperparams=hyperparams, variant=variant, params=params, digest=digest)


def _canonical_module(module: str) -> str:
    """The on-disk module path for either naming form."""
    parts = module.split("/")
    if parts[0].startswith(_RENAMED_PREFIX):
        parts[0] = PREFIX
    if len(parts) > 3 and parts[1].startswith("attention_layer_") and parts[3] == "self_attention":
        parts[3] = "mha"
    return "/".join(_RENAMED_TO_ONDISK.get(p, p) for p in parts)


def _canonical_params(tree: Any, source: Path) -> dict[str, dict[str, np.ndarray]]:
    if not isinstance(tree, Mapping):
        raise CheckpointError(f"{source} holds a {type(tree).__name__}, not a {{module: {{name: array}}}} parameter tree")
    params: dict[str, dict[str, np.ndarray]] = {}
    for module, leaves in tree.items():
        if not isinstance(module, str) or not isinstance(leaves, Mapping):
            raise CheckpointError(f"{source}: entry {module!r} is not a module of named arrays")
        canonical = params.setdefault(_canonical_module(module), {})
        for name, value in leaves.items():
            if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
                kind = getattr(value, "dtype", type(value).__name__)
                raise CheckpointError(f"{source}: parameter {module}:{name} is {kind}, not a floating-point array")
            if name in canonical:
                raise CheckpointError(f"{source}: parameter {_canonical_module(module)}:{name} appears under both naming forms")
            canonical[name] = np.ascontiguousarray(value, dtype=np.float32)
    return params


def _infer_variant(params: Mapping[str, Mapping[str, np.ndarray]], hyperparams: Mapping[str, Any]) -> str:
    """v2 embeds 4**k + 11 tokens, v1 4**k + 9; the table says which, else the position scheme."""
    table = params.get(f"{PREFIX}/~/embed", {}).get("embeddings")
    if table is not None and table.ndim == 2:
        kmers = 4 ** int(hyperparams["k_for_kmers"])
        for variant, special in _SPECIAL_ROWS.items():
            if table.shape[0] == kmers + special + 5:
                return variant
    return "v2" if hyperparams["use_rotary_embedding"] else "v1"


def _check_architecture(params, hyperparams, variant: str, source: Path) -> None:
    expected = parameter_shapes(hyperparams, variant)
    found = {(m, n): tuple(a.shape) for m, leaves in params.items() for n, a in leaves.items()}
    problems = [f"missing {m}:{n} {expected[(m, n)]}" for m, n in sorted(expected.keys() - found.keys())]
    problems += [f"unexpected {m}:{n} {found[(m, n)]}" for m, n in sorted(found.keys() - expected.keys())]
    problems += [
        f"wrong shape {m}:{n} is {found[(m, n)]}, expected {expected[(m, n)]}"
        for m, n in sorted(expected.keys() & found.keys())
        if expected[(m, n)] != found[(m, n)]
    ]
    if problems:
        shown = problems[:30] + ([f"... and {len(problems) - 30} more"] if len(problems) > 30 else [])
        raise CheckpointError(
            f"{source} does not match its hyperparameters ({hyperparams['num_layers']} layers, "
            f"embed_dim {hyperparams['embed_dim']}, variant {variant}):\n  " + "\n  ".join(shown)
            + "\nThe weights and hyperparams.json must come from the same model; fetch both again."
        )


# --- the restricted unpickler -------------------------------------------------------------


def _safe_globals() -> dict[tuple[str, str], Any]:
    """The only globals a parameter pickle may name: arrays, dtypes, plain containers."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # NumPy 1.x
        from numpy.core import multiarray, numeric

    allowed: dict[tuple[str, str], Any] = {
        ("joblib.numpy_pickle", "NumpyArrayWrapper"): NumpyArrayWrapper,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("collections", "OrderedDict"): collections.OrderedDict,
    }
    # Pickles name NumPy's internals by the module of the NumPy that wrote them.
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    for container in (dict, list, tuple, set, frozenset):
        allowed[("builtins", container.__name__)] = container
    return allowed


_SAFE_GLOBALS = _safe_globals()


class _ArraysOnlyUnpickler(NumpyUnpickler):
    """joblib's unpickler that refuses every global but those of :func:`_safe_globals`."""

    dispatch = NumpyUnpickler.dispatch.copy()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"{self.filename} asks to load the Python object {module}.{name}; a checkpoint holds "
                "only NumPy arrays in plain containers, so the file was refused before anything in it "
                "ran. It is damaged or malicious: download the official checkpoint again and, from "
                "that trusted copy, run `embedcache convert` to get a file that cannot run code."
            ) from None

    def load_build(self) -> None:
        # joblib reads an object array's items with an unrestricted pickle.load (before 1.6),
        # so such an array is refused before joblib gets to it.
        wrapper, state = self.stack[-2], self.stack[-1]
        if isinstance(wrapper, NumpyArrayWrapper):
            dtype = state.get("dtype") if isinstance(state, dict) else None
            if not isinstance(dtype, np.dtype) or dtype.hasobject or state.get("subclass") is not np.ndarray:
                raise UnsafeCheckpointError(
                    f"{self.filename} holds an array that is not a plain numeric ndarray ({dtype}); "
                    "reading it would unpickle Python objects, so it was refused. Download the "
                    "official checkpoint again and run `embedcache convert` on that trusted copy."
                )
        NumpyUnpickler.load_build(self)

    dispatch[pickle.BUILD[0]] = load_build


def _read_pickle(path: Path) -> Any:
    # joblib offers no hook for a custom unpickler; its own file opener handles compression.
    from joblib.numpy_pickle import _validate_fileobject_and_memmap

    with open(path, "rb") as raw, _validate_fileobject_and_memmap(raw, str(path)) as (fobj, _):
        if isinstance(fobj, str):
            raise CheckpointError(
                f"{path} is in the joblib < 0.10 format, which cannot be read without running "
                "arbitrary code; download the official checkpoint again"
            )
        try:
            return _ArraysOnlyUnpickler(str(path), fobj, True).load()
        except CheckpointError:
            raise
        except Exception as exc:
            raise CheckpointError(
                f"{path} is not a readable joblib checkpoint ({type(exc).__name__}: {exc}); download it again"
            ) from exc


def _write_atomically(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write`` on a temporary name beside ``path``, then rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
