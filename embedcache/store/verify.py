"""Verification: read back every committed byte of a store and report what is wrong.

Every chunk the committed manifest lists is read back and checked against it (size and
CRC32C of the whole object: a lost, truncated, corrupted, stale, moved or foreign chunk
is damage, named with its rows and object), then decoded inner chunk by inner chunk;
each row's digest is recomputed from its sequence; every filled value must be finite;
the index must find every row at its own number. Streaming the arrays shard by shard
keeps only the per-row arrays in memory. Problems are reported here, and repaired by
:mod:`.repair`; leftovers (objects no commit names) are listed by :mod:`.gc`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embedcache.errors import StoreError
from embedcache.store import chunks, index
from embedcache.store.layout import ROW_ARRAYS, mask_name, sequence_digest


@dataclass(frozen=True)
class Problem:
    """One integrity problem found by ``verify``: which group, array and rows, and what."""

    key: str
    array: str
    rows: tuple
    what: str
    #: Damage of stored chunks: "missing", "corrupted", "foreign" (not the chunk committed) or
    #: "nonfinite" ("" for other problems).
    damage: str = ""

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


def _add(bad: list, lo: int, hi: int, what: str, damage: str) -> None:
    """Record damaged rows, one problem for consecutive chunks damaged alike (a lost shard)."""
    if bad and bad[-1][1:] == (what, damage) and isinstance(bad[-1][0], range) and bad[-1][0].stop == lo:
        bad[-1] = (range(bad[-1][0].start, hi), what, damage)
    else:
        bad.append((range(lo, hi), what, damage))


def verify_store(store, *, max_problems_per_array: int = 20) -> list[Problem]:
    """Problems of every model group of ``store`` (empty when sound)."""
    try:
        keys = store.keys()
    except StoreError as exc:
        return [Problem(key="", array="", rows=(), what=str(exc))]
    problems = []
    for key in keys:
        try:
            group = store.group(key)
        except StoreError as exc:
            problems.append(Problem(key=key, array="", rows=(), what=str(exc)))
            continue
        problems.extend(verify_group(group, max_problems_per_array=max_problems_per_array))
    return problems


class _Checker:
    """The checks of one model group, collecting problems as they are found."""

    def __init__(self, group, limit: int):
        self.g, self.limit = group, limit
        self.n = group.n_rows
        self.problems: list[Problem] = []
        self.names = group.members()
        self.damaged: dict[str, set] = {}  # rows of unreadable chunks, per array (reported once)

    def report(self, name, rows, what, damage="") -> None:
        self.problems.append(Problem(self.g.key, name, tuple(int(r) for r in rows), what, damage))

    def array(self, name):
        try:
            return self.g.array(name)
        except StoreError as exc:
            self.report(name, (), str(exc))
            return None

    def shards(self, name, arr):
        """Yield ``(lo, hi, values, error, damage)`` per chunk (inner chunk of a shard) of the
        committed rows (``values`` ``None`` for a chunk never written)."""
        step = int(arr.metadata.chunk_grid.chunk_shape[0])
        table = self.g.manifest.arrays[name]["chunks"]
        for lo, hi, block, state in chunks.units(arr, self.n):
            entry = table.get(str(lo // step))
            chunk = f"{self.g.key}/{entry[0]}" if entry else f"{self.g.key}/{name} #{lo // step} (never written)"
            if state in ("ok", "absent"):  # absent: never written, fill values as committed
                yield lo, hi, block, None, ""
            elif state == "missing":
                yield lo, hi, None, f"chunk file {chunk} is missing", "missing"
            elif state == "foreign":
                yield lo, hi, None, (f"chunk {chunk} is not the one committed (size or checksum differs from "
                                     "the manifest's: a stale, moved or foreign chunk)"), state
            else:
                yield lo, hi, None, f"chunk file {chunk} is unreadable (truncated or corrupted)", state

    def load(self, name):
        """The committed rows of ``name``; unreadable shards are reported and read as fill."""
        arr = self.array(name)
        if arr is None:
            return None
        out = np.empty((self.n, *arr.shape[1:]), dtype=object if arr.dtype.kind in "OTU" else arr.dtype)
        out[:] = "" if out.dtype == object else arr.fill_value
        bad = []
        for lo, hi, block, err, damage in self.shards(name, arr):
            if err:
                _add(bad, lo, hi, err, damage)
            elif block is not None:
                out[lo:hi] = block
        for rows, what, damage in bad[: self.limit]:
            self.report(name, rows, what, damage)
        self.damaged[name] = {r for rows, _, _ in bad for r in rows}
        return out

    def rows(self) -> dict | None:
        for name in ROW_ARRAYS:
            if name not in self.names:
                self.report(name, (), "row array missing")
        rows = {name: self.load(name) for name in ROW_ARRAYS if name in self.names}
        if len(rows) < len(ROW_ARRAYS) or any(v is None for v in rows.values()):
            return None
        wrong_digest, wrong_length, duplicate, seen = [], [], [], set()
        lost = self.damaged.get("digest", set()) | self.damaged.get("sequence", set())
        for i, (seq, dig, length) in enumerate(zip(rows["sequence"].tolist(), rows["digest"].tolist(),
                                                   rows["length"].tolist())):
            if (dig == "" and seq == "") or i in lost:
                continue  # a row dropped by a repair (no lookup finds it), or one whose chunk is reported
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
            self.report("digest", wrong_digest, "digest does not match the row's sequence")
        if wrong_length:
            self.report("length", wrong_length, "length does not match the row's sequence")
        if duplicate:
            self.report("digest", duplicate, "sequence stored twice")
        return rows

    def index(self, digests: np.ndarray) -> None:
        covered = sum(b - a for a, b in self.g.runs)
        if covered != self.n or any(r[0] != (p[1] if p else 0) for p, r in zip([None] + self.g.runs, self.g.runs)) \
                or any(index.run_path(a, b) not in self.g.manifest.arrays for a, b in self.g.runs):
            self.report("index", (), f"index runs {self.g.runs} do not cover rows 0-{self.n - 1} once")
            return
        try:
            found = self.g.rows_of(["0" * 64 if d == "" else d for d in digests.tolist()]) \
                if self.n else np.zeros(0, dtype=np.int64)
        except Exception as exc:  # noqa: BLE001 - an unreadable index run is damage to report
            self.report("index", (), f"index unreadable ({type(exc).__name__}: {exc})")
            return
        expect = np.where(digests == "", -1, np.arange(self.n))  # dropped rows are not indexed
        wrong = np.flatnonzero(found != expect)
        if wrong.size:
            self.report("index", wrong, "index does not find the row at its number")

    def data(self) -> None:
        for name in self.names:
            if name.startswith("has_") and name[4:] not in self.names:
                self.report(name[4:], (), "data array missing or its metadata unreadable")
        for name in self.g.array_names():
            if mask_name(name) not in self.names:
                self.report(name, (), f"fill mask {mask_name(name)} missing")
                continue
            mask = self.load(mask_name(name))
            arr = self.array(name)
            if mask is None or arr is None:
                continue
            mask = np.asarray(mask, dtype=bool)
            bad = []
            for lo, hi, block, err, damage in self.shards(name, arr):
                if err:
                    _add(bad, lo, hi, err, damage)
                    continue
                if block is None:
                    continue
                finite = np.isfinite(block.reshape(block.shape[0], -1)).all(axis=1)
                nonfinite = np.flatnonzero(mask[lo:hi] & ~finite) + lo
                if nonfinite.size:
                    bad.append((nonfinite, "NaN or inf values", "nonfinite"))
            for rows_, what, damage in bad[: self.limit]:
                self.report(name, rows_, what, damage)


def verify_group(group, *, max_problems_per_array: int = 20) -> list[Problem]:
    """Check the committed rows of one model group: chunks, digests, index, values.

    Returns
    -------
    list of Problem
        Empty when the group is sound.
    """
    if group.generation < 0:  # a group whose creation was interrupted: nothing committed
        return []
    c = _Checker(group, max_problems_per_array)
    rows = c.rows()
    if rows is None:
        return c.problems
    c.index(rows["digest"])
    c.data()
    return c.problems


__all__ = ["Problem", "verify_store", "verify_group"]
