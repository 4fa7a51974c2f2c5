"""Rows other writers committed since a writer planned: what a commit must still check.

A build plans on a snapshot: the sequences it computes were absent from that snapshot's
rows. At each commit it must drop those another writer committed since. Looking every
new digest up in the whole index would read, for a batch of random digests, about every
index chunk: a cost that grows with the store. :class:`SincePlan` instead reads the index
entries of the rows committed after the plan by *other* writers (a writer's own rows
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
        # Runs of (key word, key word, row) sorted by first word, one per catch-up, merged
        # like a binary counter so that a lookup searches few and each row is re-sorted
        # O(log) times, not at every commit.
        self.parts: list[np.ndarray] = []
        self.held = 0
        self.bytes_read = 0

    @property
    def usable(self) -> bool:
        return self.held <= MAX_HELD

    def committed(self, lo: int, hi: int) -> None:
        """This writer committed rows ``lo..hi-1``."""
        if hi > self.seen:
            self.own.append((max(lo, self.seen), hi))

    def catch_up(self, group) -> None:
        """Read the index entries of rows others committed up to ``group`` (a snapshot)."""
        end = group.n_rows
        if end <= self.seen:
            return
        mine = np.zeros(end - self.seen, dtype=bool)
        for lo, hi in self.own:
            mine[max(lo, self.seen) - self.seen:max(0, min(hi, end) - self.seen)] = True
        seen, self.own, self.seen = self.seen, [(lo, hi) for lo, hi in self.own if hi > end], end
        if mine.all() or not self.usable:
            return
        group._check_runs()  # a damaged index is refused with its way out, as a lookup would
        # From the index runs holding those rows (binary words, sorted by key already),
        # not the digest array (a Python string per row). A run merged just now may hold
        # older rows too: each is read by a writer's next catch-up only, as merges are rare.
        parts = group._settled(lambda g: [index.read_run(g, a, b) for a, b in g.runs if b > seen and a < end])
        for entries in parts:
            self.bytes_read += entries.nbytes
            rows = entries[:, 2].astype(np.int64)
            inside = (rows >= seen) & (rows < end)
            inside[inside] = ~mine[rows[inside] - seen]
            self._add(entries[inside])

    def _add(self, part: np.ndarray) -> None:
        if not len(part):
            return
        self.held += len(part)
        while self.parts and len(self.parts[-1]) <= 2 * len(part):
            part = index.merge_runs([self.parts.pop(), part])
        self.parts.append(part)

    def rows_of(self, digests) -> np.ndarray:
        """Row of each hex digest among the rows read, ``-1`` where absent."""
        keys = index.keys_of_hex(digests)
        found = np.full(len(keys), -1, dtype=np.int64)
        for part in self.parts:
            todo = np.flatnonzero(found < 0)
            found[todo] = index.search(part, keys[todo])
        return found
