"""The rows a commit appends: laid out before the commit lock, placed at the end under it.

Everything about a batch of new rows that does not depend on where it lands (the values
stacked and cast per array, the per-row columns, the digest keys sorted for the index)
is computed by :func:`prepare` while other writers may hold the lock. Under the lock
:func:`place` only writes those columns at the group's committed end and merges the index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embedcache.store import index
from embedcache.store.layout import INDEX_GROUP, is_data_name, mask_name

__all__ = ["Batch", "prepare", "place"]


@dataclass
class Batch:
    """New rows as columns. ``rows`` are the queued entries (digest, sequence, n_tokens,
    n_windows, {name: value}); ``data`` maps an array to ``(offsets, values)``: which of
    the rows hold it, and their values stacked in the store's dtype."""

    rows: list
    columns: dict
    data: dict
    keys: np.ndarray  # (n, 2) digest keys sorted by first word
    order: np.ndarray  # offsets of the rows in that order


def prepare(new: list, dtype) -> Batch:
    """Lay out the new rows ``new`` (see :class:`Batch`) for arrays stored as ``dtype``."""
    digests = [row[0] for row in new]
    columns = {
        "digest": np.array(digests, dtype=object),
        "sequence": np.array([row[1] for row in new], dtype=object),
        "length": np.fromiter((len(row[1]) for row in new), dtype=np.int64, count=len(new)),
        "n_tokens": np.fromiter((row[2] for row in new), dtype=np.int32, count=len(new)),
        "n_windows": np.fromiter((row[3] for row in new), dtype=np.int32, count=len(new)),
    }
    names = {name for row in new for name in row[4]}
    data = {}
    for name in names:
        offsets = np.fromiter((i for i, row in enumerate(new) if name in row[4]), dtype=np.int64)
        values = np.stack([new[i][4][name] for i in offsets.tolist()]).astype(dtype, copy=False)
        data[name] = (offsets, values)
    keys = index.keys_of_hex(digests)
    order = np.argsort(keys[:, 0], kind="stable")
    return Batch(new, columns, data, keys[order], order)


def place(writer, now, batch: Batch, written: dict) -> None:
    """Write ``batch`` at the end of ``now`` (the committed snapshot) into the commit
    ``writer`` (a :class:`~.cow.ChunkWriter`) builds; count values per array in ``written``."""
    target = writer.target
    lo, b = now.n_rows, len(batch.rows)
    hi = lo + b
    target.n_rows = hi
    # Every array grows together, so the group stays one rectangular dataset.
    for name, entry in target.arrays.items():
        if not name.startswith(f"{INDEX_GROUP}/"):
            entry["meta"]["shape"] = [hi, *entry["meta"]["shape"][1:]]
    for name in [n for n in target.arrays if is_data_name(n)]:
        if name not in batch.data:
            continue  # past the committed rows the mask reads "not filled" already
        offsets, values = batch.data[name]
        writer.write(name, offsets + lo, values)
        writer.write(mask_name(name), offsets + lo, True)
        written[name] = written.get(name, 0) + len(offsets)
    rows = np.arange(lo, hi)
    for name, column in batch.columns.items():
        writer.write(name, rows, column)
    entries = np.column_stack([batch.keys, (batch.order + lo).astype(np.uint64)])
    final, merged = index.plan_merge(now.runs, [lo, hi], most=index.MERGE_UNDER_LOCK)
    if len(merged) > 1:
        entries = index.merge_runs([index.read_run(now, a, b) for a, b in merged[:-1]] + [entries])
        for a, b in merged[:-1]:
            writer.remove_array(index.run_path(a, b))
    a, b = final[-1]
    index.add_run(writer, a, b, entries)
    target.runs = [list(r) for r in final]
