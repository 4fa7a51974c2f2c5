"""Honest train / validation / test splits, cross-validation folds, and train–test overlap.

Order of precedence for the test set: a separate test file, else the data file's own ``split``
column, else a seeded stratified random split, grouped by a column (e.g. chromosome) when asked
so that no group straddles train and test. The validation set (early stopping of the MLP) is the
file's dev split when there is one, else a stratified (and grouped) part of train.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, StratifiedShuffleSplit

from embedcache.errors import InputError

__all__ = [
    "SPLIT_ALIASES",
    "assign_splits",
    "cv_folds",
    "shared_with_train",
]

# What a data file may call its splits, and the name the run directory uses.
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "dev": "validation", "valid": "validation", "validation": "validation", "val": "validation",
    "test": "test", "testing": "test",
}


def assign_splits(table: pd.DataFrame, *, test_table: pd.DataFrame | None = None,
                  group_by: str | None = None, test_size: float = 0.2,
                  validation_size: float = 0.1, seed: int = 0,
                  source: str = "the data file") -> pd.Series:
    """The split (``train``, ``validation`` or ``test``) of every row of a task.

    Parameters
    ----------
    table : DataFrame
        The task's rows (``label`` column; ``split`` and ``group_by`` columns if present).
    test_table : DataFrame, optional
        A separate test set. When given, all of ``table`` is train (or validation, where its
        ``split`` column says dev/validation); the returned Series then covers
        ``pd.concat([table, test_table])``, in that order.
    group_by : str, optional
        Column whose values must not straddle splits (random splits only).
    test_size, validation_size : float
        Fractions of the rows drawn for test (from all rows) and for validation (from train),
        when the data do not say.
    seed : int
        Seed of the random splits.
    source : str
        Name of the data file, for messages.

    Returns
    -------
    pandas.Series of str
        One split name per row (index 0..n-1).

    Raises
    ------
    InputError
        Unknown split names, a file with a test split and a separate test file, a split column
        without train or test rows, or too few rows or groups to split.
    """
    n_data = len(table)
    file_splits = _file_splits(table, source)
    if test_table is not None:
        if file_splits is not None and (file_splits == "test").any():
            raise InputError(
                f"{source} has its own test rows (split column) and a separate test file was "
                "given too. Drop --test, or remove the test rows from the data file.")
        splits = np.concatenate([
            file_splits if file_splits is not None else np.full(n_data, "train", dtype=object),
            np.full(len(test_table), "test", dtype=object)])
        labels = pd.concat([table["label"], test_table["label"]], ignore_index=True)
        groups = (pd.concat([table[group_by], test_table[group_by]], ignore_index=True)
                  if group_by else None)
    elif file_splits is not None:
        missing = {"train", "test"} - set(file_splits)
        if missing:
            raise InputError(
                f"{source}: its split column has no {' and no '.join(sorted(missing))} rows. "
                "Label rows train/dev/test, give a separate --test file, or drop the split "
                "column to split at random.")
        splits, labels = file_splits, table["label"].reset_index(drop=True)
        groups = table[group_by].reset_index(drop=True) if group_by else None
    else:
        labels = table["label"].reset_index(drop=True)
        groups = table[group_by].reset_index(drop=True) if group_by else None
        splits = np.full(n_data, "train", dtype=object)
        test = _draw(labels, groups, np.arange(n_data), test_size, seed, source, "test")
        splits[test] = "test"
    splits = np.asarray(splits, dtype=object)
    if not (splits == "validation").any():
        train = np.flatnonzero(splits == "train")
        val = _draw(labels, groups, train, validation_size, seed + 1, source, "validation")
        splits[val] = "validation"
    return pd.Series(splits, name="split", dtype=object)


def cv_folds(labels: Sequence, *, n_folds: int = 5, seed: int = 0,
             groups: Sequence | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified (and, with ``groups``, grouped) K-fold train/test index pairs.

    Parameters
    ----------
    labels : sequence
        Class of each row.
    n_folds : int
        Number of folds.
    seed : int
        Shuffling seed; each seed gives a different partition.
    groups : sequence, optional
        Group of each row; no group is split between a fold's train and test parts.

    Returns
    -------
    list of (train_index, test_index)
    """
    labels = np.asarray(labels)
    counts = pd.Series(labels).value_counts()
    if n_folds < 2:
        raise InputError(f"--folds must be at least 2, got {n_folds}.")
    if groups is not None:
        n_groups = len(pd.unique(np.asarray(groups)))
        if n_groups < n_folds:
            raise InputError(f"{n_groups} groups cannot fill {n_folds} folds; lower --folds.")
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros(len(labels)), labels, groups))
    if counts.min() < n_folds:
        raise InputError(
            f"class {_plain(counts.idxmin())!r} has {counts.min()} rows, fewer than the {n_folds} folds; "
            "lower --folds or add rows.")
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels))


def shared_with_train(train_sequences: Sequence[str], other_sequences: Sequence[str]) -> np.ndarray:
    """Which of ``other_sequences`` also occur in ``train_sequences`` (by content, not id).

    Sequences are compared as given; pass normalized sequences (the readers' output) so that
    case and IUPAC codes do not hide a duplicate.

    Returns
    -------
    ndarray of bool, shape (len(other_sequences),)
    """
    return pd.Series(other_sequences, dtype=object).isin(set(train_sequences)).to_numpy()


def _plain(value):
    """A NumPy scalar as the Python value it holds, so messages read 1, not np.int64(1)."""
    return value.item() if isinstance(value, np.generic) else value


def _file_splits(table: pd.DataFrame, source: str) -> np.ndarray | None:
    if "split" not in table.columns:
        return None
    raw = table["split"].astype(str).str.strip().str.lower()
    unknown = sorted(set(raw) - set(SPLIT_ALIASES))
    if unknown:
        raise InputError(
            f"{source}: split column holds {unknown}; use train, dev/valid/validation or test "
            "(or drop the column to split at random).")
    return raw.map(SPLIT_ALIASES).to_numpy(dtype=object)


def _draw(labels: pd.Series, groups: pd.Series | None, pool: np.ndarray, fraction: float,
          seed: int, source: str, what: str) -> np.ndarray:
    """Indices (from ``pool``) of a stratified, optionally grouped, sample of ~``fraction``."""
    y = labels.to_numpy()[pool]
    if groups is not None:
        g = groups.to_numpy()[pool]
        n_groups = len(pd.unique(g))
        n_folds = max(2, round(1 / fraction))
        if n_groups < 2:
            raise InputError(
                f"{source}: the rows for {what} come from {n_groups} group(s); grouped splits "
                "need at least two groups. Choose another --group-by column or give a --test file.")
        # The first fold of a stratified group K-fold: grouped, and stratified as far as the
        # groups allow.
        splitter = StratifiedGroupKFold(n_splits=min(n_folds, n_groups), shuffle=True,
                                        random_state=seed)
        _, picked = next(splitter.split(np.zeros(len(pool)), y, g))
        return pool[picked]
    counts = pd.Series(y).value_counts()
    n_pick = int(np.ceil(fraction * len(pool)))
    if counts.min() < 2 or n_pick < len(counts) or len(pool) - n_pick < len(counts):
        raise InputError(
            f"{source}: too few rows to draw a stratified {what} set ({len(pool)} rows; class "
            f"{_plain(counts.idxmin())!r} has {counts.min()}). Add rows, or give the {what} rows "
            "explicitly (a split column, or --test).")
    splitter = StratifiedShuffleSplit(n_splits=1, test_size=n_pick, random_state=seed)
    _, picked = next(splitter.split(np.zeros(len(pool)), y))
    return pool[picked]
