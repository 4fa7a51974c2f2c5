"""`embedcache convert`: a non-executable copy of a pickled checkpoint that later loads prefer."""

from __future__ import annotations

import json
import os
from pathlib import Path

from embedcache.checkpoints.layouts import read_directory
from embedcache.checkpoints.files import read_json
from embedcache.checkpoints.resolve import (
    CONVERTED_FILE, CONVERTED_FORMAT, CONVERTED_FORMAT_VERSION, HYPERPARAMS_FILE, embedcache_home, is_directory_argument,
    resolve,
)
from embedcache.errors import CheckpointError
from embedcache.util.atomic import write_atomically
from embedcache.families.nt.config import normalize_hyperparams

__all__ = ["convert_checkpoint"]


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
    The original pickle is never touched. Checkpoints already in a safetensors layout
    (transformers, NTv3 hub) need no conversion and are refused with that message.

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
    root, name = resolve(model, cache_dir)
    checkpoint = read_directory(root, name)
    if checkpoint.layout not in ("jax", "converted"):
        raise CheckpointError(
            f"{root} is already in a safetensors layout ({checkpoint.layout}), which cannot run code; "
            "there is nothing to convert: pass it as it is"
        )
    if out_dir is None:
        out_dir = root if is_directory_argument(model) else embedcache_home() / "checkpoints" / name
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
    write_atomically(out / CONVERTED_FILE, lambda tmp: save_file(tensors, tmp, metadata))
    # After the tensors: a hyperparams.json that already describes this model is left as it is.
    hp_path = out / HYPERPARAMS_FILE
    if not hp_path.is_file() or normalize_hyperparams(
            read_json(hp_path, "the model's hyperparams.json"), source=str(hp_path)) != checkpoint.hyperparams:
        text = json.dumps(checkpoint.hyperparams, indent=2, sort_keys=True) + "\n"
        write_atomically(hp_path, lambda tmp: Path(tmp).write_text(text))
    return out
