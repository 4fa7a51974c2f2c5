"""Reading a checkpoint directory: whichever layout an installed model family reads there.

The layouts themselves live with their family (:mod:`embedcache.families.nt.layouts`:
official JAX, ``embedcache convert``'s copy, transformers' ESM; :mod:`embedcache.families.ntv3.layouts`:
the NTv3 hub layout; a plugin family brings its own). Here: the dispatch, and the refusal of
PyTorch pickles, which no family reads.
"""

from __future__ import annotations

from pathlib import Path

from embedcache.checkpoints.base import Checkpoint
from embedcache.checkpoints.resolve import CONVERTED_FILE, HUB_CONFIG_FILE, HYPERPARAMS_FILE, PICKLE_FILE, SAFETENSORS_FILE, TORCH_PICKLE_FILE
from embedcache.errors import CheckpointError
from embedcache.families.base import registry

__all__ = ["read_directory"]


def read_directory(root: Path, name: str) -> Checkpoint:
    """Read whichever supported layout ``root`` holds (the first family layout that detects it)."""
    tensors = root / SAFETENSORS_FILE
    if (root / TORCH_PICKLE_FILE).is_file() and not tensors.is_file():
        raise CheckpointError(
            f"{root / TORCH_PICKLE_FILE} is a PyTorch pickle: loading it needs torch and can run "
            f"arbitrary code, so embedcache does not read it. Use the same model's {SAFETENSORS_FILE} "
            f"instead (the Hugging Face repository has it; in transformers, "
            f"`model.save_pretrained(dir, safe_serialization=True)` writes it) next to {HUB_CONFIG_FILE}."
        )
    for family in registry().values():
        for layout in family.layouts:
            if layout.detect(root):
                return layout.read(root, name)
    raise CheckpointError(
        f"{root} is not a checkpoint directory: it needs {HYPERPARAMS_FILE} and {PICKLE_FILE} "
        f"(the official JAX layout), {CONVERTED_FILE} (written by `embedcache convert`), or "
        f"{HUB_CONFIG_FILE} and {SAFETENSORS_FILE} (the Hugging Face layout of v1/v2 or NTv3)"
    )
