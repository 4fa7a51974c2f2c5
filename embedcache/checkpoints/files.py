"""Reading the files checkpoints are made of (JSON, safetensors) into checked float32 arrays."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from embedcache.errors import CheckpointError

__all__ = ["float_array", "read_json", "read_safetensors", "safetensors_keys"]


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path} ({exc}); it must be {what}") from exc


def float_array(value: Any, what: str, source) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
        kind = getattr(value, "dtype", type(value).__name__)
        raise CheckpointError(f"{source}: parameter {what} is {kind}, not a floating-point array")
    return np.ascontiguousarray(value, dtype=np.float32)


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
