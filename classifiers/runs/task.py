"""The task a ``classify fit``, ``sweep`` or ``cv`` works on, settled once before the first fit.

:meth:`Task.read` opens the store and its backbone, reads the task file(s), resolves the layers
and poolings asked for against the backbone, checks that the store holds them, splits the rows
and counts the train-test overlap; the workflows then only fit, score and record. A
:class:`Task` is frozen: what it chose (layers, pools, split) is never written back.
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike

import numpy as np
import pandas as pd

from classifiers.features import Backbone, TaskSource
from classifiers.runs import steps
from classifiers.runs.record import FeatureInfo, TaskInfo
from classifiers.splits import SPLIT_ALIASES, assign_splits
from embedcache.errors import InputError
from embedcache.util.ranges import FINAL, format_layers

__all__ = ["Task"]


@dataclass(frozen=True)
class Task:
    """A labelled task read, checked and split, with the features it is probed on.

    Attributes
    ----------
    store : embedcache.EmbeddingCache
    backbone : Backbone
        The store's model group whose features are read.
    table : pandas.DataFrame
        The rows kept (all, or all but the test rows shared with train under ``dedup_test``),
        with their ``split``.
    files : dict
        Role (``data``, ``test``) -> path, sha256 and rows: the run record's files.
    split_source : str
        How the splits were made, in words.
    duplicates : dict
        Train-test overlap by content (:func:`~classifiers.runs.steps.duplicates`).
    layers : tuple
        The layers chosen (ints, or ``"final"`` for NTv3's full-resolution output).
    pools : tuple of str
    stacked : bool
        The probe mixes ``layers`` (layer-weighted): its features are ``(n, layers, D)``.
    source : TaskSource
        Where the sequences came from, for the build advice of a missing-rows error.
    held_out : int
        Rows a cross-validated task left out (its split column's test rows).
    features : ndarray or None
        The features of :attr:`table`'s rows, when the task names one array (one layer, or
        ``stacked`` layers, and one pooling), read before the split so that missing rows are
        the first problem reported; None for a sweep, which reads each array in turn.
    """

    store: object
    backbone: Backbone
    table: pd.DataFrame
    files: dict
    split_source: str
    duplicates: dict
    layers: tuple
    pools: tuple[str, ...]
    stacked: bool
    source: TaskSource
    features: np.ndarray | None = None
    variants: object = None
    held_out: int = 0

    @classmethod
    def read(cls, data: str | PathLike, *, cache, backbone: str | None = None, layer=None,
             layers=None, pools=("mean",), stacked: bool = False, test: str | PathLike | None = None,
             group_by: str | None = None, dedup_test: bool = False, seed: int = 0,
             reference: str | PathLike | None = None, variants=None,
             folds: int | None = None) -> Task:
        """Read, check and split a task (the arguments are :func:`~classifiers.runs.fit_run`'s).

        ``layer``: one layer (an int or ``"final"``; default the backbone's last), or
        ``layers``: a selection (``"all"``, ``"1-12"``, ``"1,6,final"``, or a sequence).
        ``folds``: the task is cross-validated in that many folds (``classify cv``): no split
        is made, the rows the split column marks test are held out.
        """
        store, info = steps.open_store(cache, backbone)
        table, files = steps.read_tables(data, test, info, group_by, reference, variants=variants,
                                         store=store)
        steps.require_classes(table, str(data))
        source = TaskSource.of([f["path"] for f in files.values()], reference, table, variants)
        layers = (steps.resolve_layers(store, info, layer, single=True) if layers is None
                  else steps.resolve_layers(store, info, layers))
        if stacked and FINAL in layers and len(layers) > 1:
            raise InputError(f"--layers {format_layers(layers)}: the layer-weighted probe mixes "
                             "layers of one width, and NTv3's final output is not as wide as its "
                             "core layers; mix core layers (all, 1-6), or probe final alone "
                             "(--layer final with another probe).")
        pools = tuple(pools)
        one_array = len(pools) == 1 and (stacked or len(layers) == 1)
        if stacked or not one_array:
            # One error naming every (layer, pool) the store lacks, not the first of them.
            steps.require_features(store, table, backbone=info, layers=layers, pools=pools,
                                   source=source)
        held_out = 0
        if folds is not None and "split" in table.columns:
            # Cross-validation folds every row but those the split column holds out as test
            # (they stay a clean test set, and need not be in the cache).
            test_rows = (table["split"].astype(str).str.strip().str.lower().map(SPLIT_ALIASES)
                         == "test").to_numpy()
            held_out = int(test_rows.sum())
            table = table[~test_rows].reset_index(drop=True)
        # Features first: sequences missing from the cache are the likeliest problem, and the
        # message (how many, which build command) is the most useful one to give.
        X = (steps.features(store, table, backbone=info, pool=pools[0], source=source,
                            layer=list(layers) if stacked else layers[0]) if one_array else None)
        if folds is not None:  # the folds are the workflow's
            table["split"] = "train"
            steps.check_labels(table, str(data))
            how = f" grouped by {group_by!r}" if group_by else ", stratified"
            return cls(store, info, table, files, f"{folds}-fold cross-validation{how}", {},
                       layers, pools, stacked, source, X, variants, held_out)
        n_data = len(table) - (0 if test is None else files["test"]["rows"])
        splits = assign_splits(table.iloc[:n_data], group_by=group_by, seed=seed,
                               test_table=None if test is None else table.iloc[n_data:],
                               source=str(data))
        has_split = "split" in table.columns
        table["split"] = splits.to_numpy()
        steps.check_labels(table, str(data))
        duplicates, keep = steps.duplicates(table, dedup_test)
        return cls(store, info, table[keep].reset_index(drop=True), files,
                   steps.split_source(has_split, test, group_by), duplicates, layers, pools,
                   stacked, source, None if X is None else X[keep], variants)

    @property
    def y(self) -> np.ndarray:
        return self.table["label"].to_numpy()

    @property
    def layer(self):
        """The layer the probe reads: the one chosen, or the list a stacked probe mixes."""
        return list(self.layers) if self.stacked else self.layers[0]

    def read_features(self, layer, pool: str) -> np.ndarray:
        """The kept rows' features of one layer and pooling (a sweep's step)."""
        return steps.features(self.store, self.table, backbone=self.backbone, layer=layer,
                              pool=pool, source=self.source)

    def task_info(self, classes, seed: int) -> TaskInfo:
        """The run record's ``task`` section."""
        return TaskInfo.of(self.table, files=self.files, classes=classes,
                           split_source=self.split_source, seed=seed)

    def feature_info(self, layer, pool: str) -> FeatureInfo:
        """The run record's ``features`` section for the features a probe read."""
        return FeatureInfo.of(self.store, self.backbone, layer, pool, self.variants)
