"""Reading the files checkpoints are made of (JSON, safetensors) into checked float32 arrays."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from embedcache.errors import CheckpointError

__all__ = ["check_repeats", "float_array", "read_json", "read_safetensors", "safetensors_keys"]


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path} ({exc}); it must be {what}") from exc


def float_array(value: Any, what: str, source) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
        kind = getattr(value, "dtype", type(value).__name__)
        raise CheckpointError(f"{source}: parameter {what} is {kind}, not a floating-point array")
    array = np.ascontiguousarray(value, dtype=np.float32)
    # A NaN or infinite weight makes every embedding NaN: refused here, naming the tensor,
    # rather than found by `verify` after a whole build has stored it.
    finite = np.isfinite(array)
    if not finite.all():
        bad = array.size - int(np.count_nonzero(finite))
        raise CheckpointError(
            f"{source}: parameter {what} holds NaN or infinity ({bad} of its {array.size} values); the "
            "checkpoint is damaged. Download it again (or convert it again from an intact copy)."
        )
    return array


def check_repeats(source, hyperparams: dict, key: str, found: set[int], what: str) -> None:
    """Refuse a configuration whose ``key`` (a count of layers or blocks) differs from the number of
    ``what`` the weights hold, numbered ``0..found-1``, before any shape is derived from it: a
    configuration claiming a billion layers must not make a billion of anything."""
    claimed = hyperparams.get(key)
    if found != set(range(len(found))) or claimed != len(found):
        held = f"{len(found)} ({what} {min(found)}..{max(found)})" if found else "none"
        raise CheckpointError(
            f"{source}: the configuration says {key} {claimed!r}, but the weights hold {held}. The "
            "weights and the configuration file must come from the same model; fetch both again."
        )


def safetensors_keys(path: Path) -> list[str]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            return list(f.keys())
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc}); download it again") from exc


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        raise CheckpointError(
            f"{path} cannot be read as float arrays ({type(exc).__name__}: {exc}); download it again"
        ) from exc
