"""``classify evaluate`` and ``classify predict``: a fitted run's probe on another file, with
the run's backbone, layer(s) and pooling (and, for a run on variant features, its way of
turning a variant set into features).

``evaluate`` writes a run directory of kind ``evaluate`` (default
``RUN/evaluate-<data file stem>``); ``predict`` writes one CSV.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from classifiers.features import TaskSource, read_task
from classifiers.metrics import bootstrap_intervals, classification_metrics
from classifiers.runs import task as steps
from classifiers.runs.directory import (PREDICTIONS_FILE, TRAIN_DIGESTS_FILE, Clock,
                                        staged, stem)
from classifiers.runs.pause import pause_point
from classifiers.runs.record import RunRecord
from embedcache.errors import InputError
from embedcache.util.atomic import write_atomically
from embedcache.store import sequence_digest

__all__ = ["default_evaluation_dir", "default_predictions_path", "evaluate_run", "predict_run"]


def evaluate_run(run_dir: str | PathLike, data: str | PathLike, *,
                 out: str | PathLike | None = None, cache: str | PathLike | None = None,
                 n_bootstrap: int = 1000, force: bool = False,
                 command: str | None = None, reference: str | PathLike | None = None,
                 label_field: str | None = None, positive: str | None = None) -> RunRecord:
    """Evaluate a fitted run's probe on another labelled file, with the run's features.

    Parameters
    ----------
    run_dir : path
        A directory written by :func:`~classifiers.runs.fit.fit_run`.
    data : path
        A labelled task file; every row is evaluated (its split column is ignored). A run fitted
        on variant features takes a variant set, read, cut and featurized as the fit recorded
        (``features.variants``: feature kind, label field, positive value, flank, genome).
    out : path, optional
        Where to write (default ``RUN/evaluate-<data stem>``).
    cache : path, optional
        The store, if it moved since the fit (default: the one the run recorded).
    n_bootstrap, force, command, reference
        As for :func:`~classifiers.runs.fit.fit_run`.
    label_field, positive
        A run on variant features: the labels of ``data``, where they differ from the fit's.

    Returns
    -------
    RunRecord
        The content of the evaluation's ``metrics.json``.
    """
    run_dir = Path(run_dir)
    fitted = RunRecord.read(run_dir, kind="fit")
    out = Path(out) if out is not None else default_evaluation_dir(run_dir, data)
    clock = Clock()
    with staged(out, force) as staging:
        estimator, store, info = steps.load_fitted(run_dir, fitted, cache)
        variants = steps.fitted_variants(fitted, reference, label_field=label_field, positive=positive)
        table, files = steps.read_tables(data, None, info, None, reference, variants=variants, store=store)
        table["split"] = "evaluation"
        classes = list(estimator.classes_)
        unknown = sorted(set(pd.unique(table["label"])) - set(classes), key=str)
        if unknown:
            raise InputError(
                f"{data}: labels {unknown[:5]} were not among the classes the probe was trained "
                f"on ({classes}); evaluate on a task with the same classes.")
        layer, pool = fitted.chosen_features()
        X = steps.features(store, table, backbone=info, layer=layer, pool=pool,
                           source=TaskSource.of([data], reference, table, variants))
        y = table["label"].to_numpy()
        proba, pred = estimator.predict_proba(X), estimator.predict(X)
        metrics = {"evaluation": classification_metrics(y, pred, proba, classes)}
        trained_on = set((run_dir / TRAIN_DIGESTS_FILE).read_text().split())
        in_train = np.array([sequence_digest(s) in trained_on for s in table["sequence"]])
        duplicates = {"evaluation_rows_in_train": int(in_train.sum()),
                      "unique_evaluation_sequences_in_train":
                          int(table.loc[in_train, "sequence"].nunique())}
        seed = fitted["task"]["seed"]
        run = RunRecord.new("evaluate", model=fitted["model"]["kind"], estimator=estimator,
                            classes=classes, files=files, table=table,
                            split_source="all rows of the evaluation file", seed=seed,
                            store=store, backbone=info, layer=layer, pool=pool, command=command,
                            variants=variants)
        run.update(metrics=metrics, duplicates=duplicates, evaluated_run=str(run_dir.resolve()),
                   intervals={"test": bootstrap_intervals(y, pred, proba, classes,
                                                          n_resamples=n_bootstrap, seed=seed)})
        if "layer_weights" in fitted:
            run["layer_weights"] = fitted["layer_weights"]
        if in_train.any():
            run["warnings"].append(
                f"{int(in_train.sum())} evaluation rows have a sequence the probe was trained "
                "on; their scores are not out-of-sample.")
        steps.prediction_frame(table, proba, pred, classes).to_csv(
            staging / PREDICTIONS_FILE, index=False)
        figures = steps.score_figures(staging, y, proba, classes, {},
                                      metrics["evaluation"]["confusion_matrix"], "evaluation")
        return steps.finish(staging, run, figures, clock)


def default_evaluation_dir(run_dir: str | PathLike, data: str | PathLike) -> Path:
    """Where :func:`evaluate_run` writes by default: ``RUN/evaluate-<data file stem>``."""
    return Path(run_dir) / f"evaluate-{stem(data)}"


def default_predictions_path(run_dir: str | PathLike, data: str | PathLike) -> Path:
    """Where :func:`predict_run` writes by default: ``RUN/predictions-<data file stem>.csv``."""
    return Path(run_dir) / f"predictions-{stem(data)}.csv"


def predict_run(run_dir: str | PathLike, data: str | PathLike, *,
                out: str | PathLike | None = None, cache: str | PathLike | None = None,
                force: bool = False, reference: str | PathLike | None = None) -> Path:
    """Score new sequences (labels not needed) with a fitted run's probe; write a CSV.

    Parameters
    ----------
    run_dir : path
        A directory written by :func:`~classifiers.runs.fit.fit_run`.
    data : path
        FASTA, CSV, TSV, Parquet, or BED with ``reference``; its sequences must be in the store
        (``embedcache build``). A run fitted on variant features takes a variant set (its
        windows embedded by ``embedcache variants``), featurized as the fit recorded.
    out : path, optional
        The CSV to write (default ``RUN/predictions-<data stem>.csv``): ``id``, score
        column(s) as in ``predictions.csv``, ``prediction``.
    cache : path, optional
        The store, if it moved since the fit.
    force : bool
        Replace an existing ``out``.
    reference : path, optional
        The genome FASTA of a BED ``data``; of a variant set, if not the one the fit recorded.

    Returns
    -------
    Path
        The CSV written.
    """
    run_dir = Path(run_dir)
    fitted = RunRecord.read(run_dir, kind="fit")
    out = Path(out) if out is not None else default_predictions_path(run_dir, data)
    if out.exists() and not force:
        raise InputError(f"{out} exists; pass --force to replace it, or choose another --out.")
    estimator, store, info = steps.load_fitted(run_dir, fitted, cache)
    variants = steps.fitted_variants(fitted, reference)
    if variants is not None:
        from classifiers.variant_task import read_variant_task

        table = read_variant_task(store, data, variants, backbone=info, labelled=False)
    else:
        table = read_task(data, alphabet=info["alphabet"], labelled=False, reference=reference)
    layer, pool = fitted.chosen_features()
    X = steps.features(store, table, backbone=info, layer=layer, pool=pool,
                       source=TaskSource.of([data], reference, table, variants))
    frame = steps.prediction_frame(table, estimator.predict_proba(X), estimator.predict(X),
                                   list(estimator.classes_), with_split=False, with_label=False)
    pause_point("predict:scored")
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_atomically(out, lambda tmp: frame.to_csv(tmp, index=False))
