"""A model group as one committed manifest says it is: a read-only Zarr store.

:class:`GroupView` answers Zarr's requests for a group's metadata and chunks from the
manifest (:mod:`.manifest`): ``<array>/zarr.json`` is the metadata the manifest holds,
and chunk ``<array>/c/<i>/...`` is the object the manifest names for it, handed out only
after its size and CRC32C match what the manifest recorded. A chunk put back from an
older commit, swapped with another or copied from another array therefore raises
:class:`~embedcache.errors.DamagedChunkError`, as does a lost one; a chunk the manifest
does not list was never written and reads as fill values.

Every reader of this package opens arrays through it, and so can any Zarr client::

    xr.open_zarr(EmbeddingCache("cache.zarr").group(model).zarr_store(), consolidated=False)

Plain chunks (pooled embeddings, the digest index) are stored holding only the rows
written so far; they are handed out padded to the chunk's full size, as Zarr expects.
"""

from __future__ import annotations

import json

import google_crc32c
import numpy as np
from zarr.abc.store import OffsetByteRequest, RangeByteRequest, Store, SuffixByteRequest
from zarr.core.buffer import default_buffer_prototype

from embedcache.errors import DamagedChunkError
from embedcache.store.manifest import Manifest, identity

__all__ = ["GroupView", "chunk_step", "is_plain_meta"]


def chunk_step(meta: dict) -> int:
    return int(meta["chunk_grid"]["configuration"]["chunk_shape"][0])


def is_plain_meta(meta: dict) -> bool:
    return [c["name"] for c in meta["codecs"]] == ["bytes", "crc32c"]


def plain_chunk_bytes(meta: dict) -> int:
    """Bytes of one full plain chunk, its checksum excluded."""
    from zarr.core.dtype import parse_dtype

    shape = meta["chunk_grid"]["configuration"]["chunk_shape"]
    return int(np.prod(shape)) * parse_dtype(meta["data_type"], zarr_format=3).to_native_dtype().itemsize


