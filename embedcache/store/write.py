"""Writing: many writers compute apart and commit batches of rows, each commit a swap.

A writer buffers the rows it computed. A *commit* takes the store's commit lock (see
:mod:`.lock`; it only keeps writers from wasting work) and reads the group's newest
manifest (:mod:`.manifest`). It drops what other writers committed meanwhile (a row
already present becomes at most a fill of the arrays it lacks; a value already filled is
not written again), writes the chunks it changes to fresh objects (:mod:`.cow`), and
then swaps its manifest in with a create-only write of the next generation. If another
writer got there first (its lease had lapsed, say), the swap fails, the objects written
are deleted and the commit starts again from the new state. A writer killed at any
moment leaves only unreferenced objects, garbage for ``embedcache gc``; readers see
whole commits.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

import numpy as np

from embedcache.errors import StoreError
from embedcache.store import access, append, index, manifest, pause
from embedcache.store.compact import compact
from embedcache.store.recent import SincePlan
from embedcache.store.cow import ChunkWriter
from embedcache.store.layout import (
    ROW_ARRAYS,
    ModelSpec,
    array_meta,
    encoding_attrs,
    mask_name,
    package_versions,
    parse_array_name,
)
from embedcache.store.lock import commit_lock
from embedcache.store.read import ModelGroup, Store

# CF's "coordinates" attribute on each data array: xarray.open_zarr then makes the row digest
# (the row's address) a coordinate of every (row, ...) variable.
ROW_COORDINATES = "digest"
#: Swaps a commit may lose in a row before the writer gives up (each loss means another
#: writer committed, so this is only reached if the store is being rewritten wholesale).
MAX_ATTEMPTS = 200


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
        if not store._is_empty() and not store.exists():  # exists: another writer created it meanwhile
            raise StoreError(f"{store.path} exists but is not an embedcache store (no zarr.json); "
                             "choose a new path for the cache.")
        root = {"zarr_format": 3, "node_type": "group", "attributes": encoding_attrs()}
        access.create_exclusive(store.zstore, "zarr.json", json.dumps(root).encode())

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
            Encoding, the spec's fields, versions and creation time are added here.
        **writer_options
            ``block_rows``, ``block_bytes``, ``commit_seconds`` of :class:`GroupWriter`.
        """
        key, zs = spec.key, self.store.zstore
        if access.get_bytes(zs, f"{key}/zarr.json") is None:
            full = encoding_attrs(
                **dict(attrs), **asdict(spec),
                created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                versions=package_versions(),
            )
            doc = {"zarr_format": 3, "node_type": "group", "attributes": full}
            access.create_exclusive(zs, f"{key}/zarr.json", json.dumps(doc).encode())  # first creator wins
        if manifest.head(self.store, key) is None:
            arrays = {name: {"meta": array_meta(name, kind_, (), ("row",), rows=0, kind="row"), "chunks": {}}
                      for name, kind_ in ROW_ARRAYS.items()}
            manifest.publish(self.store, key, manifest.Manifest(arrays=arrays))  # generation 0, once
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
        Commit thresholds: they bound memory and the work a crash can lose. ``block_rows``
        defaults to ``EMBEDCACHE_COMMIT_ROWS`` or 4096.
    """

    def __init__(self, store: Store, spec: ModelSpec, *, timeout: float = 600.0, block_rows: int | None = None,
                 block_bytes: int = 64 << 20, commit_seconds: float = 2.0):
        self.store = store
        self.spec = spec
        self.key = spec.key
        self.timeout = timeout
        # EMBEDCACHE_COMMIT_ROWS: tests make a build commit often whatever the machine's speed.
        self.block_rows = int(os.environ.get("EMBEDCACHE_COMMIT_ROWS", 4096)) if block_rows is None else block_rows
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
        self.swaps_lost = 0  # commits that lost their swap and started again
        self.values_written: dict[str, int] = {}
        self._since: SincePlan | None = None
        self._head: ModelGroup | None = None  # the state this writer committed last

    def planned_on(self, snapshot: ModelGroup) -> None:
        """Declare that the new rows queued from now on were planned on ``snapshot``
        (absent from its rows), each queued once.

        Commits then drop only what other writers committed after it (:mod:`.recent`),
        instead of looking every new digest up in the whole index.
        """
        if self._since is None or snapshot.n_rows < self._since.planned:
            self._since = SincePlan(snapshot.n_rows)

    def snapshot(self) -> ModelGroup:
        """A reader's view of the group as committed now."""
        return self.store.group(self.key)

    def ensure_arrays(self, names: Sequence[str], *, feature_dim: int | Mapping[str, int],
                      attention_size: int | None = None) -> None:
        """Add the data arrays and fill masks the group lacks, sized to its committed rows.

        ``feature_dim`` is one width for every pooled array or a width per name (NTv3's
        ``final`` is narrower than its core layers); attention maps are ``attention_size``
        square (default ``max_tokens``; NTv3 maps cover its core positions). A new array
        reads "not filled" for every committed row. Committed at once, as a commit of its
        own, so that readers and other writers see the arrays.
        """
        dims = feature_dim if isinstance(feature_dim, Mapping) else dict.fromkeys(names, feature_dim)
        self._arrays.update({n: int(dims[n]) if n in dims else 0 for n in names})
        if attention_size is not None:
            self._attention_size = int(attention_size)
        self._commit_with_retries(_Pending())

    def _add_missing(self, target: manifest.Manifest) -> bool:
        """Add the arrays this writer writes that ``target`` lacks; whether any was added."""
        dtype, T, n = self.spec.store_dtype, self._attention_size, target.n_rows
        added = False
        for name, feature_dim in self._arrays.items():
            kind, layer, last = parse_array_name(name)
            if name not in target.arrays:
                if kind == "pooled":
                    meta = array_meta(name, dtype, (feature_dim,), ("row", "feature"), rows=n,
                                      kind="pooled", layer=layer, pool=last, coordinates=ROW_COORDINATES)
                else:
                    meta = array_meta(name, dtype, (T, T), ("row", "query", "key"), rows=n,
                                      kind="attention", layer=layer, head=last, coordinates=ROW_COORDINATES)
                target.arrays[name] = {"meta": meta, "chunks": {}}
                added = True
            if mask_name(name) not in target.arrays:
                # No chunks: every committed row reads "not filled" (a listed chunk that is lost is damage).
                meta = array_meta(mask_name(name), "bool", (), ("row",), rows=n, kind="mask", of=name)
                target.arrays[mask_name(name)] = {"meta": meta, "chunks": {}}
                added = True
        return added

    def add_new_row(self, digest: str, sequence: str, n_tokens: int, n_windows: int,
                    values: Mapping[str, np.ndarray]) -> None:
        """Queue a new row (a sequence the group lacked when planned) with its computed arrays."""
        p, values = self._pending, dict(values)
        p.new.append((digest, sequence, int(n_tokens), int(n_windows), values))
        p.nbytes += len(sequence) + 100
        for v in values.values():
            p.nbytes += v.nbytes
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
        # A commit rewrites the partly filled chunks whatever it adds; spacing commits at
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
            self._commit_with_retries(p)
        self._last_flush = time.monotonic()
        self._flush_seconds = self._last_flush - t0
        self.commit_seconds_total += self._flush_seconds

    def _commit_with_retries(self, p: _Pending) -> None:
        for _ in range(MAX_ATTEMPTS):
            # Planned outside the lock, against the whole index; under it only the rows
            # committed since are checked, read by number: the lock is held for a time that
            # follows the new rows, not the store.
            # The state this writer committed last, unless another commit followed it: its
            # manifest is not read back (parsing it costs what the store holds).
            before = self._head
            if before is None or access.exists(self.store.zstore,
                                               manifest.manifest_key(self.key, before.generation + 1)):
                before = self.store.group(self.key)
            self._head = None
            find, since = before.rows_of, self._since
            if p.new and since is not None and since.usable:
                since.catch_up(before)
                find = since.rows_of if since.usable else find
            new, old, skipped = self._drop_committed(before, p, find)
            planned = (new, old, skipped, append.prepare(new, self.spec.store_dtype) if new else None)
            with commit_lock(self.store, self.timeout):
                pause.point("locked")
                done = self._commit(before, planned)
            if done:
                if done is not True:  # after the lock: a hint and deletions, safe in any order
                    target, dropped = done
                    manifest.write_hint(self.store, self.key, target.generation)
                    manifest.retire(self.store, self.key, target, dropped)
                    if index.next_compaction(target.runs, least=index.MERGE_UNDER_LOCK) is not None:
                        compact(self.store, self.key, self.timeout, self._head)
                        self._head = None  # moved on by the compaction (or another writer)
                return
            self.swaps_lost += 1
        raise StoreError(f"{MAX_ATTEMPTS} commits to {self.store.path}/{self.key} in a row lost their swap "
                         "to other writers; the store is being rewritten faster than this writer can "
                         "commit. Run the build again (it resumes).")

    # ----------------------------------------------------------------------------------
    # One attempt: plan on the newest manifest, write copy-on-write, swap
    # ----------------------------------------------------------------------------------

    def _commit(self, before: ModelGroup, planned: tuple):
        """One attempt at committing what was ``planned`` on ``before``: ``False`` if
        another writer committed first, else ``True`` or, if it made a new manifest,
        ``(manifest, objects to delete)`` for the caller to retire once the lock is released."""
        # Whether another writer committed since ``before`` was read: one existence check,
        # not a read of the manifest (which grows with the store).
        moved = access.exists(self.store.zstore, manifest.manifest_key(self.key, before.generation + 1))
        now = self.store.group(self.key) if moved else before
        target = now.manifest.successor()
        added = self._add_missing(target)
        new, old, skipped, batch = planned
        if now.generation != before.generation:
            plan = self._since
            if new and plan is not None and plan.usable and plan.seen == before.n_rows:
                plan.catch_up(now)  # index entries of the rows since, not their digest strings
                find = plan.rows_of if plan.usable else self._since_finder(before, now)
            else:
                find = self._since_finder(before, now)
            kept, old, more = self._drop_committed(now, _Pending(new=new, old=old), find)
            if more:
                new, batch = kept, append.prepare(kept, self.spec.store_dtype) if kept else None
            skipped += more
        if not (new or old or added):
            self.n_rows = now.n_rows
            self.rows_skipped += skipped
            return True
        writer = ChunkWriter(self.store, self.key, now, target)
        written = {}
        for name, by_row in old.items():
            rows = np.array(sorted(by_row), dtype=np.int64)
            values = np.stack([by_row[r] for r in rows.tolist()]).astype(self.spec.store_dtype, copy=False)
            writer.write(name, rows, values)
            writer.write(mask_name(name), rows, True)
            written[name] = written.get(name, 0) + rows.size
        if new:
            append.place(writer, now, batch, written)
        writer.finish()
        dropped = target.take_garbage(writer.superseded)
        pause.point("before_publish")
        if not manifest.publish(self.store, self.key, target, hint=False):
            writer.discard()
            return False
        pause.point("after_publish")
        # Counted at once: an interrupt while old objects are deleted must still report these rows.
        if new and self._since is not None:
            self._since.committed(now.n_rows, target.n_rows)
        self.n_rows = target.n_rows
        self.rows_written += len(new)
        self.rows_skipped += skipped
        for name, k in written.items():
            self.values_written[name] = self.values_written.get(name, 0) + k
        self._head = ModelGroup(self.store, self.key, now.view.attrs, target)
        return target, dropped

    def _since_finder(self, before: ModelGroup, now: ModelGroup):
        """``find(digests)`` (rows, -1 where absent) among the rows committed after
        ``before`` and up to ``now``."""
        rows = np.arange(before.n_rows, now.n_rows)
        since = {}
        if rows.size:
            digests = now._settled(lambda g: g._values("digest", g.array("digest"), rows))
            since = {d: r for d, r in zip(digests.tolist(), rows.tolist()) if d}
        return lambda digests: np.array([since.get(d, -1) for d in digests], dtype=np.int64)

    def _drop_committed(self, now: ModelGroup, p: _Pending, find) -> tuple[list, dict, int]:
        """What is still to write once the rows other writers committed are taken out
        (``find(digests)``: their rows in ``now``, -1 where absent)."""
        old = {name: dict(rows) for name, rows in p.old.items()}
        new, skipped = [], 0
        if p.new:
            rows = np.asarray(find([d for d, *_ in p.new]), dtype=np.int64)
            for (d, s, t, w, values), row in zip(p.new, rows.tolist()):
                if row < 0:
                    new.append((d, s, t, w, values))
                    continue
                skipped += 1
                for name, value in values.items():
                    old.setdefault(name, {})[row] = value
        for name in list(old):
            rows = np.array(sorted(old[name]), dtype=np.int64)
            filled = now.filled(name, rows)
            for r in rows[filled].tolist():
                del old[name][r]
            if not old[name]:
                del old[name]
        return new, old, skipped
