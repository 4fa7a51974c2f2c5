"""Model names and directories -> checkpoint directories, through the Hugging Face hub cache.

A released name resolves first to a converted copy under
``$EMBEDCACHE_HOME/checkpoints/<name>/`` (default ``~/.cache/embedcache``), else to its files
in the local Hugging Face cache, downloading them only when they are not there and the hub
is not offline (``HF_HUB_OFFLINE=1``). A directory is taken as it is; which layout it holds
is :mod:`embedcache.checkpoints.layouts`' business.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from embedcache.errors import CheckpointError

__all__ = ["ALIASES", "RELEASED", "RELEASED_MODELS", "Released", "embedcache_home", "resolve", "is_directory_argument", "released_models"]

HYPERPARAMS_FILE = "jax_model/hyperparams.json"
PICKLE_FILE = "jax_model/pytree_ckpt.joblib"
CONVERTED_FILE = "jax_model/params.safetensors"
# `embedcache convert`'s own format (a non-executable copy of v1/v2 weights), and its version.
CONVERTED_FORMAT = "embedcache-nt-checkpoint"
CONVERTED_FORMAT_VERSION = "1"
HUB_CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
TORCH_PICKLE_FILE = "pytorch_model.bin"


@dataclass(frozen=True)
class Released:
    """A released model: where it lives and what it is (from the model cards).

    ``width`` is the transformer's; ``context`` is in bases (v1/v2: 6-mer tokens x 6).
    0 means the model card does not say (the exact values are in the checkpoint's config).
    """

    repo: str
    family: str
    parameters: str
    layers: int
    width: int
    context: int
    tokenizer: str
    files: tuple[str, ...]


_JAX = (HYPERPARAMS_FILE, PICKLE_FILE)
_HUB = (HUB_CONFIG_FILE, SAFETENSORS_FILE)
_NT = "InstaDeepAI/nucleotide-transformer-"


def _v3(name: str, params: str, layers: int, width: int, context: int, downsamples: int) -> Released:
    return Released(f"InstaDeepAI/{name}", "ntv3", params, layers, width, context,
                    f"single base, padded to a multiple of {2**downsamples}", _HUB)


RELEASED: dict[str, Released] = {
    "50M_multi_species_v2": Released(f"{_NT}v2-50m-multi-species", "nt-v2", "56M", 12, 512, 12282, "6-mer", _JAX),
    "100M_multi_species_v2": Released(f"{_NT}v2-100m-multi-species", "nt-v2", "98M", 22, 512, 12282, "6-mer", _JAX),
    "250M_multi_species_v2": Released(f"{_NT}v2-250m-multi-species", "nt-v2", "250M", 24, 768, 12282, "6-mer", _JAX),
    "500M_multi_species_v2": Released(f"{_NT}v2-500m-multi-species", "nt-v2", "500M", 29, 1024, 12282, "6-mer", _JAX),
    "500M_human_ref": Released(f"{_NT}500m-human-ref", "nt-v1", "500M", 24, 1280, 5994, "6-mer", _JAX),
    "500M_1000G": Released(f"{_NT}500m-1000G", "nt-v1", "500M", 24, 1280, 5994, "6-mer", _JAX),
    "2B5_1000G": Released(f"{_NT}2.5b-1000G", "nt-v1", "2.5B", 32, 2560, 5994, "6-mer", _JAX),
    "2B5_multi_species": Released(f"{_NT}2.5b-multi-species", "nt-v1", "2.5B", 32, 2560, 5994, "6-mer", _JAX),
    # AgroNT (plant genomes) and Codon-NT (3-mer tokens), released beside the NT models.
    "1B_agro_nt": Released("InstaDeepAI/agro-nucleotide-transformer-1b", "nt (AgroNT)", "1B", 40, 1500, 6000,
                           "6-mer", _JAX),
    "codon_nt": Released(f"{_NT}v2-50m-3mer-multi-species", "nt-v2 (Codon-NT)", "50M", 12, 512, 6141, "3-mer",
                         _JAX),
    "NTv3_8M_pre": _v3("NTv3_8M_pre", "8M", 2, 256, 1_048_576, 7),
    "NTv3_100M_pre": _v3("NTv3_100M_pre", "100M", 6, 768, 1_048_576, 7),
    "NTv3_650M_pre": _v3("NTv3_650M_pre", "650M", 12, 1536, 1_048_576, 7),
    "NTv3_8M_pre_8kb": _v3("NTv3_8M_pre_8kb", "8M", 2, 256, 8192, 7),
    "NTv3_100M_pre_8kb": _v3("NTv3_100M_pre_8kb", "100M", 6, 768, 8192, 7),
    "NTv3_650M_pre_8kb": _v3("NTv3_650M_pre_8kb", "650M", 12, 1536, 8192, 7),
    "NTv3_100M_post": _v3("NTv3_100M_post", "100M", 6, 768, 1_048_576, 7),
    "NTv3_650M_post": _v3("NTv3_650M_post", "650M", 12, 1536, 1_048_576, 7),
    "NTv3_100M_post_131kb": _v3("NTv3_100M_post_131kb", "100M", 6, 768, 131_072, 7),
    "NTv3_650M_post_131kb": _v3("NTv3_650M_post_131kb", "650M", 12, 1536, 131_072, 7),
    "NTv3_5downsample_pre": _v3("NTv3_5downsample_pre", "592M", 0, 0, 1_048_576, 5),
    "NTv3_5downsample_pre_8kb": _v3("NTv3_5downsample_pre_8kb", "592M", 0, 0, 8192, 5),
    "NTv3_5downsample_post": _v3("NTv3_5downsample_post", "592M", 0, 0, 1_048_576, 5),
    "NTv3_5downsample_post_131kb": _v3("NTv3_5downsample_post_131kb", "592M", 0, 0, 131_072, 5),
}
"""Every released model embedcache reads, by released name."""

ALIASES: dict[str, str] = {"50M_3mer_multi_species_v2": "codon_nt"}
"""Other names the official code lists for a released model."""

RELEASED_MODELS: dict[str, str] = {name: r.repo for name, r in RELEASED.items()}
"""Released model name -> Hugging Face repository."""


def released_models(cache_dir=None) -> list[dict]:
    """One row per released name: family, parameters, layers, width, context, tokenizer, and
    whether its files are at hand (converted copy or local Hugging Face cache; no network)."""
    import huggingface_hub

    rows = []
    for name, r in RELEASED.items():
        here = (embedcache_home() / "checkpoints" / name / CONVERTED_FILE).is_file()
        if not here:
            try:
                for f in r.files:
                    huggingface_hub.hf_hub_download(r.repo, f, cache_dir=cache_dir, local_files_only=True)
                here = True
            except Exception:  # not cached (the hub raises several kinds): that is the answer
                here = False
        rows.append({"name": name, "family": r.family, "parameters": r.parameters, "layers": r.layers,
                     "width": r.width, "context": r.context, "tokenizer": r.tokenizer, "repo": r.repo,
                     "local": here})
    return rows


def embedcache_home() -> Path:
    """Embedcache's own data directory: ``$EMBEDCACHE_HOME``, default ``~/.cache/embedcache``."""
    return Path(os.environ.get("EMBEDCACHE_HOME") or Path.home() / ".cache" / "embedcache").expanduser()


def is_directory_argument(model: str | os.PathLike) -> bool:
    return Path(model).expanduser().is_dir()


def resolve(model: str | os.PathLike, cache_dir) -> tuple[Path, str]:
    """Return (checkpoint directory, default model name) for a released name or a directory."""
    path = Path(model).expanduser()
    if path.is_dir():
        if path.name == "jax_model" and not (path / "jax_model").is_dir():
            path = path.parent
        # abspath, not resolve: a symlinked checkpoint keeps the name the user gave it.
        path = Path(os.path.abspath(path))
        return path, path.name
    name = ALIASES.get(str(model), str(model))
    if name not in RELEASED:
        raise CheckpointError(
            f"{name!r} is neither a checkpoint directory nor a released model name. "
            f"Released names: {', '.join(RELEASED)} (`embedcache models` lists them). A directory "
            f"must hold {HYPERPARAMS_FILE} and {PICKLE_FILE} (official JAX layout), or "
            f"{HUB_CONFIG_FILE} and {SAFETENSORS_FILE} (Hugging Face layout)."
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

    released = RELEASED[name]
    repo, files = released.repo, released.files
    searched = Path(cache_dir).expanduser() if cache_dir is not None else Path(constants.HF_HUB_CACHE)

    def fetch(local_files_only: bool) -> Path:
        paths = [
            Path(huggingface_hub.hf_hub_download(repo, f, cache_dir=cache_dir, local_files_only=local_files_only))
            for f in files
        ]
        # The snapshot directory: files may sit in a subfolder (jax_model/).
        return paths[-1].parents[files[-1].count("/")]

    def unavailable(reason: str) -> CheckpointError:
        listed = " and ".join(files)
        return CheckpointError(
            f"model {name!r} is not available: {reason}.\n"
            f"It needs {listed} from the Hugging Face repository "
            f"{repo}; searched the Hugging Face cache at {searched} and converted copies at "
            f"{embedcache_home() / 'checkpoints' / name}.\n"
            f"Way out: on a machine with network run `hf download {repo} {' '.join(files)}` "
            f"and copy its Hugging Face cache to {searched} (or point HF_HUB_CACHE "
            f"at it), or pass a checkpoint directory (--model PATH) holding those files."
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
