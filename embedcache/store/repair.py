"""Repair: lost values become "not filled", lost rows are dropped, the index is rebuilt.

``verify`` finds the damage; here each model group's repair is one commit (built on the
newest manifest and swapped in like any other, :mod:`.write`), so it is as safe beside
writers and readers as a build:

* a data chunk that is missing, corrupted or not the one committed (stale, moved or
  foreign) is dropped from the manifest and its rows' fill mask cleared; a damaged fill
  mask chunk is dropped (its rows read "not filled"); NaN or inf values are unfilled;
* a row whose digest or sequence is lost or wrong is *dropped*: its digest and sequence
  become empty (no lookup finds it) and every mask of it is cleared, so the next build
  computes the sequence again as a new row; a sequence stored twice keeps its first row;
* the digest index, derived data, is rebuilt from the digests whenever it is damaged or
  rows were dropped.

The next ``embedcache build`` of the same inputs then computes exactly what was lost.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from embedcache.store import chunks, index, manifest
from embedcache.store.cow import ChunkWriter
from embedcache.store.layout import ROW_ARRAYS, is_data_name, mask_name
from embedcache.store.lock import commit_lock
from embedcache.store.verify import Problem, verify_group
from embedcache.store.view import chunk_step


@dataclass
class RepairReport:
    """What ``verify --repair`` did.

    Attributes
    ----------
    unfilled : dict
        ``"key/array"`` to the number of rows marked not filled (to recompute).
    rewritten : list of str
        Chunks dropped from the committed state (their rows are recomputed).
    dropped : dict
        ``key`` to the number of rows dropped (their sequences are recomputed as new rows).
    unrepaired : list of Problem
        Problems this cannot repair (a missing array, unreadable metadata...).
    """

    unfilled: dict = field(default_factory=dict)
    rewritten: list = field(default_factory=list)
    dropped: dict = field(default_factory=dict)
    unrepaired: list = field(default_factory=list)
    index_rebuilt: list = field(default_factory=list)


def repair_store(store, *, timeout: float = 600.0) -> RepairReport:
    """Repair what :func:`~embedcache.store.verify.verify_group` finds, as the module says."""
    from embedcache.errors import StoreError
    from embedcache.store.verify import verify_store

    report = RepairReport()
    _repair_root(store, report)
    try:
        keys = store.keys()
    except StoreError:
        report.unrepaired += verify_store(store)
        return report
    for key in keys:
        for _ in range(100):
            with commit_lock(store, timeout):
                try:
                    group = store.group(key)
                except StoreError as exc:
                    report.unrepaired.append(Problem(key, "", (), str(exc)))
                    break
                attempt = RepairReport()
                done = _repair_group(store, group, attempt)
            if done:
                for name in ("rewritten", "unrepaired", "index_rebuilt"):
                    getattr(report, name).extend(getattr(attempt, name))
                report.unfilled.update(attempt.unfilled)
                report.dropped.update(attempt.dropped)
                break
    return report


def _repair_root(store, report: RepairReport) -> None:
    """Rewrite an unreadable root document if model groups of this encoding lie beneath it:
    it holds nothing but the encoding, which every group also states."""
    import json

    from embedcache.store import access
    from embedcache.store.layout import ENCODING, ENCODING_VERSION, encoding_attrs

    try:
        doc = access.get_json(store.zstore, "zarr.json")
        if isinstance(doc, dict) and isinstance(doc.get("attributes"), dict):
            return
    except ValueError:
        pass
    if store.remote is False and not store.path.is_dir():
        return
    for child in access.list_dir(store.zstore, ""):
        try:
            attrs = (access.get_json(store.zstore, f"{child}/zarr.json") or {}).get("attributes", {})
        except (ValueError, AttributeError):
            continue
        if attrs.get("encoding") == ENCODING and attrs.get("encoding_version") == ENCODING_VERSION:
            root = {"zarr_format": 3, "node_type": "group", "attributes": encoding_attrs()}
            access.put_bytes(store.zstore, "zarr.json", json.dumps(root).encode())
            report.rewritten.append("zarr.json")
            return


def _repair_group(store, group, report: RepairReport) -> bool:
    """One attempt; ``False`` if another commit came first (the caller starts again)."""
    problems = verify_group(group, max_problems_per_array=1 << 30)
    if not problems:
        return True
    target = group.manifest.successor()
    writer = ChunkWriter(store, group.key, group, target)
    unfill = defaultdict(set)  # data array -> rows to mark not filled
    drop_rows: set[int] = set()
    rebuild_index = False
    for p in problems:
        name = p.array[4:] if p.array.startswith("has_") else p.array
        if p.array == "index":
            rebuild_index = True
        elif p.array in ROW_ARRAYS and p.rows:
            drop_rows.update(p.rows)
        elif p.damage and is_data_name(name) and p.rows and p.array in target.arrays:
            rows = np.asarray(p.rows, dtype=np.int64)
            if p.damage == "nonfinite":
                unfill[name].update(rows.tolist())
                continue
            step = chunk_step(target.arrays[p.array]["meta"])
            for c in np.unique(rows // step).tolist():
                entry = target.arrays[p.array]["chunks"].get(str(c))
                if entry is not None:
                    report.rewritten.append(f"{group.key}/{entry[0]}")
                writer.drop(p.array, c)
                # The whole chunk goes (a sharded one: its sound inner chunks too): all its rows are lost.
                unfill[name].update(range(c * step, min((c + 1) * step, group.n_rows)))
        else:
            report.unrepaired.append(p)
    if drop_rows:
        rows = np.array(sorted(drop_rows), dtype=np.int64)
        _drop_rows(writer, group, rows)
        for name in group.array_names():
            unfill[name].update(rows.tolist())
        report.dropped[group.key] = rows.size
        rebuild_index = True
    for name, rows in unfill.items():
        if mask_name(name) not in target.arrays:
            continue
        rows = np.array(sorted(rows), dtype=np.int64)
        writer.write(mask_name(name), rows, False)
        report.unfilled[f"{group.key}/{name}"] = rows.size
    if rebuild_index:
        _rebuild_index(writer, group)
        report.index_rebuilt.append(group.key)
    writer.finish()
    dropped = target.take_garbage(writer.superseded)
    if not manifest.publish(store, group.key, target):
        writer.discard()
        return False
    manifest.retire(store, group.key, target, dropped)
    return True


def _drop_rows(writer: ChunkWriter, group, rows: np.ndarray) -> None:
    """Empty the digest and sequence of ``rows``, keeping every sound row of their chunks."""
    for name in ("digest", "sequence", "length", "n_tokens", "n_windows"):
        arr = group._open(name)
        step = chunk_step(writer.target.arrays[name]["meta"])
        for c in np.unique(rows // step).tolist():
            block = writer._fill(writer.target.arrays[name]["meta"], step)
            for lo, hi, values, state in chunks.shard_units(arr, c, min((c + 1) * step, group.n_rows)):
                if state == "ok":
                    block[lo - c * step:hi - c * step] = values
            mine = rows[(rows >= c * step) & (rows < (c + 1) * step)] - c * step
            block[mine] = "" if block.dtype == object else 0
            writer.drop(name, c)
            writer._blocks[(name, c)] = block


def _rebuild_index(writer: ChunkWriter, group) -> None:
    """One run of every row with a digest, from the digests (rows dropped just now excluded)."""
    for name in [n for n in writer.target.arrays if n.startswith(f"{index.INDEX_GROUP}/")]:
        writer.remove_array(name)
    digests = np.empty(group.n_rows, dtype=object)
    step = chunk_step(writer.target.arrays["digest"]["meta"])
    for c in range(-(-group.n_rows // step)):
        held = writer._blocks.get(("digest", c))
        if held is None:
            held = np.asarray(group._open("digest")[c * step:min((c + 1) * step, group.n_rows)])
        digests[c * step:min((c + 1) * step, group.n_rows)] = held[:min(step, group.n_rows - c * step)]
    rows = np.flatnonzero(digests != "")
    n = group.n_rows
    writer.target.runs = [[0, n]] if n else []
    if n:
        entries = index.sorted_run(index.keys_of_hex(digests[rows].tolist()), rows)
        index.add_run(writer, 0, n, entries)


__all__ = ["RepairReport", "repair_store"]
