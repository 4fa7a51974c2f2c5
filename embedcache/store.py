"""The on-disk layout of an embedding cache: a Zarr v3 hierarchy, one group per model key.

Layout
------
::

    cache.zarr/
      zarr.json                root group; attributes ``encoding``, ``encoding_version``
      embedcache.lock          the writers' lock (filelock); readers never take it
      <model key>/             one group per model key (:attr:`ModelSpec.key`)
        zarr.json              self-describing attributes (model name, parameter digest,
                               architecture, tokenizer, policies, dtypes, versions) and
                               ``n_rows``, the committed row count
        digest      (row,)     hex sha256 of the normalized sequence's ASCII bytes
        sequence    (row,)     the normalized sequence (variable-length UTF-8)
        length      (row,)     bases in the sequence
        n_tokens    (row,)     tokens the model saw for the row, CLS included (after
                               truncation; for a tiled row, the whole sequence's tokens)
        n_windows   (row,)     1, or the number of windows a tiled sequence was cut into
        layer_12_cls           (row, feature)      one array per (layer, pool)
        attention_1_4          (row, query, key)   one per (layer, head), both 1-based,
                                                   zeros past the row's ``n_tokens``
        has_layer_12_cls       (row,)              fill mask of each data array

Rows are unique sequences: a sequence maps to the row whose ``digest`` is the sha256 of
its normalized bytes, whichever file, id or task it came from. Every array carries
``dimension_names`` (``row``, ``feature``, ``query``, ``key``), so
``xarray.open_zarr(path, group=key)`` opens a model group as one dataset. Rows are
packed into shards with the Zarr sharding codec; inner chunks are Blosc-compressed and
carry a CRC32C checksum, so a corrupted or truncated chunk is detected on read.

Crash safety
------------
Zarr's local store writes every file to a temporary name and renames it, so each chunk
or metadata document is either old or new, never half-written. On top of that, a write
follows one order: data arrays, then the row arrays and fill masks, then ``n_rows``.
Readers and resumed builds ignore everything at or past the committed ``n_rows``, so a
process killed at any moment leaves only whole rows; rows already committed are never
rewritten (a new array for old rows writes its data, then flips their fill mask). One
writer at a time holds :data:`LOCK_NAME` through :mod:`filelock`, which the operating
system releases when the holder dies, so a lock is never stale.

Model key
---------
The key (:attr:`ModelSpec.key`) is the first 16 hex digits of a sha256 over: the
checkpoint's parameter digest (itself over weights and architecture), the alphabet
policy, the long-sequence policy and its window overlap, the compute dtype, the store
dtype, ``max_tokens`` and the encoding version. Anything that changes a stored value
changes the key; the model's name does not.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import platform
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import zarr
from filelock import FileLock, Timeout
from zarr.codecs import BloscCodec, Crc32cCodec

from embedcache.errors import StoreError, StoreLockedError, StoreVersionError

__all__ = [
    "ENCODING",
    "ENCODING_VERSION",
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
    "mask_name",
    "parse_array_name",
    "pooled_name",
    "sequence_digest",
]

ENCODING = "embedcache-store"
ENCODING_VERSION = 1
LOCK_NAME = "embedcache.lock"
LONG_POLICIES = ("error", "truncate", "tile")
STORE_DTYPES = ("float32", "float16")
COMPUTE_DTYPES = ("float32", "bfloat16")

ROW_ARRAYS = {"digest": str, "sequence": str, "length": "int64", "n_tokens": "int32", "n_windows": "int32"}

# Inner chunks near 256 KiB compress well and read fast. Shards of 8 chunks (about 2 MiB)
# keep the file count low while bounding what each commit reads and rewrites (a partly
# filled shard is rewritten whole), and so the memory a build needs.
_CHUNK_BYTES = 256 * 1024
_MAX_CHUNK_ROWS = 4096
_CHUNKS_PER_SHARD = 8
# Row arrays hold short strings and integers; a fixed chunking is simpler than estimating.
_ROW_CHUNK = 1024

_COMPRESSORS = (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"), Crc32cCodec())
_WRITE_CONFIG = {"write_empty_chunks": True}


# --------------------------------------------------------------------------------------
# Names and digests
# --------------------------------------------------------------------------------------


def sequence_digest(sequence: str) -> str:
    """The row address of a normalized sequence: hex sha256 of its ASCII bytes."""
    return hashlib.sha256(sequence.encode("ascii")).hexdigest()


def pooled_name(layer: int, pool: str) -> str:
    """Name of the (row, feature) array of ``layer`` (1-based) pooled by ``pool``."""
    return f"layer_{int(layer)}_{pool}"


def attention_name(layer: int, head: int) -> str:
    """Name of the (row, query, key) array of attention head ``head`` of ``layer`` (1-based)."""
    return f"attention_{int(layer)}_{int(head)}"


def mask_name(name: str) -> str:
    """Name of the boolean fill mask of data array ``name``."""
    return f"has_{name}"


def parse_array_name(name: str) -> tuple[str, int, str | int]:
    """Split a data array name into ``("pooled", layer, pool)`` or ``("attention", layer, head)``."""
    kind, layer, last = name.split("_", 2)
    if kind == "layer":
        return "pooled", int(layer), last
    if kind == "attention":
        return "attention", int(layer), int(last)
    raise ValueError(f"{name!r} is not a data array name")


# --------------------------------------------------------------------------------------
# Model spec and key
# --------------------------------------------------------------------------------------


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
        Alphabet policy of :mod:`embedcache.alphabet`.
    long
        Long-sequence policy: ``"error"``, ``"truncate"`` or ``"tile"``.
    window_overlap
        Tokens shared by consecutive windows under ``long="tile"`` (0 otherwise).
    dtype
        Compute dtype, ``"float32"`` or ``"bfloat16"``.
    store_dtype
        Dtype of the stored embeddings and maps, ``"float32"`` or ``"float16"``.
    """

    param_digest: str
    max_tokens: int
    alphabet: str = "iupac-to-n"
    long: str = "error"
    window_overlap: int = 0
    dtype: str = "float32"
    store_dtype: str = "float32"

    def __post_init__(self):
        from embedcache.alphabet import ALPHABET_POLICIES

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
        """The model group's name: 16 hex digits of a sha256 over the spec and encoding version."""
        payload = json.dumps({**asdict(self), "encoding_version": ENCODING_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @classmethod
    def from_attrs(cls, attrs: Mapping) -> "ModelSpec":
        """Rebuild the spec recorded in a model group's attributes."""
        return cls(**{k: attrs[k] for k in cls.__dataclass_fields__})


def _choose(what: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; choose one of {tuple(allowed)}")


# --------------------------------------------------------------------------------------
# Encoding checks
# --------------------------------------------------------------------------------------


def _encoding_attrs(**extra) -> dict:
    return {"encoding": ENCODING, "encoding_version": ENCODING_VERSION, **extra}


def _check_encoding(attrs: Mapping, where: str) -> None:
    if attrs.get("encoding") != ENCODING:
        raise StoreError(
            f"{where} is not an embedcache store (no '{ENCODING}' encoding attribute). "
            "Pass the path of a cache written by `embedcache build`, or a new path."
        )
    version = attrs.get("encoding_version")
    if version != ENCODING_VERSION:
        raise StoreVersionError(
            f"{where} is written in {ENCODING} encoding version {version}; this embedcache "
            f"reads version {ENCODING_VERSION}. Upgrade embedcache (pip install -U embedcache) "
            "to read it, or build a new cache with this version."
        )


def _package_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("embedcache", "numpy", "zarr", "numcodecs", "jax"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


class Store:
    """An embedding cache directory: open it, list its model groups, lock it for writing.

    Parameters
    ----------
    path
        The cache directory (``cache.zarr``). It need not exist until something is written.

    Notes
    -----
    Reading never takes the lock and never writes. Each call re-reads the metadata, so a
    reader sees the rows a concurrent build has committed since its last call.
    """

    def __init__(self, path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_NAME

    def exists(self) -> bool:
        """Whether the path holds a store (a root ``zarr.json``)."""
        return (self.path / "zarr.json").is_file()

    def _root(self, mode: str = "r") -> zarr.Group:
        if not self.exists():
            if self.path.exists() and any(self.path.iterdir()):
                raise StoreError(
                    f"{self.path} exists but is not an embedcache store (no zarr.json). "
                    "Pass the path of a cache written by `embedcache build`, or a new path."
                )
            raise StoreError(
                f"no embedding cache at {self.path}. Build one first: "
                f"embedcache build INPUT --model MODEL --cache {self.path}"
            )
        try:
            root = zarr.open_group(str(self.path), mode=mode, zarr_format=3)
        except Exception as exc:  # a damaged zarr.json is a store problem, not a bug
            raise StoreError(f"cannot open the store {self.path}: {exc}. Run `embedcache verify {self.path}`.") from exc
        _check_encoding(root.attrs, f"store {self.path}")
        return root

    def keys(self) -> list[str]:
        """The model keys present, sorted."""
        if not self.exists() and not (self.path.is_dir() and any(self.path.iterdir())):
            return []
        self._root()
        return _members(self.path, "group")

    def groups(self) -> list["ModelGroup"]:
        """A :class:`ModelGroup` snapshot for every model key; :class:`StoreError` if there is no store."""
        self._root()
        return [self.group(key) for key in self.keys()]

    def group(self, key: str) -> "ModelGroup":
        """The model group named ``key``; :class:`StoreError` if there is none."""
        root = self._root()
        try:
            g = root[key]
        except KeyError:
            raise StoreError(
                f"store {self.path} has no model group {key!r}; it holds {self.keys() or 'none'}. "
                "Run `embedcache info` to list them."
            ) from None
        except Exception as exc:  # noqa: BLE001 - unreadable metadata is damage, not a bug
            raise StoreError(f"model group {self.path}/{key} has unreadable metadata ({exc}); "
                             "the store is damaged.") from exc
        if not isinstance(g, zarr.Group):
            raise StoreError(f"{self.path}/{key} is not a model group")
        return ModelGroup(self, g)

    @contextmanager
    def writing(self, *, timeout: float = 10.0) -> Iterator["StoreWriting"]:
        """Hold the writer's lock (creating the store if needed) for the ``with`` block.

        Parameters
        ----------
        timeout
            Seconds to wait for another writer to finish; then :class:`StoreLockedError`.
        """
        if self.path.exists() and not self.exists() and any(self.path.iterdir()):
            raise StoreError(
                f"{self.path} exists but is not an embedcache store (no zarr.json); "
                "choose a new path for the cache."
            )
        self.path.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.lock_path))
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise StoreLockedError(
                f"another process is writing to the cache {self.path} (it holds {self.lock_path}). "
                f"Wait for that build to finish and run again; waited {timeout:g} s. The lock is "
                "released when its process exits, so it is never stale."
            ) from None
        try:
            if not self.exists():
                zarr.open_group(str(self.path), mode="a", zarr_format=3, attributes=_encoding_attrs())
            else:
                self._root()  # refuses a foreign or newer store before anything is written
            # A killed writer can leave temporary files of Zarr's atomic writes; they are garbage.
            for partial in self.path.rglob("*.partial"):
                partial.unlink(missing_ok=True)
            yield StoreWriting(self)
        finally:
            lock.release()

    def disk_bytes(self, key: str | None = None) -> int:
        """Bytes on disk of the whole store, or of one model group."""
        base = self.path / key if key else self.path
        return sum(p.stat().st_size for p in base.rglob("*") if p.is_file())

    def verify(self, *, max_problems_per_array: int = 20) -> list["Problem"]:
        """Check every model group; see :meth:`ModelGroup.verify`."""
        problems = []
        try:
            keys = self.keys()
        except StoreError as exc:
            return [Problem(key="", array="", rows=(), what=str(exc))]
        for key in keys:
            try:
                group = self.group(key)
            except StoreError as exc:
                problems.append(Problem(key=key, array="", rows=(), what=str(exc)))
                continue
            problems.extend(group.verify(max_problems_per_array=max_problems_per_array))
        return problems


@dataclass(frozen=True)
class Problem:
    """One integrity problem found by ``verify``: which group, array and rows, and what."""

    key: str
    array: str
    rows: tuple
    what: str

    def __str__(self) -> str:
        where = "/".join(p for p in (self.key, self.array) if p) or "store"
        return f"{where}: {self.what}" + (f" (rows {_ranges(self.rows)})" if len(self.rows) else "")


def _ranges(rows) -> str:
    rows = sorted(int(r) for r in rows)
    parts, start = [], None
    for i, r in enumerate(rows):
        if start is None:
            start = r
        if i + 1 == len(rows) or rows[i + 1] != r + 1:
            parts.append(str(start) if start == r else f"{start}-{r}")
            start = None
    text = ", ".join(parts[:10])
    return text + (f", ... ({len(rows)} rows)" if len(parts) > 10 else "")


class ModelGroup:
    """A read-only snapshot of one model group: its attributes and committed rows.

    Everything past the committed ``n_rows`` is ignored: it may belong to a write that a
    crash interrupted.
    """

    def __init__(self, store: Store, group: zarr.Group):
        self.store = store
        self._group = group
        self.key = group.basename
        attrs = dict(group.attrs)
        _check_encoding(attrs, f"model group {store.path}/{self.key}")
        self.attrs = attrs
        self.n_rows = int(attrs.get("n_rows", 0))

    def __repr__(self) -> str:
        return f"ModelGroup({self.key!r}, model={self.model_name!r}, rows={self.n_rows})"

    @property
    def model_name(self) -> str:
        return self.attrs.get("model_name", "")

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec.from_attrs(self.attrs)

    def array_names(self) -> list[str]:
        """Names of the data arrays (pooled embeddings and attention maps), sorted."""
        return [n for n in self._members() if n.startswith(("layer_", "attention_"))]

    def _members(self) -> list[str]:
        return _members(self.store.path / self.key, "array")

    def _array(self, name: str) -> zarr.Array:
        try:
            arr = self._group[name]
        except Exception as exc:  # noqa: BLE001 - unreadable metadata is damage, not a bug
            raise StoreError(f"array {self.store.path}/{self.key}/{name} has unreadable metadata ({exc}); "
                             f"the store is damaged. Run `embedcache verify {self.store.path}`.") from exc
        _check_encoding(arr.attrs, f"array {self.store.path}/{self.key}/{name}")
        if arr.shape[0] < self.n_rows:
            raise StoreError(
                f"array {self.key}/{name} has {arr.shape[0]} rows but the group committed {self.n_rows}; "
                f"the store is damaged. Run `embedcache verify {self.store.path}`."
            )
        return arr

    def row_array(self, name: str) -> np.ndarray:
        """A per-row array (``digest``, ``sequence``, ``length``, ``n_tokens``, ``n_windows``)."""
        if self.n_rows == 0:
            return np.zeros(0, dtype=object if ROW_ARRAYS[name] is str else ROW_ARRAYS[name])
        return self._array(name)[: self.n_rows]

    def digests(self) -> np.ndarray:
        """Hex digests of the committed rows, in row order."""
        return self.row_array("digest")

    def index(self) -> dict[str, int]:
        """Digest to row number, for the committed rows."""
        return {str(d): i for i, d in enumerate(self.digests().tolist())}

    def filled(self, name: str) -> np.ndarray:
        """Boolean (n_rows,): which committed rows hold array ``name`` (all False if absent)."""
        if self.n_rows == 0 or mask_name(name) not in self._group:
            return np.zeros(self.n_rows, dtype=bool)
        return np.asarray(self._array(mask_name(name))[: self.n_rows], dtype=bool)

    def read(self, name: str, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Values of data array ``name`` at ``rows`` (any order, repeats allowed), as float32."""
        rows = np.asarray(rows, dtype=np.int64)
        arr = self._array(name)
        if rows.size == 0:
            return np.zeros((0, *arr.shape[1:]), dtype=np.float32)
        if rows.min() < 0 or rows.max() >= self.n_rows:
            raise IndexError(f"rows outside the {self.n_rows} committed rows of {self.key}")
        lo, hi = int(rows.min()), int(rows.max()) + 1
        unique, inverse = np.unique(rows, return_inverse=True)
        if hi - lo <= 2 * unique.size:
            # Dense requests (a task's features) read fastest as one slice, gathered in memory.
            block = arr[lo:hi]
            if rows.size == hi - lo and (rows == np.arange(lo, hi)).all():
                return np.asarray(block, dtype=np.float32)
            return np.asarray(block[rows - lo], dtype=np.float32)
        # Sparse requests read only the chunks they touch; orthogonal selection wants sorted
        # unique rows, expanded back to the caller's order.
        values = arr.get_orthogonal_selection(_rows_selection(unique, arr.ndim))
        return np.asarray(values, dtype=np.float32)[inverse]

    def fill_counts(self) -> dict[str, int]:
        """Rows filled per data array."""
        return {name: int(self.filled(name).sum()) for name in self.array_names()}

    def info(self) -> dict:
        """A summary: key, model name, digests, rows, arrays with their fill, bytes on disk."""
        a = self.attrs
        return {
            "key": self.key,
            "name": self.model_name,
            "digest": a.get("param_digest"),
            "rows": self.n_rows,
            "arrays": self.fill_counts(),
            "feature_dim": a.get("architecture", {}).get("embed_dim"),
            **{k: a.get(k) for k in ("max_tokens", "alphabet", "long", "window_overlap", "dtype", "store_dtype")},
            "variant": a.get("variant"),
            "random_weights": bool(a.get("random_weights", False)),
            "created": a.get("created"),
            "disk_bytes": self.store.disk_bytes(self.key),
        }

    # ----------------------------------------------------------------------------------
    # Integrity
    # ----------------------------------------------------------------------------------

    def verify(self, *, max_problems_per_array: int = 20) -> list[Problem]:
        """Check the committed rows: readable chunks, digests, lengths, finite values.

        Every storage chunk (shard) that should exist is read back; a missing, truncated
        or corrupted one (checksums on every chunk) is reported with its rows. Each row's
        digest is recomputed from its sequence, and every filled value must be finite.

        Returns
        -------
        list of Problem
            Empty when the group is sound.
        """
        problems: list[Problem] = []
        n = self.n_rows
        names = self._members()

        def report(name, rows, what):
            problems.append(Problem(self.key, name, tuple(int(r) for r in rows), what))

        def array(name):
            try:
                return self._array(name)
            except StoreError as exc:
                report(name, (), str(exc))
                return None

        def load(name, expect_file=lambda lo, hi: True):
            arr = array(name)
            if arr is None:
                return None
            values, bad = _read_checked(self.store.path / self.key / name, arr, n, expect_file)
            for rows, what in bad[:max_problems_per_array]:
                report(name, rows, what)
            return values

        for name in ROW_ARRAYS:
            if name not in names:
                report(name, (), "row array missing")
        rows = {name: load(name) for name in ROW_ARRAYS if name in names}
        if len(rows) < len(ROW_ARRAYS) or any(v is None for v in rows.values()):
            return problems
        wrong_digest, wrong_length, duplicate, seen = [], [], [], set()
        for i, (seq, dig, length) in enumerate(zip(rows["sequence"].tolist(), rows["digest"].tolist(),
                                                   rows["length"].tolist())):
            try:
                ok = sequence_digest(str(seq)) == str(dig)
            except UnicodeEncodeError:
                ok = False
            if not ok:
                wrong_digest.append(i)
            elif len(seq) != int(length):
                wrong_length.append(i)
            if dig in seen:
                duplicate.append(i)
            seen.add(dig)
        if wrong_digest:
            report("digest", wrong_digest, "digest does not match the row's sequence")
        if wrong_length:
            report("length", wrong_length, "length does not match the row's sequence")
        if duplicate:
            report("digest", duplicate, "sequence stored twice")

        for name in names:
            if name.startswith("has_") and name[4:] not in names:
                report(name[4:], (), "data array missing or its metadata unreadable")
        for name in self.array_names():
            if mask_name(name) not in names:
                report(name, (), f"fill mask {mask_name(name)} missing")
                continue
            mask = load(mask_name(name))
            arr = array(name)
            if mask is None or arr is None:
                continue
            mask = np.asarray(mask, dtype=bool)
            bad = []
            # A shard holding no filled row may legitimately never have been written.
            for lo, hi, block, err in _iter_shards(self.store.path / self.key / name, arr, n,
                                                   lambda lo, hi: mask[lo:hi].any()):
                if err:
                    bad.append((range(lo, hi), err))
                    continue
                finite = np.isfinite(block.reshape(block.shape[0], -1)).all(axis=1)
                nonfinite = np.flatnonzero(mask[lo:hi] & ~finite) + lo
                if nonfinite.size:
                    bad.append((nonfinite, "NaN or inf values"))
            for rows_, what in bad[:max_problems_per_array]:
                report(name, rows_, what)
        return problems


def _rows_selection(rows: np.ndarray, ndim: int) -> tuple:
    return (rows,) + (slice(None),) * (ndim - 1)


def _set_rows(arr: zarr.Array, rows: np.ndarray, values: np.ndarray) -> None:
    """Write ``values`` at sorted ``rows``, one read-modify-write per shard touched.

    Zarr 3.1 cannot write an orthogonal selection into a sharded array (a shape mismatch
    inside the sharding codec), and a shard is rewritten whole by any partial write anyway.
    """
    step = _shard_rows(arr)
    shard_of = rows // step
    for s in np.unique(shard_of):
        sel = shard_of == s
        lo, hi = int(rows[sel][0]), int(rows[sel][-1]) + 1
        block = np.asarray(arr[lo:hi])
        block[rows[sel] - lo] = values[sel]
        arr[lo:hi] = block


def _members(directory: Path, node_type: str) -> list[str]:
    """Names of the child groups or arrays of a directory, sorted.

    Listed from the file system rather than through Zarr, which warns about every entry
    that is not a node (the lock file, temporary files of a write in progress).
    """
    out = []
    for child in directory.iterdir():
        meta = child / "zarr.json"
        if meta.is_file():
            try:
                found = json.loads(meta.read_text()).get("node_type")
            except (OSError, ValueError):
                found = None  # damaged metadata: listed, so that reading it reports the damage
            if found in (node_type, None):
                out.append(child.name)
    return sorted(out)


def _shard_rows(arr: zarr.Array) -> int:
    return int(arr.metadata.chunk_grid.chunk_shape[0])


def _iter_shards(array_dir: Path, arr: zarr.Array, n: int, expect_file):
    """Yield ``(lo, hi, values, error)`` per shard of the first ``n`` rows."""
    step = _shard_rows(arr)
    for s, lo in enumerate(range(0, n, step)):
        hi = min(lo + step, n)
        key = arr.metadata.encode_chunk_key((s,) + (0,) * (arr.ndim - 1))
        if expect_file(lo, hi) and not (array_dir / key).is_file():
            yield lo, hi, None, f"chunk file {key} is missing"
            continue
        try:
            block, err = arr[lo:hi], None
        except Exception as exc:  # noqa: BLE001 - any decode failure is damage to report
            block, err = None, f"chunk file {key} is unreadable (truncated or corrupted: {type(exc).__name__})"
        yield lo, hi, block, err


def _read_checked(array_dir: Path, arr: zarr.Array, n: int, expect_file):
    """Read the first ``n`` rows shard by shard; unreadable shards become fill values."""
    out = np.empty((n, *arr.shape[1:]), dtype=object if arr.dtype.kind in "OTU" else arr.dtype)
    if out.dtype == object:
        out[:] = ""
    else:
        out[:] = arr.fill_value
    bad = []
    for lo, hi, block, err in _iter_shards(array_dir, arr, n, expect_file):
        if err:
            bad.append((np.arange(lo, hi), err))
        else:
            out[lo:hi] = block
    return out, bad


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


class StoreWriting:
    """What the holder of the writer's lock may do: open or create model groups for writing."""

    def __init__(self, store: Store):
        self.store = store

    def group(self, spec: ModelSpec, attrs: Mapping, **writer_options) -> "GroupWriter":
        """The writer of the group for ``spec``, created with ``attrs`` if it is new.

        Parameters
        ----------
        spec
            The model spec; its key names the group.
        attrs
            Descriptive attributes for a new group (model name, architecture, tokenizer...).
            Encoding, the spec's fields, versions, creation time and ``n_rows`` are added here.
        **writer_options
            ``block_rows``, ``block_bytes``, ``commit_seconds`` of :class:`GroupWriter`.
        """
        root = zarr.open_group(str(self.store.path), mode="r+", zarr_format=3)
        if spec.key not in root:
            full = _encoding_attrs(
                **dict(attrs),
                **asdict(spec),
                created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                versions=_package_versions(),
                n_rows=0,
            )
            root.create_group(spec.key, attributes=full)
        return GroupWriter(self.store, spec, **writer_options)


def _chunking(row_shape: tuple, itemsize: int) -> tuple[int, int]:
    row_bytes = max(1, math.prod(row_shape) * itemsize)
    chunk = 1 << max(0, int(math.log2(max(1, _CHUNK_BYTES // row_bytes))))
    chunk = min(chunk, _MAX_CHUNK_ROWS)
    return chunk, chunk * _CHUNKS_PER_SHARD


def _create(g: zarr.Group, name: str, dtype, row_shape: tuple, dims: tuple, *, rows: int, **attrs) -> zarr.Array:
    if dtype is str:
        chunk, shard = _ROW_CHUNK, _ROW_CHUNK * _CHUNKS_PER_SHARD
    else:
        chunk, shard = _chunking(row_shape, np.dtype(dtype).itemsize)
    return g.create_array(
        name,
        shape=(rows, *row_shape),
        dtype=dtype,
        chunks=(chunk, *row_shape),
        shards=(shard, *row_shape),
        compressors=_COMPRESSORS,
        fill_value="" if dtype is str else (False if dtype == "bool" else 0),
        dimension_names=dims,
        attributes=_encoding_attrs(**attrs),
    )


@dataclass
class _Pending:
    """Rows waiting to be written: new rows to append, and new arrays for old rows."""

    digest: list = field(default_factory=list)
    sequence: list = field(default_factory=list)
    length: list = field(default_factory=list)
    n_tokens: list = field(default_factory=list)
    n_windows: list = field(default_factory=list)
    new_values: dict = field(default_factory=dict)  # name -> list of (row offset, value)
    old_values: dict = field(default_factory=dict)  # name -> list of (row, value)
    nbytes: int = 0


class GroupWriter:
    """Buffered, crash-safe writes to one model group (only inside :meth:`Store.writing`).

    New rows are appended in blocks; each flush writes data arrays, then row arrays and
    fill masks, then commits ``n_rows``. Values for rows already committed (an array they
    lack) are written, then their fill mask is set. A flush happens when the buffer holds
    ``block_rows`` rows or ``block_bytes`` bytes, or ``commit_seconds`` after the last one
    (or 20 times the last flush's duration, if longer).

    Parameters
    ----------
    store, spec
        The store (whose lock the caller holds) and the group's spec.
    block_rows, block_bytes, commit_seconds
        Flush thresholds: they bound memory and the work a crash can lose.
    """

    def __init__(self, store: Store, spec: ModelSpec, *, block_rows: int = 4096,
                 block_bytes: int = 64 << 20, commit_seconds: float = 2.0):
        self.store = store
        self.spec = spec
        self.key = spec.key
        self._g = zarr.open_group(str(store.path / spec.key), mode="r+", zarr_format=3)
        self.n_rows = int(self._g.attrs.get("n_rows", 0))
        self.block_rows = block_rows
        self.block_bytes = block_bytes
        self.commit_seconds = commit_seconds
        self._pending = _Pending()
        self._last_flush = time.monotonic()
        self._flush_seconds = 0.0
        self.rows_written = 0
        self.values_written: dict[str, int] = {}
        self._ensure_row_arrays()

    def snapshot(self) -> ModelGroup:
        """A reader's view of the group as committed now."""
        return ModelGroup(self.store, zarr.open_group(str(self.store.path / self.key), mode="r", zarr_format=3))

    def _ensure_row_arrays(self) -> None:
        # Checked on every open, not only at creation: a writer killed while creating the
        # group leaves some of them missing, and nothing was committed yet.
        missing = [name for name in ROW_ARRAYS if name not in self._g]
        if missing and self.n_rows:
            raise StoreError(f"model group {self.store.path}/{self.key} has {self.n_rows} rows but lacks "
                             f"{missing}; the store is damaged. Run `embedcache verify {self.store.path}`.")
        for name in missing:
            _create(self._g, name, ROW_ARRAYS[name], (), ("row",), rows=0, kind="row")

    def ensure_arrays(self, names: Sequence[str], *, feature_dim: int) -> None:
        """Create data arrays and fill masks the group lacks, sized to its committed rows.

        A new array reads "not filled" for every committed row. Data array and mask are
        checked apart, so a writer killed between creating the two is repaired here.
        """
        dtype = self.spec.store_dtype
        T = int(self.spec.max_tokens)
        for name in names:
            kind, layer, last = parse_array_name(name)
            if name not in self._g:
                if kind == "pooled":
                    _create(self._g, name, dtype, (feature_dim,), ("row", "feature"), rows=self.n_rows,
                            kind="pooled", layer=layer, pool=last)
                else:
                    _create(self._g, name, dtype, (T, T), ("row", "query", "key"), rows=self.n_rows,
                            kind="attention", layer=layer, head=last)
            if mask_name(name) not in self._g:
                _create(self._g, mask_name(name), "bool", (), ("row",), rows=self.n_rows, kind="mask", of=name)

    def add_new_row(self, digest: str, sequence: str, n_tokens: int, n_windows: int,
                    values: Mapping[str, np.ndarray]) -> None:
        """Queue a new row (a sequence the group lacks) with the arrays computed for it."""
        p = self._pending
        offset = len(p.digest)
        p.digest.append(digest)
        p.sequence.append(sequence)
        p.length.append(len(sequence))
        p.n_tokens.append(int(n_tokens))
        p.n_windows.append(int(n_windows))
        for name, value in values.items():
            p.new_values.setdefault(name, []).append((offset, value))
            p.nbytes += value.nbytes
        p.nbytes += len(sequence) + 100
        self._maybe_flush()

    def add_old_row(self, row: int, values: Mapping[str, np.ndarray]) -> None:
        """Queue values of arrays a committed row lacks."""
        if not 0 <= row < self.n_rows:
            raise IndexError(f"row {row} is not committed in {self.key}")
        p = self._pending
        for name, value in values.items():
            p.old_values.setdefault(name, []).append((int(row), value))
            p.nbytes += value.nbytes
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        p = self._pending
        # A flush rewrites the partly filled shards whatever it adds; spacing flushes at least
        # 20 times their own duration keeps that under 5% of the time, however slow the model.
        interval = max(self.commit_seconds, 20 * self._flush_seconds)
        due = time.monotonic() - self._last_flush >= interval
        if len(p.digest) >= self.block_rows or p.nbytes >= self.block_bytes or due:
            self.flush()

    def flush(self) -> None:
        """Write everything queued, in the crash-safe order, and commit the new row count."""
        p, self._pending = self._pending, _Pending()
        t0 = time.monotonic()
        with zarr.config.set({"array.write_empty_chunks": True}):
            if p.old_values:
                self._write_old(p.old_values)
            if p.digest:
                self._append(p)
        self._last_flush = time.monotonic()
        self._flush_seconds = self._last_flush - t0

    def _stack(self, items: list) -> np.ndarray:
        return np.stack([v for _, v in items]).astype(self.spec.store_dtype, copy=False)

    def _write_old(self, old_values: dict) -> None:
        for name, items in old_values.items():
            rows = np.array([r for r, _ in items], dtype=np.int64)
            order = np.argsort(rows, kind="stable")
            rows = rows[order]
            values = self._stack(items)[order]
            arr = self._g[name]
            _set_rows(arr, rows, values)
            # The mask flips only after the data is on disk: a crash between leaves "not filled".
            _set_rows(self._g[mask_name(name)], rows, np.ones(rows.size, dtype=bool))
            self.values_written[name] = self.values_written.get(name, 0) + rows.size

    def _append(self, p: _Pending) -> None:
        lo, b = self.n_rows, len(p.digest)
        hi = lo + b
        members = _members(self.store.path / self.key, "array")
        data_names = [n for n in members if n.startswith(("layer_", "attention_"))]
        # Every array of the group grows together, so the group stays one rectangular dataset;
        # a larger leftover from a killed write shrinks back (only uncommitted rows lie there).
        for name in members:
            arr = self._g[name]
            if arr.shape[0] != hi:
                arr.resize((hi, *arr.shape[1:]))
        for name in data_names:
            items = p.new_values.get(name)
            if not items:
                continue
            offsets = np.array([o for o, _ in items], dtype=np.int64)
            values = self._stack(items)
            arr = self._g[name]
            if offsets.size == b and (offsets == np.arange(b)).all():
                arr[lo:hi] = values
            else:
                _set_rows(arr, offsets + lo, values)
            self.values_written[name] = self.values_written.get(name, 0) + offsets.size
        self._g["digest"][lo:hi] = np.array(p.digest, dtype=object)
        self._g["sequence"][lo:hi] = np.array(p.sequence, dtype=object)
        self._g["length"][lo:hi] = np.array(p.length, dtype=np.int64)
        self._g["n_tokens"][lo:hi] = np.array(p.n_tokens, dtype=np.int32)
        self._g["n_windows"][lo:hi] = np.array(p.n_windows, dtype=np.int32)
        for name in data_names:
            # Written for every array, computed or not: a killed write may have left stale
            # True values in these rows, which now belong to other sequences.
            mask = np.zeros(b, dtype=bool)
            items = p.new_values.get(name)
            if items:
                mask[[o for o, _ in items]] = True
            self._g[mask_name(name)][lo:hi] = mask
        # The commit: only now do readers and resumed builds see these rows.
        self._g.attrs["n_rows"] = hi
        self.n_rows = hi
        self.rows_written += b
