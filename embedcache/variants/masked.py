"""Masked-LM logits at the middle of reference windows, and the llr of SNVs from them.

One masked forward per reference window: the token holding the window's middle base (v1/v2:
its k-mer or single-base token; NTv3: the base) is replaced by ``<mask>`` and the LM head's
logits at that position are kept. Every allele at that position reads its ``llr`` from the
same row: ``logit[alt token] - logit[ref token]``, where the alt token is the token at the
same position of the alt window (v1/v2: the same k-mer with the variant base substituted).
The family's :meth:`masked_logits` is the official forward on the masked input, token
dropout's rescaling included.

Windows are batched by padded length (v1/v2: the family's bucket ladder, padded keys masked;
NTv3: each window's own padded length, its outputs being defined there), so one compiled
program serves each length.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["MaskedLogits", "masked_center_logits", "snv_llr"]


class MaskedLogits:
    """Logits at the masked middle token of each reference window.

    Attributes
    ----------
    logits : ndarray (n, vocabulary) float32
    centers : ndarray (n,) int
        Token position of the middle base in each window's token row.
    ref_tokens : ndarray (n,) int
        The (unmasked) token at that position.
    forwards : int
        Masked forwards run (rows of real windows, padding rows not counted).
    """

    def __init__(self, logits, centers, ref_tokens, forwards: int):
        self.logits, self.centers, self.ref_tokens, self.forwards = logits, centers, ref_tokens, forwards


def _padded_lengths(family, n_tokens: np.ndarray) -> np.ndarray:
    if hasattr(family, "padded_length"):  # NTv3: a window's outputs are defined at its own padded length
        return np.array([family.padded_length(int(n)) for n in n_tokens])
    ladder = np.array(family.ladder(int(n_tokens.max())))
    return ladder[np.searchsorted(ladder, n_tokens)]


def masked_center_logits(family, params, windows: Sequence[str], *, batch_size: int = 8) -> MaskedLogits:
    """Masked forwards of ``windows`` (normalized sequences) with ``family`` and prepared ``params``."""
    import jax

    encoded = family.encode_batch(list(windows))
    n_tokens = np.array([len(e) for e in encoded], dtype=np.int64)
    lengths = _padded_lengths(family, n_tokens)
    n = len(encoded)
    centers = np.zeros(n, dtype=np.int64)
    ref_tokens = np.zeros(n, dtype=np.int64)
    logits = None
    step = jax.jit(family.masked_logits)
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        for start in range(0, len(rows), batch_size):
            part = rows[start:start + batch_size]
            # Full batches only (a fixed shape per length); filler rows are dropped after.
            tokens = np.stack([family.filler(int(length))] * batch_size)
            for j, r in enumerate(part):
                tokens[j, :n_tokens[r]] = encoded[r]
            counts = np.ones(batch_size, dtype=np.int64)
            counts[:len(part)] = n_tokens[part]
            mid = family.center_positions(tokens, counts)
            out = np.asarray(step(params, tokens, mid))[:len(part)]
            if logits is None:
                logits = np.zeros((n, out.shape[1]), dtype=np.float32)
            logits[part] = out
            centers[part] = mid[:len(part)]
            ref_tokens[part] = tokens[np.arange(len(part)), mid[:len(part)]]
    if logits is None:
        logits = np.zeros((0, 0), dtype=np.float32)
    return MaskedLogits(logits, centers, ref_tokens, forwards=n)


def snv_llr(family, masked: MaskedLogits, window_row: np.ndarray, alt_windows: Sequence[str]) -> np.ndarray:
    """``llr`` of SNV alleles: ``logit[alt token] - logit[ref token]`` at their reference window's masked position.

    ``window_row[i]`` is the row of ``masked`` for allele ``i``; ``alt_windows[i]`` its alt window.
    Callers pass SNVs whose REF and ALT are A/C/G/T: then both windows split into the same
    tokens but the middle one (an ``N`` would change how a k-mer tokenizer splits the window).
    """
    window_row = np.asarray(window_row, dtype=np.int64)
    out = np.full(len(window_row), np.nan)
    if not len(window_row):
        return out
    encoded = family.encode_batch(list(alt_windows))
    for i, (row, alt) in enumerate(zip(window_row, encoded)):
        c = masked.centers[row]
        out[i] = float(masked.logits[row, alt[c]]) - float(masked.logits[row, masked.ref_tokens[row]])
    return out
