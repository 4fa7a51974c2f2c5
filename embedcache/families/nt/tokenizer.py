"""The Nucleotide Transformer k-mer tokenizer (v1 and v2 vocabularies), vectorised.

A sequence becomes ``<cls>`` followed by its tokens. The sequence is split at every
``N``; each N-free piece is cut into k-mers from its start, a remainder of 1 to k-1
bases becomes single-base tokens, and every ``N`` is a token of its own. The empty
sequence gives ``[<cls>]``. The released models use ``k = 6``; other ``k`` (from a
checkpoint's ``k_for_kmers``) follow the same rule.

Vocabularies (ids for ``k = 6``):

* ``v2``: ``<unk> <pad> <mask> <cls> <eos> <bos>`` = 0-5, the 6-mers at 6 + their
  base-4 index, the single bases ``A T C G N`` = 4102-4106.
* ``v1``: ``<unk> <pad> <mask> <cls>`` = 0-3, the 6-mers at 4 + their base-4 index,
  ``A T C G N`` = 4100-4104, ``<eos> <bos>`` = 4105, 4106.

The base-4 index reads the k-mer with A=0, T=1, C=2, G=3, first letter most
significant. Both vocabularies hold 4107 tokens; the v1 model's embedding table has
only 4105 rows (:attr:`Tokenizer.model_alphabet_size`), as ``<eos>``/``<bos>`` are never
produced.

Input policy, and how it differs from the official tokenizer on purpose
----------------------------------------------------------------------
The tokenizer takes sequences already normalized by
:func:`embedcache.sequences.alphabet.normalize`: upper-case ``A``, ``C``, ``G``, ``T``, ``N`` only.
That normalization is where the project's alphabet policy lives:

* Sequences are upper-cased, so soft-masked (lower-case) genome regions are embedded
  as their upper-case bases. The official tokenizer raises ``KeyError`` on them.
* The other IUPAC ambiguity codes (R, Y, K, M, S, W, B, D, H, V) become ``N`` by
  default, or are refused with the record named under ``--alphabet strict``. The
  official tokenizer raises ``KeyError`` on them.
* Anything else (``U``, whitespace, gaps, digits) is refused with the record named.

:meth:`Tokenizer.encode` checks its input cheaply and raises
:class:`~embedcache.errors.AlphabetError` on any other character, so a caller that
skips normalization gets an error, never wrong ids. On every input the official
tokenizer accepts, the ids are identical to its ``tokenize``. There is no padding
and no length limit here: the engine pads, and the build applies the long-sequence
policy to :meth:`Tokenizer.count_tokens` (which, like the official length check,
counts ``<cls>``).
"""

from __future__ import annotations

from functools import lru_cache
from itertools import product
from typing import Iterable, Sequence

import numpy as np

from embedcache.errors import AlphabetError

__all__ = ["Tokenizer", "VARIANTS", "tokenizer_for"]

VARIANTS = ("v2", "v1")

# Digit order of the official vocabulary: k-mers enumerate itertools.product over ATCG.
_NUCLEOTIDES = "ATCG"
_SINGLES = _NUCLEOTIDES + "N"
_N_CODE = 4
_INVALID = 255

# Letter -> base-4 digit (N -> 4); every other byte is invalid. A bytes.translate
# table: it maps a buffer several times faster than indexing a NumPy lookup table.
_CODES = bytearray([_INVALID]) * 256
for _code, _letter in enumerate(_SINGLES):
    _CODES[ord(_letter)] = _code
_CODES = bytes(_CODES)


