"""Names, the model spec and its key, encoding attributes, and how arrays are laid out.

Layout (encoding version 3)
---------------------------
::

    cache.zarr/
      zarr.json                root group; attributes ``encoding``, ``encoding_version``
      embedcache.lock          local stores: the commit lock (filelock); readers never take it
      embedcache.lease         object stores: the commit lease (see :mod:`.lock`)
      <model key>/             one group per model key (:attr:`ModelSpec.key`)
        zarr.json              self-describing attributes (model name, parameter digest,
                               architecture, tokenizer, policies, dtypes, versions)
        commits/<g>.json       the commits: manifest ``g`` names every array's metadata and
                               chunk objects (with size and CRC32C), ``n_rows`` and the index
                               runs; the newest is the group (:mod:`.manifest`)
        head.json              a hint: a recent generation
        <array>/<i>.<token>    chunk ``i`` of an array, written once (:mod:`.cow`)

The arrays a manifest names (Zarr metadata each; :class:`~.view.GroupView` shows them
to any Zarr client)::

        digest      (row,)     hex sha256 of the normalized sequence's ASCII bytes
        sequence    (row,)     the normalized sequence (variable-length UTF-8)
        length      (row,)     bases in the sequence
        n_tokens    (row,)     tokens the model saw for the row, CLS included
        n_windows   (row,)     1, or the number of windows a tiled sequence was cut into
        layer_12_cls           (row, feature)      one array per (layer, pool)
        attention_1_4          (row, query, key)   one per (layer, head), both 1-based
        has_layer_12_cls       (row,)              fill mask of each data array
        index/run_<a>_<b>      (entries, 3) uint64: digest key (2 words) and row, sorted (:mod:`.index`)

Version 1 lacked the index and compressed every array with Blosc-lz4; version 2 kept
the commit (``n_rows``, ``index_runs``) in the group's attributes and chunks at Zarr's
own keys, rewritten in place. ``embedcache upgrade`` turns either into version 3 (:mod:`.upgrade`).

Pooled embeddings are stored uncompressed, in plain (unsharded) chunks of up to 4096
rows with a CRC32C checksum each, holding only the rows written so far: float32 features compress by a few percent at best,
and skipping decompression and the sharding codec keeps reads near memory speed
(``bench/feature_loading.py`` prints the trade-off). Attention maps, mostly zeros past
each row's tokens, and the per-row arrays stay lz4-compressed in shards.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Mapping

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from embedcache.errors import StoreError, StoreVersionError

ENCODING = "embedcache-store"
ENCODING_VERSION = 3
#: Versions this release reads; older ones are upgraded by ``embedcache upgrade``.
UPGRADABLE_VERSIONS = (1, 2)
LOCK_NAME = "embedcache.lock"
LEASE_NAME = "embedcache.lease"
INDEX_GROUP = "index"
LONG_POLICIES = ("error", "truncate", "tile")
STORE_DTYPES = ("float32", "float16")
COMPUTE_DTYPES = ("float32", "bfloat16")

ROW_ARRAYS = {"digest": str, "sequence": str, "length": "int64", "n_tokens": "int32", "n_windows": "int32"}

# The key hashes what decides stored values, not the layout: it stays at the version the
# first release used, so that upgrading a store's layout keeps its groups' keys.
_KEY_VERSION = 1

# Pooled rows are read in bulk, and Zarr's sharding codec halves bulk read speed: they
# are stored as plain chunks of up to 4096 rows (8 MiB at 512 float32 features), one
# file each. Other arrays keep 256 KiB chunks in shards of 8. Either way a commit
# rewrites at most one partly filled chunk or shard per array, which bounds its cost.
_POOLED_CHUNK_BYTES = 8 << 20
_CHUNK_BYTES = 256 * 1024
_MAX_CHUNK_ROWS = 4096
_CHUNKS_PER_SHARD = 8
# Row arrays hold short strings and integers; a fixed chunking is simpler than estimating.
_ROW_CHUNK = 1024

_LZ4 = (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"), Crc32cCodec())
_RAW = (Crc32cCodec(),)


def sequence_digest(sequence: str) -> str:
    """The row address of a normalized sequence: hex sha256 of its ASCII bytes."""
    return hashlib.sha256(sequence.encode("ascii")).hexdigest()


FINAL = "final"


def layer_label(layer) -> int | str:
    """A layer as names hold it: an int (1-based), or ``"final"`` (NTv3's full-resolution output)."""
    return FINAL if layer == FINAL else int(layer)


def pooled_name(layer: int | str, pool: str) -> str:
    """Name of the (row, feature) array of ``layer`` (1-based, or ``"final"``) pooled by ``pool``."""
    return f"layer_{layer_label(layer)}_{pool}"


def attention_name(layer: int, head: int) -> str:
    """Name of the (row, query, key) array of attention head ``head`` of ``layer`` (1-based)."""
    return f"attention_{int(layer)}_{int(head)}"


def mask_name(name: str) -> str:
    """Name of the boolean fill mask of data array ``name``."""
    return f"has_{name}"


def is_data_name(name: str) -> bool:
    return name.startswith(("layer_", "attention_"))


def parse_array_name(name: str) -> tuple[str, int | str, str | int]:
    """Split a data array name into ``("pooled", layer, pool)`` or ``("attention", layer, head)``."""
    kind, layer, last = name.split("_", 2)
    if kind == "layer":
        return "pooled", layer_label(layer), last
    if kind == "attention":
        return "attention", int(layer), int(last)
    raise ValueError(f"{name!r} is not a data array name")


@dataclass(frozen=True)
class GroupInfo:
    """What a model group is, read once from its attributes: the one typed view of a group that
    ``info``, the classifiers and the plots use (no mask or chunk is read to make it).

    ``filled`` (rows filled per array) and ``disk_bytes`` are ``None`` unless measured
    (:meth:`embedcache.store.ModelGroup.info`); ``random_weights`` is ``None`` when a store
    written before that flag does not say.
    """

    key: str
    name: str
    digest: str | None
    source: str | None
    variant: str | None
    rows: int
    arrays: tuple[str, ...]
    tokenizer: Mapping | None = None
    feature_dim: int | None = None
    num_layers: int | None = None
    attention_stride: int = 1
    max_tokens: int | None = None
    alphabet: str = "iupac-to-n"
    long: str | None = None
    window_overlap: int | None = None
    dtype: str | None = None
    store_dtype: str | None = None
    species: str | None = None
    random_weights: bool | None = None
    created: str | None = None
    filled: Mapping[str, int] | None = None
    disk_bytes: int | None = None

    @classmethod
    def from_attrs(cls, key: str, attrs: Mapping, *, rows: int, arrays, **measured) -> "GroupInfo":
        """The record of a group's attributes (as the writer stored them)."""
        a = attrs
        return cls(key=key, name=a.get("model_name", ""), digest=a.get("param_digest"), source=a.get("source"),
                   variant=a.get("variant"), rows=int(rows), arrays=tuple(arrays), tokenizer=a.get("tokenizer"),
                   feature_dim=a.get("feature_dim"), num_layers=a.get("num_layers"),
                   attention_stride=int(a.get("attention_stride", 1)), max_tokens=a.get("max_tokens"),
                   alphabet=a.get("alphabet") or "iupac-to-n", long=a.get("long"),
                   window_overlap=a.get("window_overlap"), dtype=a.get("dtype"), store_dtype=a.get("store_dtype"),
                   species=a.get("species"), random_weights=a.get("random_weights"), created=a.get("created"),
                   **measured)

    def to_dict(self) -> dict:
        """JSON-ready (a run record, a fixture's info.json)."""
        return asdict(self)


@dataclass(frozen=True)
class ModelSpec:
    """Everything that decides what a model group's rows hold; its hash is the group key.

    Parameters
    ----------
    param_digest
        The checkpoint's digest of parameters and architecture (``Checkpoint.digest``).
    max_tokens
        Longest token sequence embedded in one pass (CLS included); also the size of
        the attention arrays' query and key dimensions.
    alphabet
        Alphabet policy of :mod:`embedcache.sequences.alphabet`.
    long
        Long-sequence policy: ``"error"``, ``"truncate"`` or ``"tile"``.
    window_overlap
        Tokens shared by consecutive windows under ``long="tile"`` (0 otherwise).
    dtype
        Compute dtype, ``"float32"`` or ``"bfloat16"``.
    store_dtype
        Dtype of the stored embeddings and maps, ``"float32"`` or ``"float16"``.
    species
        The species a post-trained NTv3 model is conditioned on; ``None`` otherwise.
    """

    param_digest: str
    max_tokens: int
    alphabet: str = "iupac-to-n"
    long: str = "error"
    window_overlap: int = 0
    dtype: str = "float32"
    store_dtype: str = "float32"
    species: str | None = None

    def __post_init__(self):
        from embedcache.sequences.alphabet import ALPHABET_POLICIES

        _choose("alphabet", self.alphabet, ALPHABET_POLICIES)
        _choose("long", self.long, LONG_POLICIES)
        _choose("dtype", self.dtype, COMPUTE_DTYPES)
        _choose("store_dtype", self.store_dtype, STORE_DTYPES)
        if int(self.max_tokens) < 2:
            raise ValueError(f"max_tokens must be at least 2 (CLS and one token), got {self.max_tokens}")
        if self.long == "tile" and not 0 <= self.window_overlap < self.max_tokens - 1:
            raise ValueError(
                f"window_overlap must be in [0, max_tokens - 1) = [0, {self.max_tokens - 1}), "
                f"got {self.window_overlap}"
            )
        if self.long != "tile" and self.window_overlap:
            # Only tiling uses windows; a stray overlap must not split the key.
            object.__setattr__(self, "window_overlap", 0)

    @property
    def key(self) -> str:
        """The model group's name: 16 hex digits of a sha256 over the spec."""
        fields = asdict(self)
        if fields["species"] is None:
            del fields["species"]  # keys made before species existed stay as they were
        payload = json.dumps({**fields, "encoding_version": _KEY_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @classmethod
    def from_attrs(cls, attrs: Mapping) -> "ModelSpec":
        """Rebuild the spec recorded in a model group's attributes."""
        return cls(**{k: attrs[k] for k in cls.__dataclass_fields__ if k in attrs or k != "species"})


def _choose(what: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; choose one of {tuple(allowed)}")


def encoding_attrs(**extra) -> dict:
    return {"encoding": ENCODING, "encoding_version": ENCODING_VERSION, **extra}


def check_encoding(attrs: Mapping, where: str, *, store: str = "") -> None:
    """Refuse anything but this encoding and version, with the way out for each case."""
    if attrs.get("encoding") != ENCODING:
        raise StoreError(
            f"{where} is not an embedcache store (no '{ENCODING}' encoding attribute). "
            "Pass the path of a cache written by `embedcache build`, or a new path."
        )
    version = attrs.get("encoding_version")
    if version in UPGRADABLE_VERSIONS:
        raise StoreVersionError(
            f"{where} is written in {ENCODING} encoding version {version}; this embedcache reads "
            f"version {ENCODING_VERSION}. Upgrade it in place (safe to interrupt and rerun): "
            f"embedcache upgrade {store or 'PATH'}"
        )
    if version != ENCODING_VERSION:
        raise StoreVersionError(
            f"{where} is written in {ENCODING} encoding version {version}; this embedcache "
            f"reads version {ENCODING_VERSION}. Upgrade embedcache (pip install -U embedcache) "
            "to read it, or build a new cache with this version."
        )


def package_versions() -> dict:
    """The versions a model group records: Python, embedcache and what writes its bytes."""
    from embedcache.util.versions import package_versions as versions

    return versions(("embedcache", "numpy", "zarr", "numcodecs", "jax"))


def _chunking(row_shape: tuple, itemsize: int, chunk_bytes: int) -> tuple[int, int]:
    row_bytes = max(1, math.prod(row_shape) * itemsize)
    chunk = 1 << max(0, int(math.log2(max(1, chunk_bytes // row_bytes))))
    chunk = min(chunk, _MAX_CHUNK_ROWS)
    return chunk, chunk * _CHUNKS_PER_SHARD


def create_array(g: zarr.Group, name: str, dtype, row_shape: tuple, dims: tuple, *, rows: int,
                 **attrs) -> zarr.Array:
    """Create a row-major array of the group in this version's layout for its kind."""
    pooled = attrs.get("kind") == "pooled"
    if dtype is str:
        chunk, shard = _ROW_CHUNK, _ROW_CHUNK * _CHUNKS_PER_SHARD
    else:
        chunk, shard = _chunking(row_shape, np.dtype(dtype).itemsize,
                                 _POOLED_CHUNK_BYTES if pooled else _CHUNK_BYTES)
    return g.create_array(
        name,
        shape=(rows, *row_shape),
        dtype=dtype,
        chunks=(chunk, *row_shape),
        shards=None if pooled else (shard, *row_shape),
        compressors=_RAW if pooled else _LZ4,
        fill_value="" if dtype is str else (False if dtype == "bool" else 0),
        dimension_names=dims,
        attributes=encoding_attrs(**attrs),
        overwrite=True,
    )


def array_meta(name: str, dtype, row_shape: tuple, dims: tuple, *, rows: int, **attrs) -> dict:
    """The Zarr metadata document (a dict) of a new array laid out as :func:`create_array` does;
    format 3 keeps it in the group's manifest, not in a ``zarr.json`` of its own."""
    from zarr.storage import MemoryStore

    mem = MemoryStore()
    create_array(zarr.open_group(store=mem, mode="w", zarr_format=3), "a", dtype, row_shape, dims,
                 rows=rows, **attrs)
    return json.loads(mem._store_dict["a/zarr.json"].to_bytes())
