"""Reading a joblib parameter pickle without running code.

Loading a pickle runs whatever code the pickle names. The joblib file is therefore read by
a restricted unpickler that admits only NumPy arrays and plain containers and raises
:class:`~embedcache.errors.UnsafeCheckpointError` on anything else before it runs.
"""

from __future__ import annotations

import collections
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from joblib.numpy_pickle import NumpyArrayWrapper, NumpyUnpickler

from embedcache.errors import CheckpointError, UnsafeCheckpointError

__all__ = ["read_pickle"]


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


def read_pickle(path: Path) -> Any:
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
