"""Writing: many writers compute apart and commit batches of rows one at a time.

A writer buffers the rows it computed. A *commit* takes the store's commit lock (see
:mod:`.lock`) and, holding it, re-reads the group as committed now, drops what other
writers committed meanwhile (a row already present becomes at most a fill of the
arrays it lacks; a value already filled is not written again), then writes in one
order: data arrays, then the per-row arrays and fill masks, then the index run of the
new rows, then the commit itself (``n_rows`` and ``index_runs`` in one metadata
document). Readers and resumed builds ignore everything at or past the committed
``n_rows``, so a writer killed at any moment leaves only whole rows; the next commit
overwrites its leftovers and deletes index runs no commit refers to.
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

import numpy as np
import zarr

from embedcache.errors import StoreError
from embedcache.store import access, index
from embedcache.store.layout import (
    INDEX_GROUP,
    ROW_ARRAYS,
    ModelSpec,
    create_array,
    encoding_attrs,
    is_data_name,
    mask_name,
    package_versions,
    parse_array_name,
    shard_rows,
)
from embedcache.store.lock import commit_lock
from embedcache.store.read import ModelGroup, Store

# CF's "coordinates" attribute on each data array: xarray.open_zarr then makes the row digest
# (the row's address) a coordinate of every (row, ...) variable.
ROW_COORDINATES = "digest"


class StoreWriting:
    """Opens or creates model groups for writing (a context manager, for compatibility).

    Parameters
    ----------
    store
        The store; created on first use.
    timeout
        Seconds one commit waits for the commit lock.
    """

    def __init__(self, store: Store, *, timeout: float = 600.0):
        self.store = store
        self.timeout = timeout
        # Refuses a foreign or other-version location before writing anything, the lock included.
        if store.exists():
            store.root_attrs()
            return
        if not store._is_empty():
            raise StoreError(f"{store.path} exists but is not an embedcache store (no zarr.json); "
                             "choose a new path for the cache.")
        with commit_lock(store, timeout):
            if not store.exists():
                zarr.open_group(store=store.zstore, mode="a", zarr_format=3, attributes=encoding_attrs())

    def __enter__(self) -> "StoreWriting":
        return self

    def __exit__(self, *exc) -> None:
        return None

    def group(self, spec: ModelSpec, attrs: Mapping, **writer_options) -> "GroupWriter":
        """The writer of the group for ``spec``, created with ``attrs`` if it is new.

        Parameters
        ----------
        spec
            The model spec; its key names the group.
        attrs
            Descriptive attributes for a new group (model name, architecture, tokenizer...).
            Encoding, the spec's fields, versions, creation time and the commit are added here.
        **writer_options
            ``block_rows``, ``block_bytes``, ``commit_seconds`` of :class:`GroupWriter`.
        """
        with commit_lock(self.store, self.timeout):
            root = self.store.zgroup("", "r+")
            if spec.key not in self.store.members("", "group"):
                full = encoding_attrs(
                    **dict(attrs), **asdict(spec),
                    created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    versions=package_versions(), n_rows=0, index_runs=[],
                )
                root.create_group(spec.key, attributes=full, overwrite=True)
            g = self.store.zgroup(spec.key, "r+")
            n_rows = int(g.attrs.get("n_rows", 0))
            # Checked on every open: a writer killed while creating the group leaves some
            # row arrays missing, and nothing was committed yet.
            missing = [name for name in ROW_ARRAYS if name not in g]
            if missing and n_rows:
                raise StoreError(f"model group {self.store.path}/{spec.key} has {n_rows} rows but lacks "
                                 f"{missing}; the store is damaged. Run `embedcache verify {self.store.path}`.")
            for name in missing:
                create_array(g, name, ROW_ARRAYS[name], (), ("row",), rows=0, kind="row")
        return GroupWriter(self.store, spec, timeout=self.timeout, **writer_options)


@dataclass
class _Pending:
    """Rows waiting for a commit: new rows, and values of arrays committed rows lack."""

    new: list = field(default_factory=list)  # (digest, sequence, n_tokens, n_windows, {name: value})
    old: dict = field(default_factory=dict)  # name -> {row: value}
    nbytes: int = 0


class GroupWriter:
    """Buffered commits to one model group, safe beside other writers.

    A commit happens when the buffer holds ``block_rows`` rows or ``block_bytes`` bytes,
    or ``commit_seconds`` after the last one (or 20 times the last commit's duration,
    if longer), and at :meth:`flush`.

    Parameters
    ----------
    store, spec
        The store and the group's spec (the group exists: see :meth:`StoreWriting.group`).
    timeout
        Seconds a commit waits for the commit lock.
    block_rows, block_bytes, commit_seconds
        Commit thresholds: they bound memory and the work a crash can lose.
    """

    def __init__(self, store: Store, spec: ModelSpec, *, timeout: float = 600.0, block_rows: int = 4096,
                 block_bytes: int = 64 << 20, commit_seconds: float = 2.0):
        self.store = store
        self.spec = spec
        self.key = spec.key
        self.timeout = timeout
        self.block_rows = block_rows
        self.block_bytes = block_bytes
        self.commit_seconds = commit_seconds
        self.n_rows = store.group(self.key).n_rows
        self._pending = _Pending()
        self._last_flush = time.monotonic()
        self._flush_seconds = 0.0
        self.commit_seconds_total = 0.0  # time spent committing (lock wait included), for reports
        self._arrays: dict[str, int] = {}
        self._attention_size = int(spec.max_tokens)
        self.rows_written = 0
        self.rows_skipped = 0
        self.values_written: dict[str, int] = {}

    def snapshot(self) -> ModelGroup:
        """A reader's view of the group as committed now."""
        return self.store.group(self.key)

    def ensure_arrays(self, names: Sequence[str], *, feature_dim: int | Mapping[str, int],
                      attention_size: int | None = None) -> None:
        """Create the data arrays and fill masks the group lacks, sized to its committed rows.

        ``feature_dim`` is one width for every pooled array or a width per name (NTv3's
        ``final`` is narrower than its core layers); attention maps are ``attention_size``
        square (default ``max_tokens``; NTv3 maps cover its core positions). A new array
        reads "not filled" for every committed row. Data array and mask are checked apart,
        so a writer killed between creating the two is repaired here.
        """
        dims = feature_dim if isinstance(feature_dim, Mapping) else dict.fromkeys(names, feature_dim)
        self._arrays.update({n: int(dims[n]) if n in dims else 0 for n in names})
        if attention_size is not None:
            self._attention_size = int(attention_size)
        with commit_lock(self.store, self.timeout):
            g = self.store.zgroup(self.key, "r+")
            self._create_missing(g, int(g.attrs.get("n_rows", 0)))

    def _create_missing(self, g: zarr.Group, n_rows: int) -> None:
        have = set(self.store.members(self.key, "array"))
        dtype, T = self.spec.store_dtype, self._attention_size
        for name, feature_dim in self._arrays.items():
            kind, layer, last = parse_array_name(name)
            if name not in have:
                if kind == "pooled":
                    create_array(g, name, dtype, (feature_dim,), ("row", "feature"), rows=n_rows,
                                 kind="pooled", layer=layer, pool=last, coordinates=ROW_COORDINATES)
                else:
                    create_array(g, name, dtype, (T, T), ("row", "query", "key"), rows=n_rows,
                                 kind="attention", layer=layer, head=last, coordinates=ROW_COORDINATES)
            if mask_name(name) not in have:
                create_array(g, mask_name(name), "bool", (), ("row",), rows=n_rows, kind="mask", of=name)
                if n_rows:
                    # Written, not left to fill values: a missing mask chunk then always means damage.
                    with zarr.config.set({"array.write_empty_chunks": True}):
                        self.store.zgroup(self.key, "r+")[mask_name(name)][:] = np.zeros(n_rows, dtype=bool)

    def add_new_row(self, digest: str, sequence: str, n_tokens: int, n_windows: int,
                    values: Mapping[str, np.ndarray]) -> None:
        """Queue a new row (a sequence the group lacked when planned) with its computed arrays."""
        p = self._pending
        p.new.append((digest, sequence, int(n_tokens), int(n_windows), dict(values)))
        p.nbytes += sum(v.nbytes for v in values.values()) + len(sequence) + 100
        self._maybe_flush()

    def add_old_row(self, row: int, values: Mapping[str, np.ndarray]) -> None:
        """Queue values of arrays a committed row lacks."""
        if row >= self.n_rows:  # planned on a snapshot newer than this writer's last commit
            self.n_rows = self.store.group(self.key).n_rows
        if not 0 <= row < self.n_rows:
            raise IndexError(f"row {row} is not committed in {self.key}")
        p = self._pending
        for name, value in values.items():
            p.old.setdefault(name, {})[int(row)] = value
            p.nbytes += value.nbytes
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        p = self._pending
        # A commit rewrites the partly filled shards whatever it adds; spacing commits at
        # least 20 times their own duration keeps that under 5% of the time.
        interval = max(self.commit_seconds, 20 * self._flush_seconds)
        due = time.monotonic() - self._last_flush >= interval
        if len(p.new) >= self.block_rows or p.nbytes >= self.block_bytes or due:
            self.flush()

    def flush(self) -> None:
        """Commit everything queued (see the module docs); waits for the commit lock."""
        p, self._pending = self._pending, _Pending()
        t0 = time.monotonic()
        if p.new or p.old:
            with commit_lock(self.store, self.timeout), zarr.config.set({"array.write_empty_chunks": True}):
                self._commit(p)
        self._last_flush = time.monotonic()
        self._flush_seconds = self._last_flush - t0
        self.commit_seconds_total += self._flush_seconds

    # ----------------------------------------------------------------------------------
    # Under the commit lock
    # ----------------------------------------------------------------------------------

    def _commit(self, p: _Pending) -> None:
        g = self.store.zgroup(self.key, "r+")
        now = ModelGroup(self.store, self.key, dict(g.attrs))
        self._create_missing(g, now.n_rows)
        new, old = self._drop_committed(now, p)
        self.n_rows = now.n_rows
        if old:
            self._write_old(g, now, old)
        if new:
            self._append(g, now, new)

    def _drop_committed(self, now: ModelGroup, p: _Pending) -> tuple[list, dict]:
        """What is still to write once the rows other writers committed are taken out."""
        old = {name: dict(rows) for name, rows in p.old.items()}
        new = []
        if p.new:
            rows = now.rows_of([d for d, *_ in p.new])
            for (d, s, t, w, values), row in zip(p.new, rows.tolist()):
                if row < 0:
                    new.append((d, s, t, w, values))
                    continue
                self.rows_skipped += 1
                for name, value in values.items():
                    old.setdefault(name, {})[row] = value
        for name in list(old):
            rows = np.array(sorted(old[name]), dtype=np.int64)
            filled = now.filled(name, rows)
            for r in rows[filled].tolist():
                del old[name][r]
            if not old[name]:
                del old[name]
        return new, old

    def _write_old(self, g: zarr.Group, now: ModelGroup, old: dict) -> None:
        for name, by_row in old.items():
            rows = np.array(sorted(by_row), dtype=np.int64)
            values = np.stack([by_row[r] for r in rows.tolist()]).astype(self.spec.store_dtype, copy=False)
            _set_rows(g[name], rows, values)
            # The mask flips only after the data is written: a crash between leaves "not filled".
            _set_rows(g[mask_name(name)], rows, np.ones(rows.size, dtype=bool))
            self.values_written[name] = self.values_written.get(name, 0) + rows.size

    def _append(self, g: zarr.Group, now: ModelGroup, new: list) -> None:
        lo, b = now.n_rows, len(new)
        hi = lo + b
        members = self.store.members(self.key, "array")
        data_names = [n for n in members if is_data_name(n)]
        # Every array grows together, so the group stays one rectangular dataset; a larger
        # leftover of a killed write shrinks back (only uncommitted rows lie there).
        for name in members:
            arr = g[name]
            if arr.shape[0] != hi:
                arr.resize((hi, *arr.shape[1:]))
        masks = {}
        for name in data_names:
            offsets = [i for i, row in enumerate(new) if name in row[4]]
            masks[name] = np.zeros(b, dtype=bool)
            if not offsets:
                continue
            masks[name][offsets] = True
            values = np.stack([new[i][4][name] for i in offsets]).astype(self.spec.store_dtype, copy=False)
            if len(offsets) == b:
                g[name][lo:hi] = values
            else:
                _set_rows(g[name], np.asarray(offsets, dtype=np.int64) + lo, values)
            self.values_written[name] = self.values_written.get(name, 0) + len(offsets)
        digests = [row[0] for row in new]
        g["digest"][lo:hi] = np.array(digests, dtype=object)
        g["sequence"][lo:hi] = np.array([row[1] for row in new], dtype=object)
        g["length"][lo:hi] = np.array([len(row[1]) for row in new], dtype=np.int64)
        g["n_tokens"][lo:hi] = np.array([row[2] for row in new], dtype=np.int32)
        g["n_windows"][lo:hi] = np.array([row[3] for row in new], dtype=np.int32)
        for name in data_names:
            # Written for every array, computed or not: a killed write may have left stale
            # True values in these rows, which now belong to other sequences.
            g[mask_name(name)][lo:hi] = masks[name]
        runs = self._index(g, now.runs, lo, hi, digests)
        # The commit: only now do readers and other writers see these rows.
        g.update_attributes({"n_rows": hi, "index_runs": runs})
        # Counted at once: an interrupt while old runs are retired must still report these rows.
        self.n_rows = hi
        self.rows_written += b
        self._retire_runs(runs)

    def _index(self, g: zarr.Group, runs: list, lo: int, hi: int, digests: list) -> list:
        entries = index.sorted_run(index.keys_of_hex(digests), np.arange(lo, hi))
        final, merged = index.plan_merge(runs, [lo, hi])
        if len(merged) > 1:
            parts = [index.read_run(g, a, b) for a, b in merged[:-1]] + [entries]
            stacked = np.concatenate(parts)
            entries = stacked[np.lexsort((stacked[:, 1], stacked[:, 0]))]
        a, b = final[-1]
        index.write_run(g, a, b, entries)
        return final

    def _retire_runs(self, runs: list) -> None:
        keep = {index.run_name(a, b) for a, b in runs}
        for name in self.store.members(f"{self.key}/{INDEX_GROUP}", "array"):
            if name not in keep:
                access.delete_prefix(self.store.zstore, f"{self.key}/{INDEX_GROUP}/{name}")


def _set_rows(arr: zarr.Array, rows: np.ndarray, values: np.ndarray) -> None:
    """Write ``values`` at sorted ``rows``, one read-modify-write per shard touched.

    Zarr 3.1 cannot write an orthogonal selection into a sharded array (a shape mismatch
    inside the sharding codec), and a shard is rewritten whole by any partial write anyway.
    """
    step = shard_rows(arr)
    shard_of = rows // step
    for s in np.unique(shard_of):
        sel = shard_of == s
        lo, hi = int(rows[sel][0]), int(rows[sel][-1]) + 1
        block = np.asarray(arr[lo:hi])
        block[rows[sel] - lo] = values[sel]
        arr[lo:hi] = block
