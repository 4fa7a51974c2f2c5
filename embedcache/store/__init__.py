"""The embedding store: a Zarr v3 hierarchy, one group per model key, local or remote.

One module per idea: :mod:`.layout` (names, the model spec and key, encoding, array
layout), :mod:`.access` (bytes through Zarr's store API), :mod:`.index` (the persisted
digest index), :mod:`.read` (stores and model group snapshots), :mod:`.lock` and
:mod:`.write` (many writers, one commit at a time), :mod:`.chunks` (checked shard
reads: damage named, never fill values), :mod:`.verify`, :mod:`.repair` and :mod:`.upgrade`.
"""

from embedcache.store.layout import (
    ENCODING,
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
