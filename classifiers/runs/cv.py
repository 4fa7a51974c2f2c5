"""``classify cv``: k-fold cross-validation repeated over seeds, beside the baselines.

The directory holds metrics.json (per-fold metrics, mean and standard deviation for the
probe and the baselines), predictions.csv (out-of-fold: id, seed, fold, label, score(s),
prediction), plots/cv_metrics.png and report.html; it keeps no model.
"""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike

import pandas as pd

from classifiers import plots
from classifiers.baselines import BASELINES, make_baseline
from classifiers.defaults import DEFAULT_POOL, DEFAULT_PROBE
from classifiers.metrics import SCALAR_METRICS, classification_metrics, summarize_runs
from classifiers.runs import steps
from classifiers.runs.directory import PREDICTIONS_FILE, Clock, staged
from classifiers.runs.pause import pause_point
from classifiers.runs.record import (CrossValidation, ModelInfo, Provenance, RunRecord,
                                     random_weights_warnings)
from classifiers.runs.task import Task
from classifiers.splits import cv_folds
from embedcache.errors import InputError

__all__ = ["cross_validate"]


def cross_validate(data: str | PathLike, *, cache: str | PathLike, out: str | PathLike,
                   model: str = DEFAULT_PROBE, backbone: str | None = None,
                   layer: int | str | None = None, pool: str = DEFAULT_POOL, folds: int = 5, seeds: int = 1,
                   seed: int = 0, group_by: str | None = None, params: Mapping | None = None,
                   force: bool = False, command: str | None = None,
                   reference: str | PathLike | None = None, variants=None) -> RunRecord:
    """K-fold cross-validation repeated over seeds; mean and standard deviation of the metrics.

    The rows of ``data`` that its split column marks as test are held out and not used (they
    stay a clean test set); all other rows are folded. Baselines are fitted on the same folds.

    Parameters
    ----------
    data, cache, out, model, backbone, layer, pool, group_by, params, force, command, reference, variants
        As for :func:`~classifiers.runs.fit.fit_run`.
    folds : int
        Folds per repetition (stratified; grouped with ``group_by``).
    seeds : int
        Repetitions, with shuffling seeds ``seed .. seed + seeds - 1`` (also the probe's seed).
    seed : int
        First seed.

    Returns
    -------
    RunRecord
        The content of ``metrics.json``; ``cv`` holds per-fold metrics and the summaries.
    """
    if seeds < 1:
        raise InputError(f"--seeds must be at least 1, got {seeds}.")
    if model == "layer-weighted":
        raise InputError("cv takes one layer; cross-validate the layer-weighted probe's "
                         "choice with `classify fit --probe layer-weighted` and several --seed.")
    steps.new_probe(model, seed, params)  # unknown models and bad parameters fail first
    clock = Clock()
    with staged(out, force) as staging:
        task = Task.read(data, cache=cache, backbone=backbone, layer=layer, pools=(pool,),
                         group_by=group_by, seed=seed, reference=reference, variants=variants,
                         folds=folds)
        clock.lap("features")
        table, X, y = task.table, task.features, task.y
        sequences = table["sequence"].to_numpy(dtype=object)
        groups = table[group_by].to_numpy() if group_by else None
        classes = sorted(pd.unique(y).tolist())
        per_fold, baseline_folds, oof = [], {name: [] for name in BASELINES}, []
        for s in range(seed, seed + seeds):
            for k, (tr, te) in enumerate(cv_folds(y, n_folds=folds, seed=s, groups=groups)):
                est = steps.new_probe(model, s, params).fit(X[tr], y[tr])
                proba, pred = steps.predicted(est, X[te], model)
                per_fold.append({"seed": s, "fold": k + 1,
                                 **classification_metrics(y[te], pred, proba, classes)})
                frame = steps.prediction_frame(table.iloc[te], proba, pred, classes,
                                               with_split=False)
                frame.insert(1, "seed", s)
                frame.insert(2, "fold", k + 1)
                oof.append(frame)
                pause_point("cv:fold")
                for name in BASELINES:
                    b = make_baseline(name, seed=s).fit(sequences[tr], y[tr])
                    baseline_folds[name].append({"seed": s, "fold": k + 1, **classification_metrics(
                        y[te], b.predict(sequences[te]), b.predict_proba(sequences[te]),
                        classes)})
        clock.lap("cv")
        run = RunRecord(
            "cv", task.task_info(classes, seed), task.feature_info(task.layer, pool),
            ModelInfo.of(model, steps.new_probe(model, seed, params)), Provenance.now(command),
            warnings=tuple(random_weights_warnings(task.backbone)),
            cv=CrossValidation(
                folds=folds, seeds=tuple(range(seed, seed + seeds)), n_rows=len(table),
                held_out_test_rows=task.held_out,
                splitter="StratifiedGroupKFold" if group_by else "StratifiedKFold",
                summary=summarize_runs(per_fold),
                baseline_summaries={n: summarize_runs(v) for n, v in baseline_folds.items()},
                per_fold=tuple(per_fold), baseline_per_fold=baseline_folds))
        pd.concat(oof, ignore_index=True).to_csv(staging / PREDICTIONS_FILE, index=False)
        figures = {"cross-validation metrics (mean ± sd)": steps.save(
            staging, "cv_metrics.png", plots.metric_bars_figure(
                [_bar(row) for row in run.score_rows()], SCALAR_METRICS,
                title=f"{folds}-fold CV × {seeds} seed(s): mean ± sd"))}
        clock.lap("write")
        return steps.finish(staging, run, figures, clock)


def _bar(row) -> dict:
    """A metric_bars_figure entry from a ScoreRow."""
    bar = {"name": row.label}
    for m, estimate in row.metrics.items():
        low, high = estimate.bounds()
        bar.update({m: estimate.value, f"{m}_low": low, f"{m}_high": high})
    return bar
