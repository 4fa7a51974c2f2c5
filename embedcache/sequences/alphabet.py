"""The alphabet policy: what a DNA sequence may contain, and how it is normalized.

Every sequence that reaches the tokenizer or the store has passed through
:func:`normalize`, so the same biological sequence always has the same bytes (and
therefore the same cache row), whatever its case or source file.

The policy, which is part of the cache key:

* Letters are upper-cased first. Soft-masked genome regions are lower-case; the
  official NT tokenizer raises on them, we embed them as their upper-case form.
* ``A``, ``C``, ``G``, ``T`` and ``N`` are kept.
* The other IUPAC ambiguity codes (``R Y K M S W B D H V``) become ``N`` under the
  default policy ``"iupac-to-n"``, and are refused under ``"strict"``.
* Anything else (``U``, gaps, digits, whitespace, ``*``...) is refused under both
  policies, with the record and position named.
"""

from __future__ import annotations

import itertools
import re
from typing import Iterable, Sequence

from embedcache.errors import AlphabetError

__all__ = [
    "ALPHABET_POLICIES",
    "DEFAULT_ALPHABET",
    "IUPAC_AMBIGUITY_CODES",
    "normalize",
    "normalize_many",
    "reverse_complement",
]

ALPHABET_POLICIES = ("iupac-to-n", "strict")
DEFAULT_ALPHABET = "iupac-to-n"
IUPAC_AMBIGUITY_CODES = "RYKMSWBDHV"

_TO_N = str.maketrans(IUPAC_AMBIGUITY_CODES, "N" * len(IUPAC_AMBIGUITY_CODES))
_TO_N_BYTES = bytes.maketrans(IUPAC_AMBIGUITY_CODES.encode(), b"N" * len(IUPAC_AMBIGUITY_CODES))
_NOT_ACGTN = re.compile(r"[^ACGTN]")
_COMPLEMENT = str.maketrans("ACGTNRYKMSWBDHV", "TGCANYRMKSWVHDB")


def _check_policy(alphabet: str) -> None:
    if alphabet not in ALPHABET_POLICIES:
        raise ValueError(f"unknown alphabet policy {alphabet!r}; choose one of {ALPHABET_POLICIES}")


def normalize(seq: str, *, alphabet: str = DEFAULT_ALPHABET, record: str | None = None) -> str:
    """Return ``seq`` upper-cased with ambiguity codes handled by the ``alphabet`` policy.

    Parameters
    ----------
    seq
        A DNA sequence, any case.
    alphabet
        ``"iupac-to-n"`` (default) maps R, Y, K, M, S, W, B, D, H, V to N;
        ``"strict"`` refuses them.
    record
        A name for the sequence (file and record id) used in error messages.

    Raises
    ------
    AlphabetError
        If the sequence holds a character the policy does not accept. The message
        names the record, the position (1-based) and the character.
    """
    _check_policy(alphabet)
    upper = seq.upper()
    if alphabet == "iupac-to-n":
        upper = upper.translate(_TO_N)
    bad = _NOT_ACGTN.search(upper)
    if bad is not None:
        raise _alphabet_error(seq, bad.start(), alphabet, record)
    return upper


def normalize_many(
    seqs: Sequence[str], *, alphabet: str = DEFAULT_ALPHABET, records: Iterable[str] | None = None
) -> list[str]:
    """:func:`normalize` over many sequences, in bulk; ``records`` names them for error
    messages (default ``sequence #1``, ``#2``...).

    A task of 50,000 sequences is a few megabytes: upper-casing, mapping ambiguity codes
    and checking the alphabet over their ASCII concatenation are three C-level passes
    instead of 50,000 Python calls. Anything the bulk path does not vouch for (a refused
    or non-ASCII character) goes through :func:`normalize` one sequence at a time, which
    gives the same result or names the sequence at fault.
    """
    _check_policy(alphabet)
    seqs = list(seqs)
    try:
        joined = "".join(seqs).encode("ascii")
    except UnicodeEncodeError:
        joined = None
    if joined is not None:
        if not joined.translate(None, b"ACGTN"):
            return seqs  # already normalized (the usual case): one pass, no copies
        joined = joined.upper()
        if alphabet == "iupac-to-n":
            joined = joined.translate(_TO_N_BYTES)
        if not joined.translate(None, b"ACGTN"):
            text, ends = joined.decode("ascii"), list(itertools.accumulate(len(s) for s in seqs))
            return [text[a:b] for a, b in zip([0, *ends[:-1]], ends)]
    names = list(records) if records is not None else [f"sequence #{i + 1}" for i in range(len(seqs))]
    return [normalize(seq, alphabet=alphabet, record=name) for seq, name in zip(seqs, names)]


def reverse_complement(seq: str) -> str:
    """Reverse complement of an upper-case IUPAC DNA sequence (N stays N)."""
    return seq.translate(_COMPLEMENT)[::-1]


def _alphabet_error(seq: str, pos: int, alphabet: str, record: str | None) -> AlphabetError:
    char = seq[pos]
    where = f"record {record}" if record else "sequence"
    if alphabet == "strict" and char.upper() in IUPAC_AMBIGUITY_CODES:
        return AlphabetError(
            f"{where}: position {pos + 1} holds {char!r}, an IUPAC ambiguity code, and "
            "--alphabet strict accepts only A, C, G, T and N. Use --alphabet iupac-to-n "
            "to embed ambiguity codes as N, or fix the record."
        )
    shown = repr(char) if char.isprintable() and not char.isspace() else f"{char!r} (whitespace or control)"
    return AlphabetError(
        f"{where}: position {pos + 1} holds {shown}, which is not a DNA letter "
        "(A, C, G, T, N or an IUPAC ambiguity code). Fix or remove the record "
        "(RNA must be converted to DNA, U to T, and gaps removed)."
    )
