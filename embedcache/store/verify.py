"""Verification: read back every committed byte of a store and report what is wrong.

Every shard that should exist is read back (each inner chunk carries a CRC32C, so a
truncated or corrupted one fails to decode); each row's digest is recomputed from its
sequence; every filled value must be finite; the index must find every row at its own
number. Problems are reported, never repaired here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embedcache.errors import StoreError
from embedcache.store import access
from embedcache.store.layout import ROW_ARRAYS, mask_name, sequence_digest, shard_rows


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

    def report(self, name, rows, what) -> None:
        self.problems.append(Problem(self.g.key, name, tuple(int(r) for r in rows), what))

    def array(self, name):
        try:
            return self.g.array(name)
        except StoreError as exc:
            self.report(name, (), str(exc))
            return None

    def shards(self, name, arr, expect_file):
        """Yield ``(lo, hi, values, error)`` per shard of the committed rows."""
        step = shard_rows(arr)
        for s, lo in enumerate(range(0, self.n, step)):
            hi = min(lo + step, self.n)
            chunk = arr.metadata.encode_chunk_key((s,) + (0,) * (arr.ndim - 1))
            if expect_file(lo, hi) and not access.exists(self.g.store.zstore, f"{self.g.key}/{name}/{chunk}"):
                yield lo, hi, None, f"chunk file {chunk} is missing"
                continue
            try:
                block, err = arr[lo:hi], None
            except Exception as exc:  # noqa: BLE001 - any decode failure is damage to report
                block, err = None, f"chunk file {chunk} is unreadable (truncated or corrupted: {type(exc).__name__})"
            yield lo, hi, block, err

    def load(self, name, expect_file=lambda lo, hi: True):
        """The committed rows of ``name``; unreadable shards are reported and read as fill."""
        arr = self.array(name)
        if arr is None:
            return None
        out = np.empty((self.n, *arr.shape[1:]), dtype=object if arr.dtype.kind in "OTU" else arr.dtype)
        out[:] = "" if out.dtype == object else arr.fill_value
        bad = []
        for lo, hi, block, err in self.shards(name, arr, expect_file):
            if err:
                bad.append((range(lo, hi), err))
            else:
                out[lo:hi] = block
        for rows, what in bad[: self.limit]:
            self.report(name, rows, what)
        return out

    def rows(self) -> dict | None:
        for name in ROW_ARRAYS:
            if name not in self.names:
                self.report(name, (), "row array missing")
        rows = {name: self.load(name) for name in ROW_ARRAYS if name in self.names}
        if len(rows) < len(ROW_ARRAYS) or any(v is None for v in rows.values()):
            return None
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
            self.report("digest", wrong_digest, "digest does not match the row's sequence")
        if wrong_length:
            self.report("length", wrong_length, "length does not match the row's sequence")
        if duplicate:
            self.report("digest", duplicate, "sequence stored twice")
        return rows

    def index(self, digests: np.ndarray) -> None:
        covered = sum(b - a for a, b in self.g.runs)
        if covered != self.n or any(r[0] != (p[1] if p else 0) for p, r in zip([None] + self.g.runs, self.g.runs)):
            self.report("index", (), f"index runs {self.g.runs} do not cover rows 0-{self.n - 1} once")
            return
        try:
            found = self.g.rows_of(digests.tolist()) if self.n else np.zeros(0, dtype=np.int64)
        except Exception as exc:  # noqa: BLE001 - an unreadable index run is damage to report
            self.report("index", (), f"index unreadable ({type(exc).__name__}: {exc})")
            return
        wrong = np.flatnonzero(found != np.arange(self.n))
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
            # A shard holding no filled row may legitimately never have been written.
            for lo, hi, block, err in self.shards(name, arr, lambda lo, hi: mask[lo:hi].any()):
                if err:
                    bad.append((range(lo, hi), err))
                    continue
                finite = np.isfinite(block.reshape(block.shape[0], -1)).all(axis=1)
                nonfinite = np.flatnonzero(mask[lo:hi] & ~finite) + lo
                if nonfinite.size:
                    bad.append((nonfinite, "NaN or inf values"))
            for rows_, what in bad[: self.limit]:
                self.report(name, rows_, what)


def verify_group(group, *, max_problems_per_array: int = 20) -> list[Problem]:
    """Check the committed rows of one model group: chunks, digests, index, values.

    Returns
    -------
    list of Problem
        Empty when the group is sound.
    """
    c = _Checker(group, max_problems_per_array)
    rows = c.rows()
    if rows is None:
        return c.problems
    c.index(rows["digest"])
    c.data()
    return c.problems


__all__ = ["Problem", "verify_store", "verify_group"]
