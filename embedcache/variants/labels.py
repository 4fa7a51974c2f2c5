"""Variant labels as a binary class: 0/1 text, or the one value ``--positive`` names.

Parsed once, where a variant set is read (``embedcache variants``, ``classify`` on variant
features), so that the scores table's ``label`` column, its evaluation and a probe all see the
same 0/1 classes whatever the file spelled them as.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from embedcache.errors import InputError

__all__ = ["binary_labels", "label_column"]

_TRUTH = {"1": True, "1.0": True, "true": True, "0": False, "0.0": False, "false": False}


def _text(value) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    return str(value)


def binary_labels(labels: Sequence, positive: str | None = None, *,
                  source: str = "the labels") -> tuple[np.ndarray, np.ndarray]:
    """``(is_positive, has_label)`` from labels; ``None``/NaN is a missing label.

    Without ``positive`` the labels must be 0/1 (``"0"``, ``"1"``, ``"0.0"``, ``"true"``...);
    with it, a label is positive when it equals ``positive``, and some label must.
    """
    labels = [_text(v) for v in labels]
    has = np.array([v is not None for v in labels], dtype=bool)
    if positive is not None:
        is_pos = np.array([v == str(positive) for v in labels], dtype=bool)
        if has.any() and not is_pos.any():
            seen = sorted({v for v in labels if v is not None})
            raise InputError(f"{source}: no label equals --positive {positive!r} (labels seen: "
                             f"{', '.join(map(repr, seen[:8]))}{', ...' if len(seen) > 8 else ''}); name "
                             "one of them, or leave --positive out for 0/1 labels.")
        return is_pos, has
    bad = sorted({v for v in labels if v is not None and v.lower() not in _TRUTH})
    if bad:
        raise InputError(f"{source}: labels {', '.join(map(repr, bad[:5]))} are not 0/1. Name the positive "
                         f"class with --positive VALUE (e.g. --positive {bad[0]}).")
    return np.array([v is not None and _TRUTH[v.lower()] for v in labels], dtype=bool), has


def label_column(labels: Sequence, positive: str | None = None, *, source: str = "the labels") -> pd.Series:
    """The labels as a nullable 0/1 integer column (``<NA>`` where missing), as the scores
    table holds them."""
    is_pos, has = binary_labels(labels, positive, source=source)
    return pd.Series(pd.array(np.where(has, is_pos.astype(np.int64), 0), dtype="Int64")).mask(~has)