class GroupView(Store):
    """Read-only Zarr store of group ``key`` at ``manifest`` (see the module docs).

    Parameters
    ----------
    base
        The store's Zarr store (local or fsspec).
    key
        The model group's key.
    manifest
        The committed state to show.
    attrs
        The group's attributes (its ``zarr.json``).
    where
        The cache's location, to name damage.
    """

    supports_writes = False
    supports_deletes = False
    supports_listing = True
    #: Chunks handed out are checked whole against the manifest (callers skip their own CRC check).
    verified = True

    def __init__(self, base, key: str, manifest: Manifest, attrs: dict, where: str = ""):
        super().__init__(read_only=True)
        self.base, self.key, self.manifest, self.attrs = base, key, manifest, dict(attrs)
        self.where = where or key

    def __eq__(self, other) -> bool:
        return (isinstance(other, GroupView) and other.base is self.base and other.key == self.key
                and other.manifest.generation == self.manifest.generation)

    def __hash__(self) -> int:
        return hash((id(self.base), self.key, self.manifest.generation))

    @property
    def local(self) -> bool:
        return hasattr(self.base, "read_into")

    # -- what a key means -----------------------------------------------------------------

    def _document(self, key: str) -> bytes | None:
        if key == "zarr.json":
            return json.dumps({"zarr_format": 3, "node_type": "group", "attributes": self.attrs}).encode()
        name = key[: -len("/zarr.json")]
        if name in self.manifest.arrays:
            return json.dumps(self.manifest.arrays[name]["meta"]).encode()
        if any(a.startswith(f"{name}/") for a in self.manifest.arrays):
            return b'{"zarr_format":3,"node_type":"group","attributes":{}}'
        return None

    def _chunk(self, key: str):
        """``(array name, chunk index, entry or None)`` of a chunk key, or ``None``."""
        name, sep, rest = key.rpartition("/c/")
        if not sep or name not in self.manifest.arrays:
            return None
        try:
            index = int(rest.split("/", 1)[0])
        except ValueError:
            return None
        return name, index, self.manifest.arrays[name]["chunks"].get(str(index))

    def _damage(self, name: str, index: int, obj: str, what: str) -> DamagedChunkError:
        meta = self.manifest.arrays[name]["meta"]
        step = chunk_step(meta)
        lo, hi = index * step, min((index + 1) * step, int(meta["shape"][0]))
        return DamagedChunkError(store=self.where, array=f"{self.key}/{name}", rows=(lo, max(lo, hi - 1)),
                                 what=what, chunk=f"{self.key}/{obj}")

    def checked(self, name: str, index: int, entry, raw: np.ndarray | None) -> np.ndarray:
        """The bytes of a listed chunk after checking them against the manifest, padded
        to full size if it is a plain chunk stored short."""
        obj, crc, size = entry
        if raw is None:
            raise self._damage(name, index, obj, "missing")
        if raw.size != size or identity(raw) != int(crc):
            raise self._damage(name, index, obj, "not the chunk this commit wrote (its size or checksum "
                                                 "differs from the manifest's: a stale, moved or foreign chunk)")
        meta = self.manifest.arrays[name]["meta"]
        if is_plain_meta(meta):
            full = plain_chunk_bytes(meta)
            if raw.size - 4 < full:
                padded = np.zeros(full + 4, dtype="B")
                padded[: raw.size - 4] = raw[:-4]
                padded[-4:] = np.frombuffer(int(google_crc32c.value(padded[:-4])).to_bytes(4, "little"), "B")
                return padded
        return raw

    # -- the Store API --------------------------------------------------------------------

    async def get(self, key, prototype=None, byte_range=None):
        proto = prototype or default_buffer_prototype()
        if key.endswith("zarr.json"):
            doc = self._document(key)
            raw = None if doc is None else np.frombuffer(doc, dtype="B")
        else:
            found = self._chunk(key)
            if found is None or found[2] is None:
                return None
            name, index, entry = found
            buf = await self.base.get(f"{self.key}/{entry[0]}", prototype=proto)
            raw = self.checked(name, index, entry, None if buf is None else buf.as_numpy_array())
        if raw is None:
            return None
        return proto.buffer.from_array_like(_slice(raw, byte_range))

    def read_into(self, key: str, buf: np.ndarray | None) -> np.ndarray | None:
        """Local stores: chunk ``key`` read into ``buf`` and checked (see ``_LocalStore.read_into``)."""
        found = self._chunk(key)
        if found is None or found[2] is None:
            return None
        name, index, entry = found
        return self.checked(name, index, entry, self.base.read_into(f"{self.key}/{entry[0]}", buf))

    def chunk(self, name: str, index: int) -> np.ndarray | None:
        """Chunk ``index`` (along rows) of array ``name``, checked as :meth:`get` checks it;
        ``None`` if the manifest does not list it. Local stores read it in the caller's thread."""
        key = f"{name}/c/{int(index)}" + "/0" * (len(self.manifest.arrays[name]["meta"]["shape"]) - 1)
        if self.local:
            return self.read_into(key, None)
        from zarr.core.sync import sync

        buf = sync(self.get(key))
        return None if buf is None else buf.as_numpy_array()

    async def get_partial_values(self, prototype, key_ranges):
        return [await self.get(k, prototype, r) for k, r in key_ranges]

    async def exists(self, key: str) -> bool:
        if key.endswith("zarr.json"):
            return self._document(key) is not None
        found = self._chunk(key)
        return found is not None and found[2] is not None

    def _keys(self):
        yield "zarr.json"
        groups = set()
        for name, entry in self.manifest.arrays.items():
            yield f"{name}/zarr.json"
            if "/" in name:
                groups.add(name.rsplit("/", 1)[0])
            ndim = len(entry["meta"]["shape"])
            for i in entry["chunks"]:
                yield f"{name}/c/" + "/".join([str(i)] + ["0"] * (ndim - 1))
        for g in groups:
            yield f"{g}/zarr.json"

    async def list(self):
        for k in self._keys():
            yield k

    async def list_prefix(self, prefix: str):
        for k in self._keys():
            if k.startswith(prefix):
                yield k

    async def list_dir(self, prefix: str):
        base = f"{prefix.rstrip('/')}/" if prefix else ""
        seen = set()
        for k in self._keys():
            if k.startswith(base):
                child = k[len(base):].split("/", 1)[0]
                if child not in seen:
                    seen.add(child)
                    yield child

    async def set(self, key, value):
        raise ValueError("a committed model group is read-only; write through GroupWriter")

    async def delete(self, key):
        raise ValueError("a committed model group is read-only")


def _slice(raw: np.ndarray, byte_range) -> np.ndarray:
    if byte_range is None:
        return raw
    if isinstance(byte_range, RangeByteRequest):
        return raw[byte_range.start:byte_range.end]
    if isinstance(byte_range, OffsetByteRequest):
        return raw[byte_range.offset:]
    if isinstance(byte_range, SuffixByteRequest):
        return raw[-byte_range.suffix:]
    raise TypeError(f"unknown byte range {byte_range!r}")
