"""Opening a store and reading it: model groups, the rows of a task, their values.

Reading never locks and never writes. Each :class:`ModelGroup` is a snapshot of one
commit: its manifest (:mod:`.manifest`) names every chunk, and arrays are read through
a :class:`~.view.GroupView` of it, which checks each chunk against the manifest. Objects
a later commit superseded are deleted a few commits on; a read that misses one starts
again from the newest commit (rows, once committed, keep their number and values).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from dataclasses import replace
from typing import Mapping, Sequence

import numpy as np
import zarr

from embedcache.errors import DamagedChunkError, StoreError
from embedcache.store import access, index, manifest
from embedcache.store import chunks as checked_chunks
from embedcache.store.layout import (
    ROW_ARRAYS,
    GroupInfo,
    ModelSpec,
    check_encoding,
    is_data_name,
    mask_name,
)
from embedcache.store.gather import gather
from embedcache.store.view import GroupView


class Store:
    """An embedding cache: a local directory or an fsspec URL holding a Zarr v3 hierarchy.

    Parameters
    ----------
    location
        ``cache.zarr``, or a URL such as ``s3://bucket/cache.zarr``. Nothing needs to exist
        until something is written.
    storage_options
        Options of the fsspec filesystem of a URL (endpoint, credentials...); the usual
        environment variables apply too.
    """

    def __init__(self, location, storage_options: Mapping | None = None):
        self.remote = access.is_url(location)
        self.path = str(location) if self.remote else Path(location)
        self.storage_options = dict(storage_options or {})
        self._zstore = None
        # Arrays opened per model key, for the commit they were opened at (ModelGroup._open).
        self._opened: dict[str, tuple] = {}

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    @property
    def zstore(self):
        """The Zarr store object (opened on first use)."""
        if self._zstore is None:
            self._check_not_a_file()
            self._zstore = access.open_store(self.path if not self.remote else self.path, self.storage_options)
        return self._zstore

    @property
    def lock_path(self) -> Path:
        from embedcache.store.layout import LOCK_NAME

        return self.path / LOCK_NAME

    def _check_not_a_file(self) -> None:
        # An environment fault (exit 1 at the command line), not bad input.
        if not self.remote and self.path.exists() and not self.path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(self.path))

    def exists(self) -> bool:
        """Whether the location holds a store (a root ``zarr.json``)."""
        self._check_not_a_file()
        if not self.remote and not self.path.is_dir():
            return False
        return access.get_bytes(self.zstore, "zarr.json") is not None

    def _is_empty(self) -> bool:
        if not self.remote and not self.path.exists():
            return True
        from embedcache.store.layout import LEASE_NAME, LOCK_NAME

        # Hidden names: another writer's root document being written (access.create_exclusive).
        return not {n for n in access.list_dir(self.zstore, "") if not n.startswith(".")} - {LOCK_NAME, LEASE_NAME}

    def root_attrs(self) -> dict:
        """The root's attributes, after checking it is a store this release reads."""
        if not self.exists():
            if not self._is_empty():
                raise StoreError(
                    f"{self.path} exists but is not an embedcache store (no zarr.json). "
                    "Pass the path of a cache written by `embedcache build`, or a new path."
                )
            if self.remote:
                access.check_container(self.zstore)
            raise StoreError(
                f"no embedding cache at {self.path}. Build one first: "
                f"embedcache build INPUT --model MODEL --cache {self.path}"
            )
        try:
            meta = access.get_json(self.zstore, "zarr.json")
        except ValueError as exc:  # a damaged zarr.json is a store problem, not a bug
            raise StoreError(f"cannot open the store {self.path}: {exc}. Run `embedcache verify {self.path}`.") from exc
        attrs = meta.get("attributes") if isinstance(meta, dict) else None
        if not isinstance(attrs, dict):
            raise StoreError(f"cannot open the store {self.path}: its zarr.json is not a Zarr group document. "
                             f"Run `embedcache verify {self.path}`.")
        check_encoding(attrs, f"store {self.path}", store=str(self.path))
        return attrs

    def keys(self) -> list[str]:
        """The model keys present, sorted; ``[]`` where nothing is stored yet."""
        if not self.exists() and self._is_empty():
            return []
        self.root_attrs()
        return self.members("", "group")

    def members(self, prefix: str, node_type: str) -> list[str]:
        """Child groups or arrays under ``prefix``, sorted (damaged metadata included, so
        that reading it reports the damage)."""
        out = []
        base = f"{prefix}/" if prefix else ""
        for child in access.list_dir(self.zstore, prefix):
            try:
                meta = access.get_json(self.zstore, f"{base}{child}/zarr.json")
            except ValueError:
                out.append(child)
                continue
            if meta is not None and (not isinstance(meta, dict) or meta.get("node_type") == node_type):
                out.append(child)  # not a document at all: damage, reported when read
        return out

    def groups(self) -> list["ModelGroup"]:
        """A :class:`ModelGroup` snapshot for every model key; :class:`StoreError` if there is no store."""
        self.root_attrs()
        return [self.group(key) for key in self.keys()]

    def group(self, key: str) -> "ModelGroup":
        """The model group named ``key`` as last committed; :class:`StoreError` if there is none."""
        try:
            meta = access.get_json(self.zstore, f"{key}/zarr.json")
        except ValueError as exc:
            raise StoreError(f"model group {self.path}/{key} has unreadable metadata ({exc}); "
                             "the store is damaged.") from exc
        if not isinstance(meta, dict) or meta.get("node_type") != "group":
            self.root_attrs()
            if meta is not None:
                raise StoreError(f"model group {self.path}/{key} has unreadable metadata (not a group "
                                 f"document); the store is damaged. Run `embedcache verify {self.path}`.")
            raise StoreError(
                f"store {self.path} has no model group {key!r}; it holds {self.keys() or 'none'}. "
                "Run `embedcache info` to list them."
            )
        attrs = meta.get("attributes", {})
        if not isinstance(attrs, dict):
            raise StoreError(f"model group {self.path}/{key} has unreadable attributes; the store is damaged.")
        check_encoding(attrs, f"model group {self.path}/{key}", store=str(self.path))
        # A group being created has no commit yet: it reads as empty.
        return ModelGroup(self, key, attrs, manifest.head(self, key) or manifest.Manifest(generation=-1))

    def disk_bytes(self, key: str | None = None) -> int:
        """Bytes stored in the whole store, or in one model group."""
        return access.size_of(self.zstore, key or "")

    def verify(self, *, max_problems_per_array: int = 20):
        """Check every model group; see :func:`embedcache.store.verify.verify_store`."""
        from embedcache.store.verify import verify_store

        return verify_store(self, max_problems_per_array=max_problems_per_array)


