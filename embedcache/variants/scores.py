"""Zero-shot variant scores from pooled embeddings and masked-LM logits.

Per requested layer ``L`` and pool ``P`` (column names as the output carries them):

- ``cosine_L{L}_{P}`` = 1 - cos(ref, alt) of the pooled embeddings;
- ``l2_L{L}_{P}`` = ||alt - ref||_2;
- ``llr`` = logit[alt] - logit[ref] at the variant's (masked) position. The log-softmax
  normaliser is the same for both tokens of one forward, so the difference of logits is the
  log-likelihood ratio.

Larger distances and more negative ``llr`` mean "more damaging" (:data:`DAMAGING_SIGN`).
With ``--strands both`` a score is the mean of the forward and the reverse-complement
windows' scores (:func:`mean_strands`). Everything is computed in float64.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DAMAGING_SIGN", "SCORE_KINDS", "cosine_distance", "l2_distance", "llr", "mean_strands",
           "score_column"]

SCORE_KINDS = ("llr", "cosine", "l2")
# Multiply a score by this to get "larger = more damaging" (AUROC of -llr).
DAMAGING_SIGN = {"llr": -1.0, "cosine": 1.0, "l2": 1.0}


def score_column(kind: str, layer=None, pool: str | None = None) -> str:
    """The output column of a score: ``llr``, ``cosine_L12_mean``, ``l2_Lfinal_center``."""
    if kind not in SCORE_KINDS:
        raise ValueError(f"unknown score {kind!r}; choose from {', '.join(SCORE_KINDS)}")
    return kind if kind == "llr" else f"{kind}_L{layer}_{pool}"


def cosine_distance(ref: np.ndarray, alt: np.ndarray) -> np.ndarray:
    """``1 - cos(ref_i, alt_i)`` for each row; NaN where a vector is all zeros."""
    ref, alt = np.asarray(ref, dtype=np.float64), np.asarray(alt, dtype=np.float64)
    norms = np.linalg.norm(ref, axis=-1) * np.linalg.norm(alt, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - np.einsum("...d,...d->...", ref, alt) / norms


def l2_distance(ref: np.ndarray, alt: np.ndarray) -> np.ndarray:
    """``||alt_i - ref_i||_2`` for each row."""
    return np.linalg.norm(np.asarray(alt, dtype=np.float64) - np.asarray(ref, dtype=np.float64), axis=-1)


def llr(logits: np.ndarray, ref_token: np.ndarray, alt_token: np.ndarray) -> np.ndarray:
    """``logits[i, alt_token[i]] - logits[i, ref_token[i]]``.

    Parameters
    ----------
    logits : ndarray of shape (n, vocabulary)
        LM-head logits at each variant's masked position.
    ref_token, alt_token : int arrays of shape (n,)
        Token ids of the reference and the alternative allele at that position.
    """
    logits = np.asarray(logits, dtype=np.float64)
    rows = np.arange(len(logits))
    return logits[rows, np.asarray(alt_token)] - logits[rows, np.asarray(ref_token)]


def mean_strands(forward: np.ndarray, reverse: np.ndarray) -> np.ndarray:
    """The ``--strands both`` score: mean of the forward and reverse-complement scores."""
    return (np.asarray(forward, dtype=np.float64) + np.asarray(reverse, dtype=np.float64)) / 2.0
