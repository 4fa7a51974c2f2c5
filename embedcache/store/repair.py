"""Repair: rows whose stored values are lost become "not filled", so a build recomputes them.

``verify`` finds the damage; here, under the commit lock, every chunk (inner chunk of a
shard) that is missing or unreadable is rewritten without the damaged rows (the rest of
its shard is kept), and the fill mask of each damaged data array is cleared for exactly
those rows. A damaged fill mask is rewritten the same way: its lost rows read "not
filled". The next ``embedcache build`` of the same inputs then recomputes only them.

Damage to what identifies rows (digests, sequences, the index) cannot be undone this
way: it is reported as not repaired, and the way out is a new cache.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import zarr
from zarr.core.sync import sync

from embedcache.store import chunks
from embedcache.store.layout import is_data_name, mask_name
from embedcache.store.lock import commit_lock
from embedcache.store.verify import Problem, verify_store


@dataclass
class RepairReport:
    """What ``verify --repair`` did.

    Attributes
    ----------
    unfilled : dict
        ``"key/array"`` to the number of rows marked not filled (to recompute).
    rewritten : list of str
        Store keys of the chunks rewritten without their damaged rows.
    unrepaired : list of Problem
        Problems this cannot repair (rows' identity lost, missing arrays...).
    """

    unfilled: dict = field(default_factory=dict)
    rewritten: list = field(default_factory=list)
    unrepaired: list = field(default_factory=list)


def repair_store(store, *, timeout: float = 600.0) -> RepairReport:
    """Repair what :func:`~embedcache.store.verify.verify_store` finds, as the module says."""
    report = RepairReport()
    with commit_lock(store, timeout):
        by_key = defaultdict(list)
        for p in verify_store(store, max_problems_per_array=1 << 30):
            by_key[p.key].append(p)
        for key, problems in by_key.items():
            _repair_group(store, key, problems, report)
    return report


def _repair_group(store, key: str, problems: list[Problem], report: RepairReport) -> None:
    lost = defaultdict(set)  # data array -> rows to mark not filled
    # Masks first: clearing a data array's rows rewrites its mask, which must be readable.
    for p in sorted(problems, key=lambda p: not p.array.startswith("has_")):
        name = p.array[4:] if p.array.startswith("has_") else p.array
        if not (p.damage and is_data_name(name) and p.rows):
            report.unrepaired.append(p)
            continue
        rows = np.asarray(p.rows, dtype=np.int64)
        if p.damage != "nonfinite":
            report.rewritten += _rewrite_without(store, key, p.array, rows)
        lost[name].update(rows.tolist())
    if not lost:
        return
    from embedcache.store.write import _set_rows

    g = store.zgroup(key, "r+")
    for name, rows in lost.items():
        rows = np.array(sorted(rows), dtype=np.int64)
        _set_rows(g[mask_name(name)], rows, np.zeros(rows.size, dtype=bool))
        report.unfilled[f"{key}/{name}"] = report.unfilled.get(f"{key}/{name}", 0) + rows.size


def _rewrite_without(store, key: str, name: str, rows: np.ndarray) -> list[str]:
    """Rewrite each chunk holding ``rows`` with fill values there, keeping its sound rows."""
    arr = store.zgroup(key)[name]
    step = int(arr.metadata.chunk_grid.chunk_shape[0])
    done = []
    for s in np.unique(rows // step).tolist():
        lo0, hi0 = s * step, min((s + 1) * step, arr.shape[0])
        block = np.full((hi0 - lo0, *arr.shape[1:]), arr.fill_value, dtype=arr.dtype)
        for lo, hi, values, state in chunks.shard_units(arr, s, hi0):
            if state == "ok":
                block[lo - lo0:hi - lo0] = values
        block[rows[(rows >= lo0) & (rows < hi0)] - lo0] = arr.fill_value
        chunk = chunks.chunk_key(arr, s)
        sync(store.zstore.delete(chunk))
        with zarr.config.set({"array.write_empty_chunks": True}):
            store.zgroup(key, "r+")[name][lo0:hi0] = block
        done.append(chunk)
    return done


__all__ = ["RepairReport", "repair_store"]
