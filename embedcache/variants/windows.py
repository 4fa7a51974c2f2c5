"""The reference and alternative windows of a variant, defined exactly.

For a variant at 0-based position ``p`` on a contig of ``n`` bases, with REF of ``r`` bases and
flank ``F``, the half-width is

    h = min(F, p, n - p - r)

(for an SNV, ``r = 1``: ``min(F, p, n - 1 - p)``). The reference window is ``[p - h, p + h + 1)``:
an odd number of bases with the variant's (first) base exactly in the middle, at offset ``h``,
shortened symmetrically near either contig end and never padded. The ``r`` in the bound keeps
the ``h`` bases after a longer REF on the contig.

The alternative window of an SNV is the reference window with its middle base replaced by ALT.
That of any other allele (an indel or an MNP) is the ``h`` bases before ``p``, then ALT, then
the ``h`` bases after REF: ``seq[p - h:p] + ALT + seq[p + r:p + r + h]``.

Where the reference holds ``N`` (each ``N`` is a token of its own in the 6-mer tokenizers),
a window may need more tokens than the model takes; :func:`variant_windows` then shrinks ``h``
to the largest value for which both windows fit (token counts grow with ``h``).

The reverse complement of both windows (:func:`reverse_complement_windows`) keeps the variant
in the middle of an SNV's windows; the alleles are complemented.

These functions are pure: sequence access is a ``fetch(start, end) -> str`` callable returning
the normalized (upper-case) reference bases of ``[start, end)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from embedcache.sequences.alphabet import reverse_complement

__all__ = ["VariantWindows", "default_flank", "half_width", "reverse_complement_windows", "variant_windows"]

Fetch = Callable[[int, int], str]
_SCAN = 64
TokenCount = Callable[[str], int]


@dataclass(frozen=True)
class VariantWindows:
    """The two windows of one allele.

    Attributes
    ----------
    flank : int
        ``h``: bases on each side of the variant in the reference window.
    start : int
        0-based contig position of the reference window's first base (``p - h``).
    ref, alt : str
        The reference and alternative windows.
    """

    flank: int
    start: int
    ref: str
    alt: str

    @property
    def middle(self) -> int:
        """Offset of the variant's (first) base in both windows: ``flank``."""
        return self.flank


def half_width(p: int, n: int, flank: int, ref_length: int = 1) -> int:
    """``h = min(flank, p, n - p - ref_length)``: the half-width before any shrinking for Ns."""
    if not 0 <= p < n or ref_length < 1 or p + ref_length > n:
        raise ValueError(f"variant [{p}, {p + ref_length}) does not lie on a contig of {n} bases")
    if flank < 0:
        raise ValueError(f"flank must be >= 0, got {flank}")
    return min(flank, p, n - p - ref_length)


def _windows(fetch: Fetch, p: int, h: int, ref: str, alt: str) -> VariantWindows:
    r = len(ref)
    if r == 1 and len(alt) == 1:
        window = fetch(p - h, p + h + 1)
        return VariantWindows(h, p - h, window, window[:h] + alt + window[h + 1:])
    left, right = fetch(p - h, p), fetch(p + r, p + r + h)
    window = left + fetch(p, p + h + 1)
    return VariantWindows(h, p - h, window, left + alt + right)


def variant_windows(fetch: Fetch, p: int, n: int, ref: str, alt: str, flank: int, *,
                    count_tokens: TokenCount | None = None, max_tokens: int | None = None) -> VariantWindows:
    """The windows of allele ``ref > alt`` at 0-based ``p`` on a contig of ``n`` bases.

    With ``count_tokens`` and ``max_tokens``, ``h`` shrinks to the largest value whose windows
    both take at most ``max_tokens`` tokens (see :func:`_largest`); a ``ValueError`` if even
    ``h = 0`` does not fit.
    """
    h = half_width(p, n, flank, len(ref))
    if count_tokens is None or max_tokens is None:
        return _windows(fetch, p, h, ref, alt)

    def fits(x: int) -> bool:
        w = _windows(fetch, p, x, ref, alt)
        return count_tokens(w.ref) <= max_tokens and count_tokens(w.alt) <= max_tokens

    if fits(h):
        return _windows(fetch, p, h, ref, alt)
    if not fits(0):
        raise ValueError(f"the alleles {ref}>{alt} alone take more than {max_tokens} tokens")
    return _windows(fetch, p, _largest(fits, 0, h), ref, alt)


def _largest(fits: Callable[[int], bool], lo: int, hi: int) -> int:
    """The largest ``x`` in ``[lo, hi]`` with ``fits(x)``, given ``fits(lo)``.

    Token counts grow with the window but not strictly monotonically: a k-mer tokenizer spends
    up to k - 1 single-base tokens on a remainder, so one more base on each side can take a
    count down by up to k - 2. A binary search finds a boundary; the ``_SCAN`` half-widths past
    it are then checked one by one (enough for k <= 6 twice over).
    """
    a, b = lo, hi
    while a < b:
        mid = (a + b + 1) // 2
        a, b = (mid, b) if fits(mid) else (a, mid - 1)
    best = a
    for x in range(a + 1, min(hi, a + _SCAN) + 1):
        if fits(x):
            best = x
    return best


def default_flank(count_tokens: TokenCount, max_tokens: int, *, limit: int = 1 << 24) -> int:
    """The largest ``h`` whose window of ``2h + 1`` ACGT bases takes at most ``max_tokens`` tokens.

    ``count_tokens`` counts a sequence's tokens as the model sees them (CLS included where the
    model has one): 2,994 for a 1,000-token 6-mer model (998 6-mers, one single base, CLS).
    """

    def fits(h: int) -> bool:
        return count_tokens(("ACGT" * (h // 2 + 1))[:2 * h + 1]) <= max_tokens

    if not fits(0):
        raise ValueError(f"a single base takes more than {max_tokens} tokens")
    hi = 1
    while hi < limit and fits(hi):
        hi *= 2
    return _largest(fits, 0, min(hi, limit))


def reverse_complement_windows(windows: VariantWindows) -> VariantWindows:
    """Both windows reverse-complemented (``start`` and ``flank`` unchanged)."""
    return VariantWindows(windows.flank, windows.start, reverse_complement(windows.ref),
                          reverse_complement(windows.alt))
