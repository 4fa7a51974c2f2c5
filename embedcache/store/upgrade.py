"""``embedcache upgrade``: bring a store written in an older encoding version to this one.

Versions 1 and 2 kept a group's commit (``n_rows``, and from version 2 the index runs) in
its attributes, and chunks at Zarr's own keys. Version 3 (:mod:`.manifest`) names every
chunk in a manifest: the upgrade writes each group's first manifest (generation 0),
naming the chunks where they lie (each read once for its checksum; nothing is copied)
and a digest index built afresh from the digests, then stamps the group and, after every
group, the root. The manifest is created only if absent and each stamp comes after what
it vouches for, so the upgrade is safe to interrupt and rerun; a finished store is left
as it is. What version 3 no longer uses (arrays' own ``zarr.json``, old index runs, rows
past the commit) is deleted once its group is stamped.
"""

from __future__ import annotations

import json

import numpy as np
import zarr

from embedcache.errors import StoreError, StoreVersionError
from embedcache.store import access, gc, index, manifest
from embedcache.store.cow import ChunkWriter
from embedcache.store.manifest import Manifest, identity
from embedcache.store.layout import ENCODING, ENCODING_VERSION, UPGRADABLE_VERSIONS
from embedcache.store.lock import commit_lock


def upgrade(store, *, timeout: float = 600.0) -> list[str]:
    """Upgrade ``store`` in place; the keys of the model groups upgraded (``[]`` if none needed).

    Raises
    ------
    StoreError
        No store at the location, or a foreign one.
    StoreVersionError
        A version newer than this release, which it cannot upgrade.
    """
    if not store.exists():
        store.root_attrs()  # the right message for a missing or foreign location
    with commit_lock(store, timeout):
        root_version = _version(access.get_json(store.zstore, "zarr.json"), f"store {store.path}")
        if root_version == ENCODING_VERSION:
            return []
        done = []
        for key in store.members("", "group"):
            meta = access.get_json(store.zstore, f"{key}/zarr.json")
            if _version(meta, f"model group {store.path}/{key}") != ENCODING_VERSION:
                _upgrade_group(store, key, meta.get("attributes", {}))
                done.append(key)
        root = access.get_json(store.zstore, "zarr.json")
        root["attributes"]["encoding_version"] = ENCODING_VERSION
        access.put_bytes(store.zstore, "zarr.json", json.dumps(root).encode())
        return done


def _version(meta, where: str) -> int:
    attrs = (meta or {}).get("attributes", {})
    if attrs.get("encoding") != ENCODING:
        raise StoreError(f"{where} is not an embedcache store; nothing to upgrade.")
    version = attrs.get("encoding_version")
    if version != ENCODING_VERSION and version not in UPGRADABLE_VERSIONS:
        raise StoreVersionError(f"{where} is in encoding version {version}, which this embedcache "
                                f"(version {ENCODING_VERSION}) cannot upgrade; upgrade embedcache instead.")
    return version


def _upgrade_group(store, key: str, attrs: dict) -> None:
    zs = store.zstore
    if manifest.head(store, key) is None:
        g = zarr.open_group(store=zs, path=key, mode="r", zarr_format=3)
        n = int(attrs.get("n_rows", 0))
        arrays = {}
        for name in store.members(key, "array"):
            arr = g[name]
            meta = access.get_json(zs, f"{key}/{name}/zarr.json")
            meta["shape"] = [n, *meta["shape"][1:]]
            meta.setdefault("attributes", {})["encoding_version"] = ENCODING_VERSION
            step = int(arr.metadata.chunk_grid.chunk_shape[0])
            table = {}
            for c in range(-(-n // step)):
                obj = f"{name}/{arr.metadata.encode_chunk_key((c,) + (0,) * (arr.ndim - 1))}"
                raw = access.get_bytes(zs, f"{key}/{obj}")
                if raw is not None:
                    table[str(c)] = [obj, identity(raw), len(raw)]
            arrays[name] = {"meta": meta, "chunks": table}
        first = Manifest(generation=0, n_rows=n, arrays=arrays)
        if n:
            digests = np.asarray(g["digest"][:n]).tolist()
            writer = ChunkWriter(store, key, None, first)
            index.add_run(writer, 0, n, index.sorted_run(index.keys_of_hex(digests), np.arange(n)))
            writer.finish()
            first.runs = [[0, n]]
        manifest.publish(store, key, first)  # create-only: an interrupted upgrade's rerun keeps the first
    kept = {k: v for k, v in attrs.items() if k not in ("n_rows", "index_runs")}
    doc = {"zarr_format": 3, "node_type": "group", "attributes": {**kept, "encoding_version": ENCODING_VERSION}}
    access.put_bytes(zs, f"{key}/zarr.json", json.dumps(doc).encode())
    for leftover in gc.group_leftovers(store, key):
        access.delete_key(zs, leftover)
