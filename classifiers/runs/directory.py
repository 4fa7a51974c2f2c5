"""The run directory on disk: its file names, staging into place, and small file helpers.

Every directory is written into a temporary sibling and moved into place when complete, so
a failure leaves nothing half-written, and an existing non-empty directory is replaced only
with ``force=True``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Mapping
from contextlib import contextmanager
from os import PathLike
from pathlib import Path

import numpy as np

from classifiers.runs.pause import pause_point
from embedcache.errors import InputError
from embedcache.util.atomic import replace_directory

METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.csv"
MODEL_DIR = "model"
PLOTS_DIR = "plots"
REPORT_FILE = "report.html"
TRAIN_DIGESTS_FILE = "train_sequences.sha256"
SWEEP_FILE = "sweep.csv"


@contextmanager
def staged(out: str | PathLike, force: bool):
    """A staging directory that becomes ``out`` when the block completes, and vanishes if not.

    An exception (or Ctrl-C) leaving the block carries ``run_dir`` (``out``) and
    ``run_written`` (whether ``out`` was completely written before it), so the command line
    can say what is on disk; an interrupted or failed run leaves nothing, not even the parent
    directories it created, and a run it was to replace is unchanged.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a directory.")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise InputError(f"{out} exists and is not empty; pass --force to replace it, or choose "
                         "another --out.")
    created = [p for p in (out.parent, *out.parent.parents) if not p.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    written = False
    try:
        yield staging
        with _interrupts_deferred():
            pause_point("run:moving")
            replace_directory(staging, out)
            written = True
    except BaseException as exc:
        if not written:
            shutil.rmtree(staging, ignore_errors=True)
            for directory in created:  # deepest first
                try:
                    directory.rmdir()
                except OSError:
                    break
        if not hasattr(exc, "run_dir"):
            exc.run_dir, exc.run_written = out, written
        raise


@contextmanager
def _interrupts_deferred():
    """Hold SIGINT and SIGTERM back while the run is moved into place: replacing a run takes
    two renames, and a Ctrl-C between them would leave neither run at ``out``. A signal that
    arrives meanwhile is noted and raised again when the block ends, to the handler that was
    there before. (Python handlers run in the main thread only; elsewhere nothing is held.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    held = {s: signal.signal(s, lambda signum, frame: pending.append(signum))
            for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in held.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        for s in dict.fromkeys(pending):
            signal.raise_signal(s)


def file_record(path, rows: int) -> dict:
    return {"path": str(path), "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
            "rows": int(rows)}


def stem(path) -> str:
    """A task file's name without its format suffixes (``other.csv.gz`` -> ``other``)."""
    from embedcache.sequences.readers import READERS
    from embedcache.util.formats import format_stem

    return format_stem(path, {r.name: r.extensions for r in READERS.values()})


def jsonable(value):
    """``value`` with NumPy types as Python ones and non-finite floats as None."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n")


class Clock:
    """Wall-clock seconds per stage, recorded in the provenance."""

    def __init__(self):
        self._t = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._t, 3)
        self._t = now
