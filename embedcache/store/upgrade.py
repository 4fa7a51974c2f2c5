"""``embedcache upgrade``: bring a store written in an older encoding version to this one.

Version 1 to 2 adds the persisted digest index of each model group and stamps every
node with the new version; the stored values and their chunks are left as they are
(version 2 reads any chunk layout; arrays created later use the new one). The steps run
under the commit lock in an order that makes the upgrade safe to interrupt and rerun:
a group's index is written before its version is stamped, and the root is stamped only
after every group, so a store is either still version 1 (rerun finishes it) or whole.
"""

from __future__ import annotations

import numpy as np
import zarr

from embedcache.errors import StoreError, StoreVersionError
from embedcache.store import access, index
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
        zarr.open_group(store=store.zstore, mode="r+", zarr_format=3).update_attributes(
            {"encoding_version": ENCODING_VERSION})
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
    g = zarr.open_group(store=store.zstore, path=key, mode="r+", zarr_format=3)
    n = int(attrs.get("n_rows", 0))
    runs = []
    if n:
        digests = np.asarray(g["digest"][:n])
        index.write_run(g, 0, n, index.sorted_run(index.keys_of_hex(digests.tolist()), np.arange(n)))
        runs = [[0, n]]
    for name in store.members(key, "array"):
        g[name].update_attributes({"encoding_version": ENCODING_VERSION})
    g.update_attributes({"encoding_version": ENCODING_VERSION, "index_runs": runs})
