"""Data-quality checks on input records that are worth a warning, not a refusal.

An id that names two different sequences in one input is almost always a mistake (a FASTA
whose headers were cut at the first space, two tables concatenated): an export would then hold
two rows named alike, and a classifier's predictions could not be traced back. It is not an
error — the sequences are still embedded and stored by content — so it is reported as a
:class:`DuplicateIdWarning` with the count and the first examples.
"""

from __future__ import annotations

import warnings
from typing import Iterable

import pandas as pd

__all__ = ["DuplicateIdWarning", "IdConflicts", "duplicate_id_conflicts"]

_EXAMPLES = 5


class DuplicateIdWarning(UserWarning):
    """Records share an id but hold different sequences."""


class IdConflicts:
    """Accumulate, chunk by chunk, the ids that name more than one distinct sequence.

    Memory is one 64-bit pair per distinct id (hashes, not strings), so a build over millions
    of records can afford it; hash collisions could only hide a conflict, never invent one
    (two records are compared by sequence hash only when their ids hash alike, and a
    conflict needs different sequence hashes, hence different sequences).

    Parameters
    ----------
    source : str
        What the records come from (a file name), for the message.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self._first: dict[int, int] = {}
        self.count = 0
        self.examples: list[str] = []
        self._named: set[str] = set()

    def update(self, ids: Iterable[str], sequences: Iterable[str]) -> None:
        """Take one chunk of records (ids and their normalized sequences, in order)."""
        ids = pd.Series(ids, dtype=object)
        id_hash = pd.util.hash_array(ids.to_numpy()).tolist()
        seq_hash = pd.util.hash_array(pd.Series(sequences, dtype=object).to_numpy()).tolist()
        first = self._first
        for i, (ih, sh) in enumerate(zip(id_hash, seq_hash)):
            prev = first.setdefault(ih, sh)
            if prev != sh:
                name = ids.iat[i]
                if name not in self._named:
                    self._named.add(name)
                    self.count += 1
                    if len(self.examples) < _EXAMPLES:
                        self.examples.append(name)

    def message(self) -> str | None:
        """The warning text, or None when every id names one sequence."""
        if not self.count:
            return None
        return (f"{self.source}: {self.count} id(s) name more than one different sequence "
                f"(first: {', '.join(map(repr, self.examples))}); every sequence is still embedded, "
                "but exports and predictions will hold several rows with one id. Give each record a "
                "unique id to tell them apart.")

    def warn(self, stacklevel: int = 2) -> None:
        """Issue a :class:`DuplicateIdWarning` if any conflict was seen."""
        text = self.message()
        if text is not None:
            warnings.warn(text, DuplicateIdWarning, stacklevel=stacklevel + 1)


def duplicate_id_conflicts(table: pd.DataFrame, source: str) -> IdConflicts:
    """:class:`IdConflicts` of a whole table with ``id`` and ``sequence`` columns."""
    conflicts = IdConflicts(source)
    conflicts.update(table["id"].to_numpy(), table["sequence"].to_numpy())
    return conflicts
