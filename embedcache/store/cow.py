"""Copy-on-write chunk writes: a commit's chunks go to fresh objects named in its manifest.

A :class:`ChunkWriter` edits rows of a group's arrays for the next manifest. Each chunk
touched is read once from the committed state (unless the commit overwrites it whole),
edited in memory, encoded with the array's own codecs and written under a new name
(:func:`~.manifest.new_object_name`): nothing a committed manifest refers to is ever
changed. The objects it replaced are collected for deletion once the commit is old
(:func:`~.manifest.retire`); if the commit loses its swap, :meth:`ChunkWriter.discard`
deletes what it wrote.

Plain chunks (bytes + CRC32C: pooled embeddings, index runs) are stored holding only
the rows the array has so far, so a small store is small; readers pad them back.
"""

from __future__ import annotations

import json

import google_crc32c
import numpy as np
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.storage import MemoryStore

from embedcache.errors import DamagedChunkError
from embedcache.store import access
from embedcache.store import chunks as checked_chunks
from embedcache.store import shards
from embedcache.store.manifest import Manifest, identity, new_object_name
from embedcache.store.view import chunk_step, is_plain_meta

__all__ = ["ChunkWriter"]


class ChunkWriter:
    """Rows written into the arrays of ``target`` (the next manifest), read from ``base``.

    Parameters
    ----------
    store
        The :class:`~.read.Store`.
    key
        The model group's key.
    base
        The committed snapshot (:class:`~.read.ModelGroup`) the commit builds on
        (``None``: nothing to read back, as when an upgrade writes a group's first manifest).
    target
        The successor manifest being edited; its array shapes already hold the new rows.
    """

    def __init__(self, store, key: str, base, target: Manifest):
        self.store, self.key, self.base, self.target = store, key, base, target
        self._blocks: dict[tuple[str, int], np.ndarray] = {}
        self.written: list[str] = []
        self.superseded: list[str] = []

    def _fill(self, meta: dict, step: int, covered: bool = False) -> np.ndarray:
        """A block of chunk size holding fill values (``covered``: uninitialised, every
        row about to be overwritten)."""
        shape = (step, *meta["shape"][1:])
        if meta["data_type"] == "string":
            return np.full(shape, meta["fill_value"] or "", dtype=object)
        from zarr.core.dtype import parse_dtype

        dtype = parse_dtype(meta["data_type"], zarr_format=3).to_native_dtype()
        return np.empty(shape, dtype=dtype) if covered else np.full(shape, meta["fill_value"], dtype=dtype)

    def _block(self, name: str, c: int, whole: bool) -> np.ndarray:
        """Chunk ``c`` of ``name`` as committed (fill values where never written)."""
        held = self._blocks.get((name, c))
        if held is not None:
            return held
        meta = self.target.arrays[name]["meta"]
        step = chunk_step(meta)
        # Plain chunks are stored up to the array's end only: rows past it need no fill.
        covered = whole == "all" or (whole and is_plain_meta(meta))
        block = self._fill(meta, step, covered)
        # The target's table: a chunk dropped in this commit (a repair) is not read back.
        committed = self.target.arrays[name]["chunks"].get(str(c))
        if committed is not None and not whole and (shards.handles(meta) or is_plain_meta(meta)):
            self._read_back(name, c, meta, block, committed[0])
        elif committed is not None and not whole:
            arr = self.base._open(name)
            n_old = min(step, arr.shape[0] - c * step)
            (raw,) = checked_chunks.fetch(arr, [c])  # checked against the manifest, or DamagedChunkError
            if raw is None:
                raise DamagedChunkError(store=str(self.store.path), array=f"{self.key}/{name}",
                                        rows=(c * step, c * step + max(0, n_old - 1)), what="missing",
                                        chunk=f"{self.key}/{committed[0]}")
            try:
                block[:n_old] = checked_chunks.snapshot(arr, {c: raw})[c * step:c * step + n_old]
            except Exception as exc:  # noqa: BLE001 - an inner chunk that does not decode is damage
                raise DamagedChunkError(store=str(self.store.path), array=f"{self.key}/{name}",
                                        rows=(c * step, c * step + max(0, n_old - 1)),
                                        what=f"corrupted ({type(exc).__name__})",
                                        chunk=f"{self.key}/{committed[0]}") from None
        self._blocks[(name, c)] = block
        return block

    def _read_back(self, name: str, c: int, meta: dict, block: np.ndarray, obj: str) -> None:
        """Chunk ``c`` of ``name`` as committed, decoded into ``block`` here (no Zarr array
        opened: a commit makes a new generation, whose arrays Zarr would open anew)."""
        raw = self.base.view.chunk(name, c)  # checked against the manifest, or DamagedChunkError
        step = chunk_step(meta)
        n_old = min(step, int(self.base.manifest.arrays[name]["meta"]["shape"][0]) - c * step)
        rows = (c * step, c * step + max(0, n_old - 1))
        if raw is None:
            raise DamagedChunkError(store=str(self.store.path), array=f"{self.key}/{name}", rows=rows,
                                    what="missing", chunk=f"{self.key}/{obj}")
        try:
            if is_plain_meta(meta):
                block[:n_old] = raw[:-4].view(block.dtype).reshape(block.shape)[:n_old]
            else:
                shards.decode(meta, raw, block)
        except (ValueError, RuntimeError) as exc:
            raise DamagedChunkError(store=str(self.store.path), array=f"{self.key}/{name}", rows=rows,
                                    what=f"corrupted ({exc})", chunk=f"{self.key}/{obj}") from None

    def write(self, name: str, rows: np.ndarray, values) -> None:
        """Set ``name[rows] = values`` (``rows`` sorted) in the next manifest."""
        rows = np.asarray(rows, dtype=np.int64)
        if not rows.size:
            return
        meta = self.target.arrays[name]["meta"]
        step = chunk_step(meta)
        n = int(meta["shape"][0])
        chunk_of = rows // step
        bounds = np.flatnonzero(np.diff(chunk_of)) + 1
        for part in np.split(np.arange(rows.size), bounds):
            c = int(chunk_of[part[0]])
            local = rows[part] - c * step
            # Every row of the chunk up to the array's end is overwritten ("all": of the chunk).
            whole = "all" if local.size == step else local.size == min(step, n - c * step)
            block = self._block(name, c, whole)
            block[local] = values[part] if not np.isscalar(values) else values

    def drop(self, name: str, c: int) -> None:
        """Forget chunk ``c`` of ``name``: it reads as fill values from the next manifest on."""
        old = self.target.arrays[name]["chunks"].pop(str(c), None)
        if old is not None:
            self.superseded.append(old[0])
        self._blocks.pop((name, c), None)

    def remove_array(self, name: str) -> None:
        entry = self.target.arrays.pop(name, None)
        if entry is not None:
            self.superseded.extend(c[0] for c in entry["chunks"].values())

    def finish(self) -> None:
        """Encode every edited chunk and write it under a fresh name; update the target."""
        by_array: dict[str, list[int]] = {}
        for name, c in self._blocks:
            by_array.setdefault(name, []).append(c)
        puts = []
        for name, indices in by_array.items():
            entry = self.target.arrays[name]
            for c, (data, crc) in zip(indices, _encode(entry["meta"], {c: self._blocks[(name, c)] for c in indices})):
                old = entry["chunks"].pop(str(c), None)
                if old is not None:
                    self.superseded.append(old[0])
                if data is None:  # fill values only: unlisted, it reads so
                    continue
                obj = new_object_name(name, c)
                puts.append((f"{self.key}/{obj}", data))
                entry["chunks"][str(c)] = [obj, crc, len(data)]
                self.written.append(obj)
        access.put_new(self.store.zstore, puts)
        self._blocks.clear()

    def discard(self) -> None:
        """Delete the objects written (the commit lost its swap): nothing refers to them."""
        for obj in self.written:
            access.delete_key(self.store.zstore, f"{self.key}/{obj}")
        self.written.clear()


