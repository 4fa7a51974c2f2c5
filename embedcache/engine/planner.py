"""The one batch planner: token counts in, ``(padded_length, items)`` batches out (no JAX).

Why buckets: a jitted function compiles once per input shape. Padding every sequence to
``max_tokens`` (what the official tokenizer does) keeps one shape but wastes most of the
compute on short sequences; padding each batch to its own longest row wastes little but
compiles endlessly. So every sequence goes to the smallest of a fixed ladder of padded
lengths (:data:`BUCKET_LADDER`: multiples of 4 up to 64, then eight steps per doubling, so
padding is at most an eighth of a batch, and 300-bp sequences (51 tokens) pad to 52), and each
batch holds as many rows as fit a token budget, rounded down to a power of two.

What is left in the buckets at the end would make one partial batch per bucket, each padded
to a power of two rows: on a small or very mixed input (256 sequences of 50-1,000 bp spread
over 26 buckets) that is most of the work, and a quarter of it padding. So the leftovers are
batched across buckets instead, longest first, as the official code batches length-sorted
sequences: each batch takes the longest rows left, pads to the first one's bucket and holds
that bucket's row count, a half or a quarter of it, whichever split of the leftovers pads
least (v1/v2 mask padded keys, so a row's outputs do not depend on its batch's length). On
that mixed input padded/real tokens drop from 1.32 to 1.08. The number of compilations stays
bounded by (#buckets x log2(rows)), whatever the input, and compiled
programs are kept on disk across runs (:func:`enable_compile_cache`). A family whose
padding changes outputs (NTv3) keeps every row at its own padded length.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

import numpy as np

from embedcache.errors import InputError, SequenceTooLongError
from embedcache.families.base import bucket_lengths

__all__ = ["Planner"]


def _pow2_floor(n: int) -> int:
    return 1 << (max(int(n), 1).bit_length() - 1)


def _pow2_ceil(n: int) -> int:
    return 1 << (max(int(n), 1) - 1).bit_length()


class Planner:
    """Queues items per padded length and hands out ``(padded_length, items)`` batches: full
    ones as soon as they are there, the rest at :meth:`finish`. Items are whatever the caller
    queues (the engine queues ``(tag, tokens)``), so one planner serves a whole build.

    Parameters
    ----------
    max_tokens
        Longest padded length.
    token_budget
        Padded tokens per batch (rows x padded length) to aim for.
    max_rows
        Optional cap on rows per batch (``--batch-size``).
    ladder
        The padded lengths allowed (default :func:`bucket_lengths`); a model family brings
        its own (NTv3: every multiple of 2**num_downsamples).
    mix
        Whether :meth:`finish` may pad leftover rows up to a longer bucket's length (the
        family's ``masks_padding``).
    """

    def __init__(self, max_tokens: int, token_budget: int, max_rows: int | None = None,
                 ladder: Sequence[int] | None = None, mix: bool = True):
        self.ladder = np.asarray(bucket_lengths(max_tokens) if ladder is None else ladder)
        self.max_tokens, self.token_budget, self.max_rows, self.mix = int(max_tokens), int(token_budget), max_rows, mix
        self._queues: dict[int, list] = {}

    def rows_for(self, length: int) -> int:
        """Rows of a full batch of padded length ``length``."""
        rows = _pow2_floor(max(self.token_budget // length, 1))
        return min(rows, max(int(self.max_rows), 1)) if self.max_rows is not None else rows

    def add(self, items: Iterable, n_tokens: np.ndarray) -> Iterator[tuple[int, list]]:
        """Queue items of ``n_tokens`` tokens each; yield full batches. An item of no tokens
        or over ``max_tokens`` is refused (the build applies the long-sequence policy before)."""
        n_tokens = np.asarray(n_tokens, dtype=np.int64)
        bad = np.flatnonzero((n_tokens < 1) | (n_tokens > self.max_tokens))
        if bad.size:
            i = int(bad[0])
            error = SequenceTooLongError if n_tokens[i] > 0 else InputError
            raise error(f"sequence #{i + 1} has {n_tokens[i]} tokens, not 1 to max_tokens={self.max_tokens}; "
                        f"{bad.size} sequence(s) are refused")
        lengths = self.ladder[np.searchsorted(self.ladder, n_tokens)].tolist()
        for item, length in zip(items, lengths):
            self._queues.setdefault(length, []).append(item)
        for length in sorted(self._queues):
            queue, rows = self._queues[length], self.rows_for(length)
            while len(queue) >= rows:
                part, queue[:rows] = queue[:rows], []
                yield length, part

    def finish(self) -> Iterator[tuple[int, list]]:
        """Yield what is still queued: across buckets, longest first, when ``mix`` (see the
        module docs); else per bucket, in partial batches."""
        queues, self._queues = self._queues, {}
        if not self.mix:
            for length in sorted(queues):
                queue, rows = queues[length], self.rows_for(length)
                yield from ((length, queue[s : s + rows]) for s in range(0, len(queue), rows))
            return
        left = [(length, item) for length in sorted(queues, reverse=True) for item in queues[length]]
        m = len(left)
        # Fewest padded tokens for left[i:] (dynamic programming, back to front): a batch
        # starting at i has its first row's length and rows_for(length), a half or a quarter
        # of that many rows (or all that is left), so shapes stay few.
        cost, take = [0] * (m + 1), [0] * (m + 1)
        for i in range(m - 1, -1, -1):
            length, rows = left[i][0], self.rows_for(left[i][0])
            options = {min(max(rows >> k, 1), m - i) for k in range(3)}
            take[i] = min(options, key=lambda j: _pow2_ceil(j) * length + cost[i + j])
            cost[i] = _pow2_ceil(take[i]) * length + cost[i + take[i]]
        i = 0
        while i < m:
            yield left[i][0], [item for _, item in left[i : i + take[i]]]
            i += take[i]