class ModelGroup:
    """A read-only snapshot of one model group: its attributes and committed rows."""

    def __init__(self, store: Store, key: str, attrs: Mapping, committed: "manifest.Manifest"):
        self.store = store
        self.key = key
        check_encoding(attrs, f"model group {store.path}/{key}", store=str(store.path))
        self.manifest = committed
        self.n_rows = committed.n_rows
        self.runs = [tuple(r) for r in committed.runs]
        self.attrs = {**attrs, "n_rows": self.n_rows, "index_runs": [list(r) for r in self.runs]}
        self.view = GroupView(store.zstore, key, committed, attrs, where=str(store.path))

    @property
    def generation(self) -> int:
        """The commit this snapshot shows (0: the empty group)."""
        return self.manifest.generation

    def zarr_store(self) -> GroupView:
        """A read-only Zarr store of this snapshot, for any Zarr client::

            xr.open_zarr(group.zarr_store(), consolidated=False)
        """
        return self.view

    def __repr__(self) -> str:
        return f"ModelGroup({self.key!r}, model={self.model_name!r}, rows={self.n_rows})"

    @property
    def model_name(self) -> str:
        return self.attrs.get("model_name", "")

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec.from_attrs(self.attrs)

    def refreshed(self) -> "ModelGroup":
        """The same group as committed now."""
        return self.store.group(self.key)

    def members(self) -> list[str]:
        """Names of all arrays of the group (data, masks, per-row), sorted."""
        return sorted(n for n in self.manifest.arrays if "/" not in n)

    def array_names(self) -> list[str]:
        """Names of the data arrays (pooled embeddings and attention maps), sorted."""
        return [n for n in self.members() if is_data_name(n)]

    def _open(self, path: str) -> zarr.Array:
        """Array ``path`` of the group (``KeyError`` if absent), its metadata read once per
        commit: a task's read then costs no metadata round trips, while a commit that adds
        rows (and resizes the arrays) or index runs makes the next snapshot open them anew."""
        held = self.store._opened.get(self.key)
        if held is None or held[0] != self.generation:
            held = self.store._opened[self.key] = (self.generation, {})
        arrays = held[1]
        if path not in arrays:
            if path not in self.manifest.arrays:
                raise KeyError(path)
            arrays[path] = zarr.open_array(store=self.view, path=path, mode="r", zarr_format=3)
        return arrays[path]

    def _settled(self, fn):
        """``fn(group)`` on this snapshot or, if a chunk it needs was deleted since (superseded
        by later commits), on the newest; damage of the newest commit is raised."""
        group = self
        for _ in range(10):
            try:
                return fn(group)
            except DamagedChunkError:
                newer = group.refreshed()
                if newer.generation == group.generation:
                    raise
                group = newer
        return fn(group)

    def array(self, name: str) -> zarr.Array:
        """A member array, checked for its encoding and committed length."""
        try:
            arr = self._open(name)
        except KeyError:
            raise StoreError(f"model group {self.store.path}/{self.key} has no array {name!r}") from None
        except Exception as exc:  # noqa: BLE001 - unreadable metadata is damage, not a bug
            raise StoreError(f"array {self.store.path}/{self.key}/{name} has unreadable metadata ({exc}); "
                             f"the store is damaged. Run `embedcache verify {self.store.path}`.") from exc
        check_encoding(arr.attrs, f"array {self.store.path}/{self.key}/{name}", store=str(self.store.path))
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
        rows = np.arange(self.n_rows)
        return self._settled(lambda g: g._values(name, g.array(name), rows))

    def digests(self) -> np.ndarray:
        """Hex digests of the committed rows, in row order."""
        return self.row_array("digest")

    def rows_of_keys(self, keys: np.ndarray) -> np.ndarray:
        """Row of each (n, 2) digest key, ``-1`` where absent; costs what the keys cost.

        A commit may retire an index run between reading this snapshot and reading the
        run; the lookup then starts again from the group as committed now.
        """
        self._check_runs()
        rows = self._settled(lambda g: index.lookup(g._open, g.runs, keys, where=(self.store.path, self.key)))
        rows[rows >= self.n_rows] = -1  # rows committed after this snapshot
        return rows

    def _check_runs(self) -> None:
        """Refuse an index whose runs do not cover the committed rows once each: a lookup
        would miss rows, and a build store them twice."""
        ends = [0] + [b for _, b in self.runs]
        if any(a != e for (a, _), e in zip(self.runs, ends)) or ends[-1] != self.n_rows or any(
                index.run_path(a, b) not in self.manifest.arrays for a, b in self.runs):
            raise StoreError(f"the digest index of {self.store.path}/{self.key} is damaged (its runs {self.runs} "
                             f"do not cover rows 0-{self.n_rows - 1} once). It is derived data: rebuild it with "
                             f"`embedcache verify {self.store.path} --repair`, then rerun.")

    def rows_of(self, digests: Sequence[str]) -> np.ndarray:
        """Row of each hex digest, ``-1`` where absent."""
        return self.rows_of_keys(index.keys_of_hex(digests))

    def index(self, digests: Sequence[str]) -> dict[str, int]:
        """Digest to row for those of ``digests`` the group holds (cost: the digests given)."""
        digests = list(digests)
        rows = self.rows_of(digests) if digests else np.zeros(0, dtype=np.int64)
        return {d: int(r) for d, r in zip(digests, rows.tolist()) if r >= 0}

    def filled(self, name: str, rows: np.ndarray | None = None) -> np.ndarray:
        """Which committed rows (all, or ``rows``) hold array ``name`` (all False if it is absent)."""
        rows = np.arange(self.n_rows) if rows is None else np.asarray(rows, dtype=np.int64)
        return self._settled(lambda g: g._filled(name, rows))

    def _filled(self, name: str, rows: np.ndarray) -> np.ndarray:
        n = len(rows)
        try:
            if self.n_rows == 0:
                raise KeyError(name)
            self._open(mask_name(name))
        except KeyError:
            return np.zeros(n, dtype=bool)
        mask = self.array(mask_name(name))
        # A mask chunk the manifest does not list was never written: "not filled". A listed
        # one that is lost or foreign is damage (GroupView raises).
        return np.asarray(self._values(mask_name(name), mask, rows,
                                       needed=lambda r: np.zeros(len(r), dtype=bool)), dtype=bool)

    def read(self, name: str, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Values of data array ``name`` at ``rows`` (any order, repeats allowed), as float32."""
        rows = np.asarray(rows, dtype=np.int64)
        arr = self.array(name)
        if rows.size == 0:
            return np.zeros((0, *arr.shape[1:]), dtype=np.float32)
        if rows.min() < 0 or rows.max() >= self.n_rows:
            raise IndexError(f"rows outside the {self.n_rows} committed rows of {self.key}")
        return self._settled(lambda g: np.asarray(
            g._values(name, g.array(name), rows, needed=lambda r: g.filled(name, r)), dtype=np.float32))

    def _values(self, name: str, arr: zarr.Array, rows: np.ndarray, needed=None) -> np.ndarray:
        """``arr[rows]``, never fill values where a chunk is lost: :class:`DamagedChunkError`.

        Every committed row is needed unless ``needed(rows)`` says otherwise (a chunk of
        rows never filled may not exist).
        """
        if not checked_chunks.is_sharded(arr):
            return gather(arr, rows, where=(self.store.path, self.key, name))
        return checked_chunks.read_rows(arr, rows, store=self.store.path, key=self.key, name=name,
                                        needed=needed or (lambda r: np.ones(len(r), dtype=bool)))

    def fill_counts(self) -> dict[str, int]:
        """Rows filled per data array."""
        return {name: int(self.filled(name).sum()) for name in self.array_names()}

    @property
    def about(self) -> GroupInfo:
        """What the group is, from its attributes and listing alone (cheap)."""
        return GroupInfo.from_attrs(self.key, self.attrs, rows=self.n_rows, arrays=self.array_names())

    def info(self) -> GroupInfo:
        """:attr:`about` plus rows filled per array (layers by number) and bytes stored (reads every mask)."""
        from embedcache.util.ranges import array_order

        filled = dict(sorted(self.fill_counts().items(), key=lambda item: array_order(item[0])))
        return replace(self.about, filled=filled, disk_bytes=self.store.disk_bytes(self.key))

    def verify(self, *, max_problems_per_array: int = 20):
        from embedcache.store.verify import verify_group

        return verify_group(self, max_problems_per_array=max_problems_per_array)
