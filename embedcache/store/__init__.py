"""The embedding store: a Zarr v3 hierarchy, one group per model key, local or remote.

One module per idea: :mod:`.layout` (names, the model spec and key, encoding, array
layout), :mod:`.access` (bytes through Zarr's store API), :mod:`.manifest` (a group's
commits: a manifest per commit, swapped in create-only), :mod:`.cow` (copy-on-write
chunk writes), :mod:`.view` (a commit as a read-only Zarr store that checks each chunk
against its manifest), :mod:`.index` (the persisted digest index), :mod:`.read` (stores
and model group snapshots), :mod:`.gather` (rows read in any order), :mod:`.lock`
and :mod:`.write` (many writers, each commit a swap), :mod:`.chunks` (checked shard
reads: damage named, never fill values),
:mod:`.verify`, :mod:`.repair`, :mod:`.gc` (leftovers), :mod:`.upgrade`, and
:mod:`.pause` (a test hook that stops a writer at a named point).
"""

from embedcache.store.layout import (
    ENCODING,
    GroupInfo,
    COMPUTE_DTYPES,
    ENCODING_VERSION,
    LEASE_NAME,
    LOCK_NAME,
    LONG_POLICIES,
    STORE_DTYPES,
    ModelSpec,
    attention_name,
    layer_label,
    mask_name,
    parse_array_name,
    pooled_name,
    sequence_digest,
)
from embedcache.store.read import ModelGroup, Store
from embedcache.store.upgrade import upgrade
from embedcache.store.verify import Problem
from embedcache.store.write import GroupWriter, StoreWriting

__all__ = [
    "ENCODING",
    "COMPUTE_DTYPES",
    "ENCODING_VERSION",
    "LEASE_NAME",
    "LOCK_NAME",
    "LONG_POLICIES",
    "STORE_DTYPES",
    "GroupInfo",
    "ModelSpec",
    "ModelGroup",
    "GroupWriter",
    "Store",
    "StoreWriting",
    "Problem",
    "attention_name",
    "layer_label",
    "mask_name",
    "parse_array_name",
    "pooled_name",
    "sequence_digest",
    "upgrade",
]
