"""What every model family answers, and where families are found.

(Grows into the Family protocol and registry.)
"""

from __future__ import annotations

__all__ = ["BUCKET_LADDER", "bucket_lengths"]


def _ladder(top: int = 4096) -> tuple[int, ...]:
    steps, octave = list(range(16, 64, 4)), 64
    while octave < top:
        steps += range(octave, 2 * octave, octave // 8)
        octave *= 2
    return tuple(steps) + (top,)


BUCKET_LADDER = _ladder()


def bucket_lengths(max_tokens: int) -> tuple[int, ...]:
    """The padded lengths used for a run whose longest allowed sequence is ``max_tokens``."""
    return tuple(b for b in BUCKET_LADDER if b < max_tokens) + (int(max_tokens),)
