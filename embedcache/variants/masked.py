"""The llr of SNVs from masked-LM logits cached per reference window (the ``mlm`` pool).

The ``mlm`` pool of a window is the LM head's logits at the token holding its middle base,
with that token replaced by ``<mask>`` (v1/v2: its k-mer or single-base token; NTv3: the base),
computed by the family's ``masked_logits`` in the ordinary build and stored like any pooled
output: one masked forward per reference window, shared by every allele at that position,
free on a rerun. Each allele's ``llr`` is ``logit[alt token] - logit[ref token]`` in its
reference window's row, the alt token being the one at the same position of the alt window
(v1/v2: the same k-mer with the variant base substituted).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["lm_layer", "middle_tokens", "snv_llr"]


def lm_layer(family):
    """The layer whose ``mlm`` pool the family stores: its last (NTv3: ``final``)."""
    names = list(family.layer_names)
    return "final" if "final" in names else names[-1]


def middle_tokens(family, windows: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per window, the token position of its middle base, and its token ids."""
    encoded = family.encode_batch(list(windows))
    if not encoded:
        return np.zeros(0, dtype=np.int64), encoded
    n = np.array([len(e) for e in encoded])
    tokens = np.full((len(encoded), int(n.max())), family.pad_id, dtype=np.int32)
    for i, e in enumerate(encoded):
        tokens[i, :len(e)] = e
    return np.asarray(family.center_positions(tokens, n), dtype=np.int64), encoded


def snv_llr(family, logits: np.ndarray, ref_windows: Sequence[str], alt_windows: Sequence[str]) -> np.ndarray:
    """``logit[alt token] - logit[ref token]`` per SNV allele, ``logits`` being its reference window's ``mlm`` row.

    Callers pass SNVs whose REF and ALT are A/C/G/T: then both windows split into the same
    tokens but the middle one (an ``N`` would change how a k-mer tokenizer splits the window).
    """
    logits = np.asarray(logits, dtype=np.float64)
    centers, ref_tokens = middle_tokens(family, ref_windows)
    alt_tokens = family.encode_batch(list(alt_windows))
    rows = np.arange(len(centers))
    ref_ids = np.array([t[c] for t, c in zip(ref_tokens, centers)], dtype=np.int64)
    alt_ids = np.array([t[c] for t, c in zip(alt_tokens, centers)], dtype=np.int64)
    if not len(rows):
        return np.zeros(0)
    return logits[rows, alt_ids] - logits[rows, ref_ids]
