"""Rows other writers committed since a writer planned: what a commit must still check.

A build plans on a snapshot: the sequences it computes were absent from that snapshot's
rows. At each commit it must drop those another writer committed since. Looking every
new digest up in the whole index would read, for a batch of random digests, about every
index chunk: a cost that grows with the store. :class:`SincePlan` instead reads the
digests of the rows committed after the plan by *other* writers (a writer's own rows
cannot hold its new rows twice), each once, and keeps them in memory: the store is read
in proportion to what others add, not to what it holds.

If others commit more than :data:`MAX_HELD` rows during one build the memory would grow
with them; the tracker then gives up and the commits look the index up instead.
"""

from __future__ import annotations

import numpy as np

from embedcache.store import index

__all__ = ["SincePlan", "MAX_HELD"]

#: Rows of other writers held (24 bytes each) before lookups go back to the index.
MAX_HELD = 2_000_000


class SincePlan:
    """Digests committed since row ``planned`` by writers other than this one.

    Parameters
    ----------
    planned
        Committed rows of the snapshot the new rows were planned on (absent from those rows).
    """

    def __init__(self, planned: int):
        self.planned = int(planned)
        self.seen = self.planned  # rows read up to here
        self.own: list[tuple[int, int]] = []  # ranges this writer committed at or past ``seen``
        self.keys = np.zeros((0, 2), dtype=np.uint64)  # sorted by first word
        self.rows = np.zeros(0, dtype=np.int64)
        self.bytes_read = 0

    @property
    def usable(self) -> bool:
        return len(self.rows) <= MAX_HELD

    def committed(self, lo: int, hi: int) -> None:
        """This writer committed rows ``lo..hi-1``."""
        if hi > self.seen:
            self.own.append((max(lo, self.seen), hi))

    def catch_up(self, group) -> None:
        """Read the digests of rows others committed up to ``group`` (a snapshot)."""
        end = group.n_rows
        if end <= self.seen:
            return
        mine = np.zeros(end - self.seen, dtype=bool)
        for lo, hi in self.own:
            mine[max(lo, self.seen) - self.seen:max(0, min(hi, end) - self.seen)] = True
        rows = self.seen + np.flatnonzero(~mine)
        self.own = [(lo, hi) for lo, hi in self.own if hi > end]
        self.seen = end
        if not rows.size or not self.usable:
            return
        digests = group._settled(lambda g: g._values("digest", g.array("digest"), rows))
        live = np.array([bool(d) for d in digests.tolist()], dtype=bool)  # "" : a row a repair dropped
        self.bytes_read += int(rows.size) * 64
        keys = index.keys_of_hex([d for d, ok in zip(digests.tolist(), live) if ok])
        self.keys = np.concatenate([self.keys, keys])
        self.rows = np.concatenate([self.rows, rows[live]])
        order = np.argsort(self.keys[:, 0], kind="stable")
        self.keys, self.rows = self.keys[order], self.rows[order]

    def rows_of(self, digests) -> np.ndarray:
        """Row of each hex digest among the rows read, ``-1`` where absent."""
        keys = index.keys_of_hex(digests)
        entries = np.column_stack([self.keys, self.rows.astype(np.uint64)])
        return index.search(entries, keys)
