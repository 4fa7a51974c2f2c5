"""Reading sharded arrays so that damage is named and a concurrent commit cannot tear a read.

Zarr reads part of a shard in two requests, its index and then the inner chunks at the
index's offsets. A commit replaces the shard file (atomically) between the two, and the
second request reads the new file at the old offsets: a checksum mismatch on committed,
intact rows. Zarr also reads a missing shard or inner chunk as fill values, so damage
would read as zeros, or "not filled", or empty sequences.

Here each shard is fetched whole, in one request (one consistent version of the file),
its index and the CRC32C of every inner chunk needed are checked, and only then is it
decoded from memory: fixed-size values (fill masks, per-row numbers) by Blosc straight
into the result (:func:`decode_inner`), strings by Zarr. A missing or corrupted chunk
holding rows the caller needs raises :class:`~embedcache.errors.DamagedChunkError`
naming the array and rows.

Plain (unsharded) chunks, those of pooled embeddings and of the digest index, are one
object each: :func:`plain_blocks` fetches and checks them the same way and hands out views
of their bytes, with no decode by Zarr, so that a task's features are copied once;
:func:`stream_blocks` hands them out one at a time, so that memory holds one chunk.
"""

from __future__ import annotations

import asyncio
from typing import Callable

import google_crc32c
import numcodecs.blosc
import numpy as np
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from embedcache.errors import DamagedChunkError
from embedcache.store import shards as shard_codec

_EMPTY = np.uint64(2**64 - 1)  # the shard index's offset and length of an absent inner chunk


def is_sharded(arr: zarr.Array) -> bool:
    return type(arr.metadata.codecs[0]).__name__ == "ShardingCodec"


def _crc_ok(raw: np.ndarray) -> bool:
    return raw.size >= 4 and int(google_crc32c.value(raw[:-4])) == int(raw[-4:].view("<u4")[0])


def chunk_key(arr: zarr.Array, index: int) -> str:
    """Store key of the shard (or plain chunk) ``index`` along the row axis."""
    return f"{arr.store_path.path}/{arr.metadata.encode_chunk_key((index,) + (0,) * (arr.ndim - 1))}"


def fetch(arr: zarr.Array, indices, into: list | None = None) -> list:
    """Whole bytes of the shards ``indices`` (``None`` where absent), fetched concurrently.

    ``into``: one byte buffer (``None``: new memory) per index. A local store then reads
    the objects one after another in the caller's thread (``read_into`` of
    :class:`~.access._LocalStore`), which for data in the page cache costs less than
    Zarr's concurrent fetch (event-loop round trips, fresh memory); each entry is
    replaced by the buffer read into, to pass again for the next chunks.
    """
    store, proto = arr.store_path.store, default_buffer_prototype()
    keys = [chunk_key(arr, s) for s in indices]
    if into is not None and reads_into(store):
        raws = [store.read_into(k, b) for k, b in zip(keys, into)]
        into[:] = [b if r is None else (r if r.base is None else r.base) for r, b in zip(raws, into)]
        return raws

    async def get_all():
        return await asyncio.gather(*(store.get(k, prototype=proto) for k in keys))

    return [None if b is None else b.as_numpy_array() for b in sync(get_all())]


def reads_into(store) -> bool:
    """Whether ``store`` reads whole local objects into a caller's buffer (``read_into``)."""
    return getattr(store, "local", hasattr(store, "read_into"))


def is_plain(arr: zarr.Array) -> bool:
    """Whether ``arr`` is stored as plain little-endian numeric chunks with a CRC32C each."""
    codecs = [c.to_dict() for c in arr.metadata.codecs]
    return ([c["name"] for c in codecs] == ["bytes", "crc32c"] and arr.dtype.kind in "fiu"
            and codecs[0].get("configuration", {}).get("endian", "little") == "little")