def _encode(meta: dict, blocks: dict) -> list:
    """``(bytes, identity)`` of chunks ``{index: block}`` of an array with metadata
    ``meta``, in order (``(None, None)`` for a chunk Zarr would not store: fill values
    only); the identity is what the manifest records (:func:`~.manifest.identity`)."""
    step, n = chunk_step(meta), int(meta["shape"][0])
    if shards.handles(meta):
        encoded = [shards.encode(meta, block) for block in blocks.values()]
        return [(None, None) if b is None else (b, identity(b)) for b in encoded]
    if is_plain_meta(meta):
        out = []
        for c, block in blocks.items():
            payload = np.ascontiguousarray(block[: max(0, min(step, n - c * step))]).reshape(-1).view("B")
            # The identity of a plain chunk is its payload's CRC32C, which ends it: one pass, one copy.
            crc = int(google_crc32c.value(payload))
            out.append((b"".join([payload, crc.to_bytes(4, "little")]), crc))
        return out
    # Other codecs (sharding, Blosc, strings): Zarr encodes, into memory.
    top = max(blocks) + 1
    doc = dict(meta, shape=[top * step, *meta["shape"][1:]])
    mem = MemoryStore()
    mem._store_dict["a/zarr.json"] = default_buffer_prototype().buffer.from_bytes(json.dumps(doc).encode())
    arr = zarr.open_array(store=mem, path="a", mode="r+", zarr_format=3)
    with zarr.config.set({"array.write_empty_chunks": True}):
        for c, block in blocks.items():
            arr[c * step:(c + 1) * step] = block
    # A shard of fill values only is not written by Zarr: such a chunk needs no object.
    held = [mem._store_dict.get(checked_chunks.chunk_key(arr, c)) for c in blocks]
    return [(None, None) if b is None else (b.to_bytes(), identity(b.to_bytes())) for b in held]