class Tokenizer:
    """NT's k-mer tokenizer for the ``v1`` or ``v2`` vocabulary.

    Parameters
    ----------
    variant
        ``"v2"`` (the multi-species v2 models) or ``"v1"`` (the first release,
        e.g. ``500M_human_ref``).
    k
        k-mer size, ``k_for_kmers`` of the checkpoint (6 for the released models).

    Attributes
    ----------
    variant, k
        As given.
    unk_id, pad_id, mask_id, cls_id
        Ids of ``<unk>`` (0), ``<pad>`` (1), ``<mask>`` (2) and ``<cls>`` (3).
    vocab_size
        Number of tokens in the vocabulary (4107 for ``k = 6``, both variants).
    model_alphabet_size
        Rows of the model's token embedding table: ``vocab_size`` for v2, two fewer
        for v1, whose ``<eos>`` and ``<bos>`` lie past the table.
    tokens
        Token strings in id order.

    Examples
    --------
    >>> tok = Tokenizer("v2")
    >>> tok.encode("ACGTACGNA").tolist()
    [3, 728, 4105, 4106, 4102]
    >>> tok.token_strings([3, 728, 4105, 4106, 4102])
    ['<cls>', 'ACGTAC', 'G', 'N', 'A']
    """

    unk_id = 0
    pad_id = 1
    mask_id = 2
    cls_id = 3

    def __init__(self, variant: str = "v2", k: int = 6):
        if variant not in VARIANTS:
            raise ValueError(f"unknown tokenizer variant {variant!r}; choose one of {VARIANTS}")
        # k = 1 would give the k-mers and the single bases the same strings; above 8 the
        # vocabulary (4**k tokens) is larger than any embedding table NT was trained with.
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 2 <= k <= 8:
            raise ValueError(f"k-mer size (k_for_kmers) must be an integer from 2 to 8, got {k!r}")
        self.variant = variant
        self.k = int(k)
        kmers = ["".join(letters) for letters in product(_NUCLEOTIDES, repeat=self.k)]
        specials = ["<unk>", "<pad>", "<mask>", "<cls>"]
        if variant == "v2":
            self.tokens = specials + ["<eos>", "<bos>"] + kmers + list(_SINGLES)
        else:
            self.tokens = specials + kmers + list(_SINGLES) + ["<eos>", "<bos>"]
        self.vocab_size = len(self.tokens)
        self.model_alphabet_size = self.vocab_size - (2 if variant == "v1" else 0)
        self._kmer_offset = self.tokens.index(kmers[0])
        self._single_offset = self._kmer_offset + len(kmers)
        self._weights = 4 ** np.arange(self.k - 1, -1, -1)

    def __repr__(self) -> str:
        return f"Tokenizer(variant={self.variant!r}, k={self.k})"

    def __eq__(self, other) -> bool:
        if not isinstance(other, Tokenizer):
            return NotImplemented
        return (self.variant, self.k) == (other.variant, other.k)

    def __hash__(self) -> int:
        return hash((Tokenizer, self.variant, self.k))

    def encode(self, seq: str) -> np.ndarray:
        """Token ids of one normalized sequence, ``<cls>`` first.

        Parameters
        ----------
        seq
            Upper-case ``A``/``C``/``G``/``T``/``N`` (see
            :func:`embedcache.sequences.alphabet.normalize`).

        Returns
        -------
        numpy.ndarray
            int32 ids, length ``count_tokens([seq])[0]``.

        Raises
        ------
        AlphabetError
            If ``seq`` holds any other character.
        """
        return self.encode_batch([seq])[0]

    def encode_batch(self, seqs: Iterable[str]) -> list[np.ndarray]:
        """Token ids of many normalized sequences, in one vectorised pass.

        Parameters
        ----------
        seqs
            Upper-case ``A``/``C``/``G``/``T``/``N`` sequences.

        Returns
        -------
        list of numpy.ndarray
            One int32 array per sequence, ``<cls>`` first, in input order. The
            arrays are views of one buffer.

        Raises
        ------
        AlphabetError
            If a sequence holds any other character; the message gives its index in
            ``seqs`` and the position.
        """
        pieces = _Pieces(seqs, self.k)
        counts = pieces.tokens_per_sequence()
        if not len(counts):
            return []
        seq_start = _exclusive_cumsum(counts)
        out = np.empty(int(counts.sum()), dtype=np.int32)
        out[seq_start] = self.cls_id

        # Output position of each piece's first token: the tokens of all earlier pieces
        # plus one <cls> for each sequence up to and including the piece's own.
        first = _exclusive_cumsum(pieces.n_tokens) + np.cumsum(pieces.ends_at_sep) - pieces.ends_at_sep + 1

        src, dst = _ramps(pieces.start, first, pieces.n_kmers, stride=self.k)
        ids = np.full(len(src), self._kmer_offset, dtype=np.int32)
        for j, weight in enumerate(self._weights):
            ids += pieces.codes[src + j] * np.int32(weight)
        out[dst] = ids

        src, dst = _ramps(pieces.start + self.k * pieces.n_kmers, first + pieces.n_kmers, pieces.n_singles)
        out[dst] = pieces.codes[src].astype(np.int32) + self._single_offset

        out[(first + pieces.n_kmers + pieces.n_singles)[pieces.ends_at_real_n]] = self._single_offset + _N_CODE
        # Plain slicing: np.split costs several times more per piece.
        bounds = np.append(seq_start, len(out)).tolist()
        return [out[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def count_tokens(self, seqs: Iterable[str]) -> np.ndarray:
        """Number of tokens of each sequence, ``<cls>`` included, without building ids.

        Parameters
        ----------
        seqs
            Upper-case ``A``/``C``/``G``/``T``/``N`` sequences.

        Returns
        -------
        numpy.ndarray
            int64 counts, in input order.

        Raises
        ------
        AlphabetError
            As :meth:`encode_batch`.
        """
        return _Pieces(seqs, self.k).tokens_per_sequence()

    def token_strings(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        """Token strings of ``ids`` (e.g. attention-plot axis labels).

        Raises
        ------
        ValueError
            If an id lies outside the vocabulary.
        """
        ids = np.asarray(ids, dtype=np.int64).ravel()
        bad = (ids < 0) | (ids >= self.vocab_size)
        if bad.any():
            raise ValueError(
                f"token id {ids[bad][0]} is outside the {self.variant} vocabulary "
                f"(0..{self.vocab_size - 1}); were these ids made by another tokenizer?"
            )
        return [self.tokens[i] for i in ids.tolist()]


class _Pieces:
    """The N-free pieces of a batch of sequences, laid out in one code buffer.

    The sequences are joined with an ``N`` after each, so that every piece, in every
    sequence, ends at an ``N``: either a real one (a token) or a separator (not).
    Per piece: ``start`` in ``codes``, ``n_kmers``, ``n_singles`` (the remainder),
    ``ends_at_real_n``, ``ends_at_sep`` and ``n_tokens``, the tokens it contributes.
    """

    def __init__(self, seqs: Iterable[str], k: int):
        if isinstance(seqs, str):
            raise TypeError("expected a collection of sequences, got one str; use encode() for one sequence")
        seqs = seqs if isinstance(seqs, (list, tuple)) else list(seqs)
        try:
            raw = ("N".join(seqs) + "N").encode("ascii") if seqs else b""
        except UnicodeEncodeError as err:
            raise _unnormalized(seqs, err.start) from None
        except TypeError:
            kinds = sorted({type(s).__name__ for s in seqs if not isinstance(s, str)})
            raise TypeError(f"sequences must be str, got {', '.join(kinds)}") from None
        self.codes = np.frombuffer(raw.translate(_CODES), dtype=np.uint8)
        if self.codes.size and self.codes.max() == _INVALID:
            raise _unnormalized(seqs, int(np.argmax(self.codes == _INVALID)))

        ends = np.flatnonzero(self.codes == _N_CODE)
        lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
        self.sep_index = np.searchsorted(ends, np.cumsum(lengths + 1) - 1)
        self.ends_at_sep = np.zeros(len(ends), dtype=np.int64)
        self.ends_at_sep[self.sep_index] = 1
        self.ends_at_real_n = self.ends_at_sep == 0
        self.start = np.zeros(len(ends), dtype=np.int64)
        self.start[1:] = ends[:-1] + 1
        self.n_kmers, self.n_singles = np.divmod(ends - self.start, k)
        self.n_tokens = self.n_kmers + self.n_singles + self.ends_at_real_n

    def tokens_per_sequence(self) -> np.ndarray:
        """Tokens of each sequence, ``<cls>`` included."""
        # A sequence's pieces end at its separator: difference the running total there.
        total = np.cumsum(self.n_tokens)[self.sep_index]
        return np.diff(total, prepend=0) + 1


def _ramps(src_start, dst_start, lengths, stride=1):
    """Source and destination indices of runs: ``src_start + stride*i``, ``dst_start + i``."""
    step = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(_exclusive_cumsum(lengths), lengths)
    return np.repeat(src_start, lengths) + stride * step, np.repeat(dst_start, lengths) + step


def _exclusive_cumsum(values: np.ndarray) -> np.ndarray:
    out = np.zeros(len(values), dtype=np.int64)
    np.cumsum(values[:-1], out=out[1:])
    return out


def _unnormalized(seqs: Sequence[str], joined_pos: int) -> AlphabetError:
    # Position in the joined buffer -> (sequence, position), skipping one separator per sequence.
    bounds = np.cumsum([len(s) + 1 for s in seqs])
    index = int(np.searchsorted(bounds, joined_pos, side="right"))
    pos = joined_pos - (int(bounds[index - 1]) if index else 0)
    char = seqs[index][pos]
    return AlphabetError(
        f"tokenizer input #{index + 1}: position {pos + 1} holds {char!r}; the tokenizer "
        "takes only upper-case A, C, G, T and N. Normalize sequences first with "
        "embedcache.sequences.alphabet.normalize (it upper-cases and applies the IUPAC policy)."
    )


@lru_cache(maxsize=None)
def tokenizer_for(variant: str, k: int = 6) -> Tokenizer:
    """The shared :class:`Tokenizer` for ``variant`` and ``k`` (built once, cached)."""
    return Tokenizer(variant, k)