def plain_blocks(arr: zarr.Array, indices, where, into: list | None = None) -> list[np.ndarray]:
    """The checked row blocks of plain chunks ``indices`` (along the row axis), as views.

    Zarr's decode copies every chunk twice more than needed, which triples the time of a
    bulk read; here each chunk is fetched once (concurrently), checked against its CRC32C
    and handed out as a view for the caller to copy straight where it belongs. ``where``
    is ``(store, group key, array name)`` for :class:`DamagedChunkError`; ``into`` as for
    :func:`fetch` (the blocks are then views of those buffers, until they are read into again).
    """
    step, row_shape = int(arr.metadata.chunk_grid.chunk_shape[0]), arr.shape[1:]
    size = step * int(np.prod(row_shape, dtype=np.int64)) * arr.dtype.itemsize + 4
    indices = [int(c) for c in indices]
    blocks = []
    # A committed group's view has checked each chunk whole against its manifest.
    checked = getattr(arr.store_path.store, "verified", False)
    for c, raw in zip(indices, fetch(arr, indices, into)):
        if raw is None or raw.size != size or not (checked or _crc_ok(raw)):
            what = "missing" if raw is None else "corrupted (checksum mismatch)"
            raise damaged_error(*where, c * step, min((c + 1) * step, arr.shape[0]), what, chunk_key(arr, c))
        # An edge chunk is stored full size; its padding past the array's end is no data.
        blocks.append(raw[:-4].view(arr.dtype).reshape(-1, *row_shape)[: arr.shape[0] - c * step])
    return blocks


# Bytes of plain chunks fetched at once from an object store: enough requests in flight
# to hide its latency, a bounded amount held however many chunks a read touches.
WINDOW_BYTES = 128 << 20


