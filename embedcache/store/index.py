"""The persisted digest index: sequence digests to row numbers at the cost of the task.

Each row's key is the first 16 bytes of its sha256 as two big-endian uint64 words (the
chance that two of a billion sequences share them is about 1e-21). The index is a list
of *runs*: run ``[a, b)`` is an array ``index/run_a_b`` of shape ``(b - a, 3)`` holding
the keys of rows ``a..b-1`` and their row numbers, sorted by key. A commit writes the run
of its new rows, then merges runs the way a binary counter carries (while the run
before is no larger than the new one), so there are at most log2(rows) runs and each
row is rewritten O(log rows) times over the store's life. The list of runs is committed
in the group's attributes together with ``n_rows``.

A lookup searches each run with ``np.searchsorted``. Each run records the first key of
every chunk (its *fences*), so only the chunks that can hold the task's keys are read,
one at a time: time follows the task, bounded by the index's 24 bytes per stored row,
and memory holds one chunk beside the task's keys.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Callable

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec

from embedcache.store import chunks as checked_chunks
from embedcache.store.layout import INDEX_GROUP, encoding_attrs

# Plain chunks of 16384 entries (384 KiB, one object each): Zarr's sharding codec would
# slow the bulk reads of a dense task, and a sparse one reads a few chunks.
INDEX_CHUNK = 16384
_SHA256 = hashlib.sha256()  # never updated: only copied


def keys_of_sequences(sequences) -> np.ndarray:
    """(n, 2) uint64 keys of normalized sequences."""
    # For a task of short sequences hashing is the largest part of a lookup. Copying one
    # fresh hash object costs about 10% less than creating one per sequence (OpenSSL 3
    # looks the algorithm up at each creation).
    copy, digests = _SHA256.copy, []
    append = digests.append
    for data in map(str.encode, sequences):
        h = copy()
        h.update(data)
        append(h.digest())
    raw = b"".join(digests)
    return np.frombuffer(raw, dtype=">u8").reshape(-1, 4)[:, :2].astype(np.uint64)


def keys_of_hex(digests) -> np.ndarray:
    """(n, 2) uint64 keys of hex sha256 digests."""
    raw = bytes.fromhex("".join(str(d)[:32] for d in digests))
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(-1, 2)


def run_name(a: int, b: int) -> str:
    return f"run_{int(a)}_{int(b)}"


def sorted_run(keys: np.ndarray, rows: np.ndarray) -> np.ndarray:
    order = np.argsort(keys[:, 0], kind="stable")
    return np.column_stack([keys[order], rows[order].astype(np.uint64)])


def run_path(a: int, b: int) -> str:
    """The array name of run ``[a, b)`` in its group."""
    return f"{INDEX_GROUP}/{run_name(a, b)}"


@functools.cache
def _run_meta() -> str:
    """Zarr metadata of a run (shape and attributes to fill in), made by Zarr once."""
    from zarr.storage import MemoryStore

    mem = MemoryStore()
    zarr.create_array(mem, name="r", shape=(1, 3), dtype="uint64", chunks=(INDEX_CHUNK, 3),
                      compressors=(Crc32cCodec(),), fill_value=0, dimension_names=("entry", "field"),
                      zarr_format=3)
    return mem._store_dict["r/zarr.json"].to_bytes().decode()


def add_run(writer, a: int, b: int, entries: np.ndarray) -> None:
    """Add run ``[a, b)`` (already sorted), with its fences, to the commit ``writer`` builds."""
    fences = [int(x) for x in entries[::INDEX_CHUNK, 0]]
    meta = json.loads(_run_meta())
    meta["shape"] = list(entries.shape)
    meta["attributes"] = encoding_attrs(kind="index", rows=[a, b], fences=fences)
    writer.target.arrays[run_path(a, b)] = {"meta": meta, "chunks": {}}
    writer.write(run_path(a, b), np.arange(len(entries)), entries)


def read_run(group, a: int, b: int) -> np.ndarray:
    """The entries of run ``[a, b)`` of a committed snapshot (a :class:`~.read.ModelGroup`),
    each chunk checked against the manifest (:class:`~.view.GroupView`)."""
    name = run_path(a, b)
    meta = group.manifest.arrays[name]["meta"]
    n = int(meta["shape"][0])
    if [c["name"] for c in meta["codecs"]] != ["bytes", "crc32c"] or meta["data_type"] != "uint64":
        return np.asarray(group._open(name)[...])  # not laid out by this version: Zarr reads it
    out = np.zeros((n, 3), dtype=np.uint64)
    for c in range(-(-n // INDEX_CHUNK)):
        raw = group.view.chunk(name, c)
        if raw is None:
            continue  # never written: fill values
        rows = raw[:-4].view("<u8").reshape(-1, 3)[: n - c * INDEX_CHUNK]
        out[c * INDEX_CHUNK:c * INDEX_CHUNK + len(rows)] = rows
    return out


def merge_runs(parts: list) -> np.ndarray:
    """Sorted runs merged into one, in about linear time: a stable sort of their
    concatenation by the first key word finds the runs already sorted (Timsort). Keys
    sharing a first word stay adjacent, which is all a search needs."""
    stacked = np.concatenate(parts)
    return stacked[np.argsort(stacked[:, 0], kind="stable")]


#: Entries a commit merges under the lock at most; larger merges are compactions, done
#: after it (:mod:`.compact`): a merge grows with the store, the lock must not.
MERGE_UNDER_LOCK = 1 << 18


def plan_merge(runs: list, new: list, most: int | None = None) -> tuple[list, list]:
    """Runs after adding ``new``: ``(final runs, list of runs merged into the last one)``,
    merging no more than ``most`` entries into one."""
    runs = [list(r) for r in runs] + [list(new)]
    merged = [list(new)]
    while len(runs) >= 2 and runs[-2][1] - runs[-2][0] <= 2 * (runs[-1][1] - runs[-1][0]) \
            and (most is None or runs[-1][1] - runs[-2][0] <= most):
        prev = runs.pop(-2)
        merged.insert(0, prev)
        runs[-1] = [prev[0], runs[-1][1]]
    return runs, merged


def next_compaction(runs: list, least: int = 0) -> int | None:
    """Index ``i`` of the newest adjacent pair of runs ``i, i + 1`` to merge (the earlier no
    larger than twice the later, as :func:`plan_merge` would have), holding over ``least``
    entries together; ``None`` if there is none."""
    for i in range(len(runs) - 2, -1, -1):
        (a, b), (c, d) = runs[i], runs[i + 1]
        if b - a <= 2 * (d - c) and d - a > least:
            return i
    return None


def lookup(open_array: Callable[[str], zarr.Array], runs: list, keys: np.ndarray, where=None) -> np.ndarray:
    """Row of each key (``-1`` where absent), searching every committed run.

    ``open_array`` opens an array of the model group by its path (``KeyError`` if
    absent); ``where`` is ``(store, group key)``, to name damage.
    """
    out = np.full(len(keys), -1, dtype=np.int64)
    if not len(keys) or not runs:
        return out
    # Searching keys in sorted order keeps the binary searches in cache: in random order
    # they cost several times more on a large run.
    order = np.argsort(keys[:, 0])
    keys = keys[order]
    found = np.full(len(keys), -1, dtype=np.int64)
    for a, b in runs:
        todo = np.flatnonzero(found < 0)
        if not todo.size:
            break
        name = run_path(a, b)
        found[todo] = _search_run(open_array(name), keys[todo], (*(where or ("the cache", "")), name))
    out[order] = found
    return out


def _search_run(arr: zarr.Array, keys: np.ndarray, where) -> np.ndarray:
    """Rows of ``keys`` (sorted by first word) in one run, reading only the chunks that
    may hold them, one at a time (:func:`~.chunks.stream_blocks`)."""
    if arr.shape[0] == 0:  # a run of rows a repair dropped, all of them
        return np.full(len(keys), -1, dtype=np.int64)
    if not checked_chunks.is_plain(arr):  # not laid out by this version: Zarr reads it
        return search(np.asarray(arr[...]), keys)
    fences = np.asarray(arr.attrs["fences"], dtype=np.uint64)
    # Keys whose first word equals a chunk's first may also sit at the end of the chunk
    # before: a key is searched in chunks first..last (the same chunk, about always).
    first = (np.searchsorted(fences, keys[:, 0], side="left") - 1).clip(0)
    last = (np.searchsorted(fences, keys[:, 0], side="right") - 1).clip(0)
    found = np.full(len(keys), -1, dtype=np.int64)
    # Which chunks are touched, by counting (``np.unique`` would sort or hash the task).
    chunks = np.flatnonzero(np.bincount(first, minlength=fences.size) + np.bincount(last, minlength=fences.size))
    for c, block in checked_chunks.stream_blocks(arr, chunks, where):
        # first and last are sorted like the keys: the keys of chunk c are one slice.
        lo, hi = np.searchsorted(last, c, side="left"), np.searchsorted(first, c, side="right")
        todo = lo + np.flatnonzero(found[lo:hi] < 0)
        found[todo] = search(block, keys[todo])
    return found


def search(entries: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Row of each (n, 2) key in ``entries`` (a run's ``(key, key, row)`` rows sorted by
    first word), ``-1`` where absent."""
    out = np.full(len(keys), -1, dtype=np.int64)
    if not len(entries):
        return out
    first = np.ascontiguousarray(entries[:, 0])
    pos = np.searchsorted(first, keys[:, 0], side="left")
    inside = pos < len(entries)
    p = pos[inside]
    same_hi = np.zeros(len(keys), dtype=bool)
    same_hi[inside] = first[p] == keys[inside, 0]
    hit = same_hi.copy()
    hit[inside] &= entries[p, 1] == keys[inside, 1]
    out[hit] = entries[pos[hit], 2].astype(np.int64)
    # Keys sharing their first word with another (about never) are resolved one by one.
    for i in np.flatnonzero(same_hi & ~hit):
        j = int(pos[i])
        while j < len(entries) and entries[j, 0] == keys[i, 0]:
            if entries[j, 1] == keys[i, 1]:
                out[i] = int(entries[j, 2])
                break
            j += 1
    return out
