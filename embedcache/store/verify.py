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

import hashlib
from dataclasses import dataclass

import numpy as np

from embedcache.errors import StoreError
from embedcache.util.ranges import format_ranges
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
        return f"{where}: {self.what}" + (f" (rows {format_ranges(self.rows, most=10)})" if len(self.rows) else "")


def _add(bad: list, lo: int, hi: int, what: str, damage: str) -> None:
    """Record damaged rows, one problem for consecutive chunks damaged alike (a lost shard)."""
    if bad and bad[-1][1:] == (what, damage) and isinstance(bad[-1][0], range) and bad[-1][0].stop == lo:
        bad[-1] = (range(bad[-1][0].start, hi), what, damage)
    else:
        bad.append((range(lo, hi), what, damage))


def verify_store(store, *, max_problems_per_array: int = 20) -> list[Problem]:
    """Problems of every model group of ``store`` (empty when sound).

    A location that holds no store at all raises its :class:`StoreError` (bad input, not
    damage: there is nothing to check or repair)."""
    if not store.exists():
        store.root_attrs()  # raises: no cache there, or a directory that is not a store
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
        self.bad: dict[str, list] = {}  # unreadable chunks found, per array, not yet reported

    def report(self, name, rows, what, damage="") -> None:
        self.problems.append(Problem(self.g.key, name, tuple(int(r) for r in rows), what, damage))

    def array(self, name):
        try:
            return self.g.array(name)
        except StoreError as exc:
            self.report(name, (), str(exc))
            return None

    def load(self, name, lo: int = 0, hi: int | None = None):
        """Rows ``lo..hi`` (default: all committed) of ``name``; unreadable chunks are
        recorded (see :meth:`flush_bad`) and read as fill values."""
        arr = self.array(name)
        if arr is None:
            return None
        hi = self.n if hi is None else hi
        out = np.empty((hi - lo, *arr.shape[1:]), dtype=object if arr.dtype.kind in "OTU" else arr.dtype)
        out[:] = "" if out.dtype == object else arr.fill_value
        step = int(arr.metadata.chunk_grid.chunk_shape[0])
        for s_ in range(lo // step, -(-hi // step)):
            for a, b, block, err, damage in self._shard(name, arr, s_, min((s_ + 1) * step, self.n)):
                if not (lo <= a and b <= hi):
                    continue
                if err:
                    _add(self.bad.setdefault(name, []), a, b, err, damage)
                    self.damaged.setdefault(name, set()).update(range(a, b))
                elif block is not None:
                    out[a - lo:b - lo] = block
        return out

    def flush_bad(self, name) -> None:
        for rows, what, damage in self.bad.pop(name, [])[: self.limit]:
            self.report(name, rows, what, damage)

    def _shard(self, name, arr, s_, hi):
        step = int(arr.metadata.chunk_grid.chunk_shape[0])
        table = self.g.manifest.arrays[name]["chunks"]
        for lo, hi_, block, state in chunks.shard_units(arr, s_, hi):
            yield (lo, hi_, block, *self._state(table, name, lo // step, state))

    def _state(self, table, name, c, state):
        entry = table.get(str(c))
        chunk = f"{self.g.key}/{entry[0]}" if entry else f"{self.g.key}/{name} #{c} (never written)"
        if state in ("ok", "absent"):  # absent: never written, fill values as committed
            return None, ""
        if state == "missing":
            return f"chunk file {chunk} is missing", "missing"
        if state == "foreign":
            return (f"chunk {chunk} is not the one committed (size or checksum differs from the "
                    "manifest's: a stale, moved or foreign chunk)"), state
        return f"chunk file {chunk} is unreadable (truncated or corrupted)", state

    def rows(self) -> bool:
        """Check the per-row arrays window by window, keeping 9 bytes per row: each row's
        first digest word (for the duplicate and index checks) and whether it has a digest."""
        for name in ROW_ARRAYS:
            if name not in self.names:
                self.report(name, (), "row array missing")
        if any(name not in self.names or self.array(name) is None for name in ROW_ARRAYS):
            return False
        self.first = np.zeros(self.n, dtype=np.uint64)
        self.live = np.zeros(self.n, dtype=bool)
        wrong_digest, wrong_length = [], []
        window = 1 << 15
        for lo in range(0, self.n, window):
            hi = min(lo + window, self.n)
            digests, seqs, lengths = (self.load(n, lo, hi) for n in ("digest", "sequence", "length"))
            lost_digest, lost_sequence = self.damaged.get("digest", set()), self.damaged.get("sequence", set())
            slow = self._window(lo, digests, seqs, lengths, lost_digest | lost_sequence, wrong_length)
            for i in slow:
                seq, dig, length = seqs[i - lo], digests[i - lo], lengths[i - lo]
                if (dig == "" and seq == "") or i in lost_digest:
                    continue  # a row dropped by a repair (no lookup finds it), or one whose chunk is reported
                try:
                    self.first[i] = int(str(dig)[:16], 16)
                    self.live[i] = True  # indexed under its digest
                    ok = i in lost_sequence or sequence_digest(str(seq)) == str(dig)
                except (ValueError, UnicodeEncodeError):
                    ok = False
                if not ok:
                    wrong_digest.append(i)
                elif i not in lost_sequence and len(seq) != int(length):
                    wrong_length.append(i)
            for name in ("n_tokens", "n_windows"):
                self.load(name, lo, hi)
        for name in ROW_ARRAYS:
            self.flush_bad(name)
        if wrong_digest:
            self.report("digest", wrong_digest, "digest does not match the row's sequence")
        if wrong_length:
            self.report("length", wrong_length, "length does not match the row's sequence")
        self._duplicates()
        return True

    def _window(self, lo: int, digests, seqs, lengths, lost: set, wrong_length: list) -> list:
        """Check rows ``lo...`` of one window whose digest matches their sequence, in bulk;
        return the rows left for the one-by-one check (damage, dropped rows: rare)."""
        sha = hashlib.sha256
        try:
            raw = [sha(s.encode("ascii")).digest() for s in seqs.tolist()]
        except (AttributeError, UnicodeEncodeError):
            return list(range(lo, lo + len(seqs)))
        good = (np.array([r.hex() for r in raw], dtype=object) == digests) & (digests != "")
        if lost:
            good[[i - lo for i in lost if lo <= i < lo + len(seqs)]] = False
        rows = np.flatnonzero(good)
        if raw:
            self.first[lo + rows] = np.frombuffer(b"".join(raw), dtype=">u8").reshape(-1, 4)[rows, 0]
        self.live[lo + rows] = True
        sizes = np.fromiter(map(len, seqs[rows].tolist()), dtype=np.int64, count=rows.size)
        wrong_length.extend((lo + rows[sizes != lengths[rows].astype(np.int64)]).tolist())
        return (lo + np.flatnonzero(~good)).tolist()

    def _duplicates(self) -> None:
        """Rows whose sequence an earlier row holds: equal first digest words, confirmed
        by the whole digests (read again for those rows only)."""
        words = self.first[self.live]  # 8 bytes a row (a copy), sorted in place
        words.sort()
        repeated = words[1:][words[1:] == words[:-1]]
        del words
        if not repeated.size:
            return
        suspects = np.flatnonzero(np.isin(self.first, repeated) & self.live)
        digests = self.g._values("digest", self.g.array("digest"), suspects)
        seen, duplicate = set(), []
        for row, d in zip(suspects.tolist(), digests.tolist()):
            if d in seen:
                duplicate.append(row)
            seen.add(d)
        if duplicate:
            self.report("digest", duplicate, "sequence stored twice")

    def index(self) -> None:
        """Every live row in exactly one run entry, under its own digest; nothing else."""
        covered = sum(b - a for a, b in self.g.runs)
        if covered != self.n or any(r[0] != (p[1] if p else 0) for p, r in zip([None] + self.g.runs, self.g.runs)) \
                or any(index.run_path(a, b) not in self.g.manifest.arrays for a, b in self.g.runs):
            self.report("index", (), f"index runs {self.g.runs} do not cover rows 0-{self.n - 1} once")
            return
        seen = np.zeros(self.n, dtype=np.uint8)
        wrong = []
        try:
            for a, b in self.g.runs:
                arr = self.g._open(index.run_path(a, b))
                n_chunks = -(-arr.shape[0] // int(arr.metadata.chunk_grid.chunk_shape[0]))
                where = (self.g.store.path, self.g.key, index.run_path(a, b))
                for _, block in chunks.stream_blocks(arr, range(n_chunks), where):
                    rows = block[:, 2].astype(np.int64)
                    inside = (rows >= a) & (rows < b)
                    wrong.extend(rows[~inside].tolist())
                    rows, keys = rows[inside], block[inside, 0]
                    np.add.at(seen, rows, 1)
                    wrong.extend(rows[(keys != self.first[rows]) | ~self.live[rows]].tolist())
        except Exception as exc:  # noqa: BLE001 - an unreadable index run is damage to report
            self.report("index", (), f"index unreadable ({type(exc).__name__}: {exc})")
            return
        wrong.extend(np.flatnonzero((seen != self.live) | (seen > 1)).tolist())
        if wrong:
            self.report("index", sorted(set(r for r in wrong if 0 <= r < self.n)),
                        "index does not find the row at its number")

    def data(self) -> None:
        for name in self.names:
            if name.startswith("has_") and name[4:] not in self.names:
                self.report(name[4:], (), "data array missing or its metadata unreadable")
        for name in self.g.array_names():
            if mask_name(name) not in self.names:
                self.report(name, (), f"fill mask {mask_name(name)} missing")
                continue
            mask = self.load(mask_name(name))
            self.flush_bad(mask_name(name))
            arr = self.array(name)
            if mask is None or arr is None:
                continue
            mask = np.asarray(mask, dtype=bool)
            bad = []
            step = int(arr.metadata.chunk_grid.chunk_shape[0])
            units = (u for s_ in range(-(-self.n // step))
                     for u in self._shard(name, arr, s_, min((s_ + 1) * step, self.n)))
            for lo, hi, block, err, damage in units:
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
    if not c.rows():
        return c.problems
    c.index()
    c.data()
    return c.problems


__all__ = ["Problem", "verify_store", "verify_group"]