def stream_blocks(arr: zarr.Array, indices, where):
    """:func:`plain_blocks` of ``indices``, yielded as ``(index, block)``; each block is
    valid until the next one is asked for.

    A local store reads each chunk into the same buffer, in the caller's thread, to be
    checked and copied out while it is in the CPU's cache: a third of the cost of
    fetching them all concurrently into fresh memory. An object store fetches
    :data:`WINDOW_BYTES` of chunks at once. Either way the memory held is bounded, not
    every chunk a read touches (for a task scattered over a store, all of them).
    """
    indices = [int(c) for c in indices]
    window = 1
    if not reads_into(arr.store_path.store):
        chunk_bytes = int(arr.metadata.chunk_grid.chunk_shape[0]) * int(np.prod(arr.shape[1:])) * arr.dtype.itemsize
        window = max(1, WINDOW_BYTES // max(1, chunk_bytes))
    buffers = [None] * window
    for i in range(0, len(indices), window):
        part = indices[i:i + window]
        into = buffers[:len(part)]
        blocks = plain_blocks(arr, part, where, into)
        buffers[:len(part)] = into
        yield from zip(part, blocks)


def shard_index(arr: zarr.Array, raw: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """State of each inner chunk of one shard (0 sound, 1 absent, 2 corrupted), and its
    ``(offset, length)`` in ``raw``.

    An absent shard reads all absent; a shard whose index fails its checksum all corrupted.
    """
    codec = arr.metadata.codecs[0]
    n_inner = arr.metadata.chunk_grid.chunk_shape[0] // codec.chunk_shape[0]
    index = np.zeros((n_inner, 2), dtype=np.uint64)
    if raw is None:
        return np.ones(n_inner, dtype=np.int8), index
    index_bytes = n_inner * 16 + 4
    if raw.size < index_bytes or not _crc_ok(raw[-index_bytes:]):
        return np.full(n_inner, 2, dtype=np.int8), index
    index = raw[-index_bytes:-4].view("<u8").reshape(n_inner, 2)
    status = np.zeros(n_inner, dtype=np.int8)
    for i, (offset, length) in enumerate(index):
        if offset == _EMPTY:
            status[i] = 1
        elif offset + length > raw.size - index_bytes or not _crc_ok(raw[int(offset):int(offset + length)]):
            status[i] = 2
    return status, index


def decodes_here(arr: zarr.Array) -> bool:
    """Whether the inner chunks of a sharded ``arr`` hold fixed-size little-endian values
    through ``bytes``, ``blosc`` and ``crc32c``, as this version writes fill masks and
    per-row numbers: those are decoded by :func:`decode_inner`, not by Zarr.

    Zarr's decode costs about 7 ms per call whatever the chunk's size (an event-loop round
    trip and codec pipeline set-up), so a task's fill-mask check, one call per shard,
    grew with the number of shards its rows were spread over, that is with the store.
    """
    codecs = [c.to_dict() for c in arr.metadata.codecs[0].codecs]
    return ([c["name"] for c in codecs] == ["bytes", "blosc", "crc32c"] and arr.dtype.kind in "biuf"
            and (arr.dtype.itemsize == 1 or codecs[0].get("configuration", {}).get("endian") == "little"))


def decode_inner(raw: np.ndarray, offset, length, out: np.ndarray) -> bool:
    """Decode the inner chunk at ``raw[offset:offset + length]`` (its CRC32C already checked)
    into ``out``; ``False`` if it does not decode to exactly ``out``'s size (damage)."""
    payload = raw[int(offset):int(offset + length) - 4]
    # A Blosc frame's header holds the decoded size at bytes 4-7 (little endian).
    if payload.size < 16 or int(payload[4:8].view("<u4")[0]) != out.nbytes:
        return False
    try:
        numcodecs.blosc.decompress(payload, out)
    except (RuntimeError, ValueError):
        return False
    return True


def snapshot(arr: zarr.Array, raws: dict) -> zarr.Array:
    """A read-only copy of ``arr`` in memory holding the fetched chunks ``{index: bytes}``:
    Zarr decodes them with the array's own codecs, with no second request to the store."""
    from zarr.core.array import AsyncArray
    from zarr.storage import MemoryStore, StorePath

    proto = default_buffer_prototype()
    prefix = len(arr.store_path.path) + 1
    buffers = {chunk_key(arr, s)[prefix:]: proto.buffer.from_bytes(raw.tobytes()) for s, raw in raws.items()}
    # The array's own metadata object: no JSON round trip per read.
    return zarr.Array(AsyncArray(metadata=arr.metadata, store_path=StorePath(MemoryStore(buffers, read_only=True))))


def units(arr: zarr.Array, n_rows: int):
    """Every chunk (inner chunk, in a shard) of the first ``n_rows`` rows, with its state.

    Yields ``(lo, hi, values, state)``: ``state`` is ``"ok"`` (``values`` decoded),
    ``"absent"`` (never written: fill values, or damage if rows needed it), ``"missing"``
    (written, now lost), ``"corrupted"`` or ``"foreign"`` (not the chunk the commit
    wrote); ``values`` is ``None`` unless ``"ok"``. Each shard is fetched once.
    """
    step = int(arr.metadata.chunk_grid.chunk_shape[0])
    for s in range(-(-n_rows // step)):
        yield from shard_units(arr, s, min((s + 1) * step, n_rows))


def shard_units(arr: zarr.Array, s: int, hi_rows: int):
    """:func:`units` of shard (or plain chunk) ``s``, up to row ``hi_rows``."""
    step = int(arr.metadata.chunk_grid.chunk_shape[0])
    sharded = is_sharded(arr)
    inner = int(arr.metadata.codecs[0].chunk_shape[0]) if sharded else step
    here = sharded and decodes_here(arr)
    strings = sharded and not here and shard_codec.handles_strings(arr.metadata.to_dict())
    try:
        (raw,) = fetch(arr, [s], [None])
    except DamagedChunkError as exc:  # the manifest's view: lost, or not the chunk committed
        state = "missing" if exc.what == "missing" else "foreign"
        for lo in range(s * step, hi_rows, inner):
            yield lo, min(lo + inner, hi_rows), None, state
        return
    status, index = shard_index(arr, raw) if sharded else (np.array([1 if raw is None else 0], dtype=np.int8), None)
    snap = whole = None
    if not sharded and raw is not None and is_plain(arr) and getattr(arr.store_path.store, "verified", False):
        whole = raw[:-4].view(arr.dtype).reshape(-1, *arr.shape[1:])  # checked whole by the view: the values
    elif not (here or strings) and raw is not None and not status.any():
        # Every inner chunk sound: one decode by Zarr for the shard (each costs a round trip).
        snap = snapshot(arr, {s: raw})
        try:
            whole = snap[s * step:hi_rows]
        except Exception:  # noqa: BLE001 - found again chunk by chunk below
            whole = None
    for i, lo in enumerate(range(s * step, hi_rows, inner)):
        hi = min(lo + inner, hi_rows)
        if status[i] == 0 and here:
            values = np.empty((inner, *arr.shape[1:]), dtype=arr.dtype)
            if decode_inner(raw, *index[i], values):
                yield lo, hi, values[: hi - lo], "ok"
                continue
            status[i] = 2
        elif status[i] == 0 and strings:
            values = shard_codec.decode_strings(raw, *index[i], inner)
            if values is not None:
                yield lo, hi, values[: hi - lo], "ok"
                continue
            status[i] = 2
        elif status[i] == 0 and whole is not None:
            yield lo, hi, whole[lo - s * step:hi - s * step], "ok"
            continue
        elif status[i] == 0:
            snap = snap or snapshot(arr, {s: raw})
            try:
                values = snap[lo:hi]
            except Exception:  # noqa: BLE001 - a plain chunk failing to decode is damage
                status[i] = 2
            else:
                yield lo, hi, values, "ok"
                continue
        yield lo, hi, None, ("absent" if status[i] == 1 else "corrupted")


def damaged_error(store, key: str, name: str, lo: int, hi: int, what: str, chunk: str) -> DamagedChunkError:
    return DamagedChunkError(store=str(store), array=f"{key}/{name}", rows=(lo, hi - 1), what=what, chunk=chunk)


def read_rows(arr: zarr.Array, rows: np.ndarray, *, store, key: str, name: str,
              needed: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``arr[rows]`` (any order, repeats allowed) of a sharded array, checked as the module says.

    ``needed(rows)`` tells which of ``rows`` must hold stored values: an absent chunk whose
    rows are all not needed reads as fill values (an array added after those rows were
    committed, for instance); any other damage raises :class:`DamagedChunkError`.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if getattr(arr.store_path.store, "verified", False):
        # Chunks checked whole against a manifest: what it does not list (or a shard it
        # lists lacks) was never written, fill values as committed; damage raises in the fetch.
        needed = _nothing_needed
    strings = not decodes_here(arr) and shard_codec.handles_strings(arr.metadata.to_dict())
    if not decodes_here(arr) and not strings:
        unique, inverse = unique_rows(rows)
        return _read_rows_zarr(arr, unique, store=store, key=key, name=name, needed=needed)[inverse]
    inner_shape = tuple(int(n) for n in arr.metadata.codecs[0].chunk_shape)
    inner, per_shard = inner_shape[0], int(arr.metadata.chunk_grid.chunk_shape[0]) // inner_shape[0]
    if rows.size == 0:
        return np.empty((0, *arr.shape[1:]), dtype=arr.dtype)
    chunk_of = rows // inner
    n_chunks = -(-arr.shape[0] // inner)
    if n_chunks <= 4 * rows.size:
        # A task's rows: the inner chunks touched found by counting, never by a sort.
        touched = np.flatnonzero(np.bincount(chunk_of, minlength=n_chunks))
        slot = np.zeros(n_chunks, dtype=np.int64)
        slot[touched] = np.arange(touched.size)
        slot = slot[chunk_of]
    else:  # a few rows (an attention map): no table over the whole array
        touched, slot = np.unique(chunk_of, return_inverse=True)
    blocks = np.empty((touched.size, *inner_shape), dtype=object if strings else arr.dtype)
    shard_of = touched // per_shard
    shards = np.unique(shard_of).tolist()
    for s, raw in zip(shards, fetch(arr, shards, [None] * len(shards))):
        status, index = shard_index(arr, raw)
        for k in np.flatnonzero(shard_of == s).tolist():
            c = int(touched[k])
            i = c - s * per_shard
            if status[i] == 0 and strings:
                values = shard_codec.decode_strings(raw, *index[i], inner)
                if values is not None:
                    blocks[k] = values
                    continue
                status[i] = 3
            elif status[i] == 0 and decode_inner(raw, *index[i], blocks[k]):
                continue
            if status[i] == 1 and not np.asarray(needed(rows[chunk_of == c])).any():
                blocks[k] = arr.metadata.fill_value
                continue
            what = {1: "missing", 2: "corrupted (checksum mismatch)"}.get(int(status[i]), "corrupted (does not decode)")
            lo, hi = c * inner, min((c + 1) * inner, arr.shape[0])
            if raw is None:  # the whole shard file is lost: name all its rows
                lo, hi = s * per_shard * inner, min((s + 1) * per_shard * inner, arr.shape[0])
            raise damaged_error(store, key, name, lo, hi, what, chunk_key(arr, s))
    out = blocks[slot.reshape(-1), rows - chunk_of * inner]
    return out.astype(arr.dtype) if strings else out


def _nothing_needed(rows: np.ndarray) -> np.ndarray:
    return np.zeros(len(rows), dtype=bool)


def _read_rows_zarr(arr: zarr.Array, rows: np.ndarray, *, store, key: str, name: str,
                    needed: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """:func:`read_rows` (rows sorted, unique) of an array whose chunks Zarr decodes
    (variable-length strings): whole shards fetched and checked here, decoded from memory."""
    step = int(arr.metadata.chunk_grid.chunk_shape[0])
    inner = int(arr.metadata.codecs[0].chunk_shape[0])
    shards = np.unique(rows // step).tolist()
    out = np.empty((rows.size, *arr.shape[1:]), dtype=arr.dtype)
    if rows.size == 0:
        return out
    mem = {}
    plan = []  # (shard, inner chunks to decode as runs)
    for s, raw in zip(shards, fetch(arr, shards)):
        status = shard_index(arr, raw)[0]
        in_shard = rows[(rows >= s * step) & (rows < (s + 1) * step)]
        touched = np.unique((in_shard - s * step) // inner)
        for i in touched.tolist():
            if status[i] == 0:
                continue
            lo = s * step + i * inner
            hi = min(lo + inner, arr.shape[0])
            mine = in_shard[(in_shard >= lo) & (in_shard < hi)]
            if status[i] == 2 or np.asarray(needed(mine)).any():
                what = "missing" if status[i] == 1 else "corrupted (checksum mismatch)"
                if raw is None:  # the whole shard file is lost: name all its rows
                    lo, hi = s * step, min((s + 1) * step, arr.shape[0])
                raise damaged_error(store, key, name, lo, hi, what, chunk_key(arr, s))
        if raw is not None:
            mem[s] = raw
        plan.append((s, touched))
    snap = snapshot(arr, mem)
    for s, touched in plan:
        # Contiguous runs of touched inner chunks, one decode each.
        breaks = np.flatnonzero(np.diff(touched) != 1) + 1
        for run in np.split(touched, breaks):
            lo = s * step + int(run[0]) * inner
            hi = min(s * step + (int(run[-1]) + 1) * inner, arr.shape[0])
            sel = (rows >= lo) & (rows < hi)
            block = snap[lo:hi]
            out[sel] = block[rows[sel] - lo]
    return out


def unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(rows, return_inverse=True)``; for a dense request (a task's rows span
    little more than their number) by marking a bitmap of the span, not by sorting."""
    if rows.size == 0:
        return rows, rows
    lo, hi = int(rows.min()), int(rows.max()) + 1
    if hi - lo > 4 * rows.size:
        unique, inverse = np.unique(rows, return_inverse=True)
        return unique, inverse.reshape(-1)
    seen = np.zeros(hi - lo, dtype=bool)
    seen[rows - lo] = True
    rank = np.cumsum(seen) - 1
    return np.flatnonzero(seen) + lo, rank[rows - lo]


__all__ = ["is_sharded", "is_plain", "plain_blocks", "stream_blocks", "read_rows", "snapshot", "units", "shard_units",
           "shard_index", "decodes_here", "decode_inner", "fetch", "chunk_key", "damaged_error", "unique_rows"]
