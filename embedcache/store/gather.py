"""Rows of an array gathered in any order (repeats allowed), each chunk read once.

The pooled embeddings of a task are most of what a read costs: their plain chunks are
streamed through :func:`~.chunks.stream_blocks` (checked, one at a time locally) and
copied once, as slices where the task's rows run consecutively; any other layout goes
through Zarr's codecs.
"""

from __future__ import annotations

import numpy as np
import zarr

from embedcache.store import chunks as checked_chunks

__all__ = ["gather", "gather_plain"]


def gather(arr: zarr.Array, rows: np.ndarray, where=None) -> np.ndarray:
    """``arr[rows]`` for rows in any order, reading each needed chunk once.

    The layout this version writes for pooled rows (plain chunks, ``bytes`` + ``crc32c``)
    is read by :func:`gather_plain`; any other layout goes through Zarr's codecs.

    A dense request (a task's features) reads the span it covers as one slice and
    gathers in memory; a sparse one reads only the chunks it touches.
    """
    if checked_chunks.is_plain(arr):
        return gather_plain(arr, rows, where or ("the cache", *arr.store_path.path.rsplit("/", 1)))
    lo, hi = int(rows.min()), int(rows.max()) + 1
    if rows.size == hi - lo and (np.diff(rows) == 1).all():
        return arr[lo:hi]
    unique, inverse = np.unique(rows, return_inverse=True)
    if hi - lo <= 2 * unique.size:
        return arr[lo:hi][rows - lo]
    values = arr.get_orthogonal_selection((unique,) + (slice(None),) * (arr.ndim - 1))
    return values[inverse]


def gather_plain(arr: zarr.Array, rows: np.ndarray, where) -> np.ndarray:
    """Rows of a plain checksummed array (:func:`~.chunks.plain_blocks`), each value copied once.

    Chunks are streamed (:func:`~.chunks.stream_blocks`): beside the result, memory
    holds one chunk (a window of them, from an object store), not every chunk touched.
    """
    step = int(arr.metadata.chunk_grid.chunk_shape[0])
    chunk_of = rows // step
    out = np.empty((rows.size, *arr.shape[1:]), dtype=arr.dtype)
    # A task read back in the order it was built is a few runs of consecutive rows: those
    # are copied as slices (memcpy), not gathered row by row through a temporary.
    breaks = np.flatnonzero((np.diff(rows) != 1) | (np.diff(chunk_of) != 0)) + 1
    copies: dict[int, list] = {}
    if breaks.size * 16 <= rows.size:
        starts, ends = [0, *breaks.tolist()], [*breaks.tolist(), rows.size]
        for a, b, c, r in zip(starts, ends, chunk_of[starts].tolist(), rows[starts].tolist()):
            copies.setdefault(c, []).append((slice(a, b), slice(r - c * step, r - c * step + b - a)))
    else:
        order = np.argsort(chunk_of, kind="stable")
        for positions in np.split(order, np.flatnonzero(np.diff(chunk_of[order])) + 1):
            c = int(chunk_of[positions[0]])
            copies[c] = [(positions, rows[positions] - c * step)]
    for c, block in checked_chunks.stream_blocks(arr, sorted(copies), where):
        for to, at in copies[c]:
            out[to] = block[at] if isinstance(at, slice) else np.take(block, at, axis=0)
    return out
