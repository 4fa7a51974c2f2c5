"""``classify fit`` and ``classify sweep``: fit probes on one task's splits, with baselines.

A fit run directory (``classify fit --out RUN``)::

    RUN/
      metrics.json            the run record (classifiers.runs.record): task and splits,
                              train/validation/test metrics, bootstrap intervals, baselines,
                              duplicates, provenance; layer_weights for the layer-weighted probe
      predictions.csv         id, split, label, score (binary: P(second class)) or
                              score_<class> (multi-class), prediction; rows in input order
      model/                  the fitted probe (classifiers.persistence), no pickle
      train_sequences.sha256  sha256 of every training sequence, so `evaluate` can count
                              evaluation sequences the probe was trained on
      plots/                  roc.png, precision_recall.png, confusion_matrix.png,
                              loss_curves.png (MLP, layer-weighted), layer_weights.png
      report.html             one page: warnings, metrics with intervals, baselines,
                              figures, overlap, provenance

A sweep directory holds sweep.csv (one row per layer and pooling: validation and test
metrics with bootstrap intervals), metrics.json (the rows, the baselines once, and ``best``:
the layer and pooling with the highest validation score, never chosen on test),
predictions.csv of the best, plots/mcc_by_layer.png and auroc_by_layer.png (intervals as
bands) and report.html; it keeps no model (fit the chosen layer with ``classify fit``).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from classifiers import plots
from classifiers.defaults import DEFAULT_POOL, DEFAULT_PROBE
from classifiers.metrics import SCALAR_METRICS
from classifiers.runs import steps
from classifiers.runs.directory import (MODEL_DIR, PREDICTIONS_FILE, SWEEP_FILE,
                                        TRAIN_DIGESTS_FILE, Clock, staged)
from classifiers.runs.pause import pause_point
from classifiers.runs.record import (ModelInfo, Provenance, RunRecord, Sweep, SweepChoice,
                                     SweepRow, random_weights_warnings)
from classifiers.runs.task import Task
from embedcache.errors import InputError
from embedcache.store import sequence_digest

__all__ = ["fit_run", "sweep_run"]

#: Validation metrics that choose a sweep's best (layer, pooling), in order of precedence.
SELECT_BY = ("mcc", "auroc")


def fit_run(data: str | PathLike, *, cache: str | PathLike, out: str | PathLike,
            model: str = DEFAULT_PROBE, backbone: str | None = None,
            layer: int | str | None = None, layers=None, pool: str = DEFAULT_POOL, test: str | PathLike | None = None,
            group_by: str | None = None, dedup_test: bool = False, seed: int = 0,
            params: Mapping | None = None, n_bootstrap: int = 1000, force: bool = False,
            command: str | None = None, reference: str | PathLike | None = None,
            variants=None) -> RunRecord:
    """Train a probe on cached features, evaluate it and its baselines, write a run directory.

    Parameters
    ----------
    data : path
        The labelled task (CSV/TSV/Parquet with ``sequence`` and ``label``, optional ``id``,
        ``split``; or a BED file with ``reference``, its label and split named by a header line:
        :func:`classifiers.features.read_task`).
    cache : path, URL or embedcache.EmbeddingCache
        The embedding store (``embedcache build`` wrote it); an open cache carries its storage options.
    out : path
        The run directory to write.
    model : {"logistic", "mlp", "xgboost", "layer-weighted"}
        The probe; default ``"logistic"`` (:data:`~classifiers.defaults.DEFAULT_PROBE`, the
        default of sweep and cv too).
    backbone : str, optional
        Model name or key in the store; default its only model.
    layer : int or "final", optional
        1-based layer, or NTv3's full-resolution ``"final"`` output; default the backbone's
        last layer.
    layers : str or sequence of int, optional
        The layers the layer-weighted probe mixes: ``"all"`` (its default), ``"1-12"``,
        ``"1,6,12"``. Only for ``model="layer-weighted"``.
    pool : {"mean", "cls"}
        Default ``"mean"`` (:data:`~classifiers.defaults.DEFAULT_POOL`).
    test : path, optional
        A separate test file (takes precedence over random splitting).
    group_by : str, optional
        Column whose groups must not straddle splits (random splits only).
    dedup_test : bool
        Drop test rows whose sequence also occurs in train.
    seed : int
        Seed of the splits, the probe and the bootstrap.
    params : mapping, optional
        Constructor parameters of the probe (defaults: the reference workflow's).
    n_bootstrap : int
        Bootstrap resamples for the test intervals.
    force : bool
        Replace an existing non-empty ``out``.
    command : str, optional
        The command line, recorded as provenance.
    reference : path, optional
        The genome FASTA a BED task's regions (and its test file's) are cut from.
    variants : classifiers.variant_task.VariantTask, optional
        ``data`` (and ``test``) are variant sets (VCF or chrom/pos/ref/alt table): one row per
        allele, features ``alt - ref`` or ``[ref, alt]`` of its cached windows
        (:mod:`classifiers.variant_task`); recorded as ``features.variants``.

    Returns
    -------
    RunRecord
        The content of ``metrics.json``.
    """
    from classifiers.persistence import save_estimator

    weighted = model == "layer-weighted"
    if layers is not None and not weighted:
        raise InputError("--layers is for --probe layer-weighted; give one --layer for "
                         f"{model}, or compare layers with `classify sweep`.")
    if weighted and layer is not None:
        raise InputError("--probe layer-weighted mixes several layers: give --layers "
                         "(all, 1-12, 1,6,12) instead of --layer.")
    estimator = steps.new_probe(model, seed, params)  # unknown model names fail first
    clock = Clock()
    with staged(out, force) as staging:
        task = Task.read(data, cache=cache, backbone=backbone,
                         layer=layer, layers=(layers or "all") if weighted else None,
                         pools=(pool,),
                         stacked=weighted, test=test, group_by=group_by, dedup_test=dedup_test,
                         seed=seed, reference=reference, variants=variants)
        clock.lap("read")
        table, X, y = task.table, task.features, task.y
        train, val, test_rows = steps.masks(table, "train", "validation", "test")
        steps.fit_probe(estimator, X, y, train, val)
        pause_point("fit:fitted")
        clock.lap("fit")
        proba, pred = steps.predicted(estimator, X, model)
        classes = list(estimator.classes_)
        metrics = steps.per_split(table, y, pred, proba, classes)
        intervals = steps.split_intervals(table, y, pred, proba, classes, n_bootstrap, seed)
        baselines, baseline_scores = steps.baselines(table, y, classes, n_bootstrap, seed)
        clock.lap("evaluate")

        run = RunRecord(
            "fit", task.task_info(classes, seed), task.feature_info(task.layer, pool),
            ModelInfo.of(model, estimator), Provenance.now(command),
            warnings=(*random_weights_warnings(task.backbone),
                      *steps.duplicate_warnings(task.duplicates)),
            metrics=metrics, intervals={"test": intervals}, baselines=baselines,
            duplicates=task.duplicates,
            layer_weights={str(l): float(w) for l, w in zip(task.layers,
                                                            estimator.layer_weights_)}
            if weighted else {})
        save_estimator(estimator, staging / MODEL_DIR)
        steps.prediction_frame(table, proba, pred, classes).to_csv(
            staging / PREDICTIONS_FILE, index=False)
        digests = sorted({sequence_digest(s) for s in table.loc[train, "sequence"]})
        (staging / TRAIN_DIGESTS_FILE).write_text("\n".join(digests) + "\n")
        figures = steps.score_figures(
            staging, y[test_rows], proba[test_rows], classes,
            {n: s[test_rows] for n, s in baseline_scores.items()},
            metrics["test"]["confusion_matrix"], "test")
        if hasattr(estimator, "history_"):
            figures["loss curves"] = steps.save(
                staging, "loss_curves.png",
                plots.loss_curves_figure(estimator.history_,
                                         best_epoch=getattr(estimator, "best_epoch_", None)))
        if weighted:
            figures["learned layer weights"] = steps.save(
                staging, "layer_weights.png",
                plots.layer_weights_figure(task.layer, estimator.layer_weights_))
        clock.lap("write")
        return steps.finish(staging, run, figures, clock)


def sweep_run(data: str | PathLike, *, cache: str | PathLike, out: str | PathLike,
              model: str = DEFAULT_PROBE, backbone: str | None = None, layers="all",
              pools=(DEFAULT_POOL,), test: str | PathLike | None = None, group_by: str | None = None,
              dedup_test: bool = False, seed: int = 0, params: Mapping | None = None,
              n_bootstrap: int = 1000, force: bool = False,
              command: str | None = None, reference: str | PathLike | None = None,
              variants=None) -> RunRecord:
    """Fit one probe per (layer, pooling) on the same split; choose the best on validation.

    Parameters
    ----------
    layers : str or sequence of int
        ``"all"``, a range ``"1-12"``, a list ``"1,6,12"`` (or ints).
    pools : sequence of {"cls", "mean"}
    data, cache, out, model, backbone, test, group_by, dedup_test, seed, params, n_bootstrap,
    force, command, reference, variants
        As for :func:`fit_run` (``model`` cannot be ``"layer-weighted"``, which mixes layers
        itself).

    Returns
    -------
    RunRecord
        ``sweep`` holds the rows (per layer and pooling: metrics and intervals of validation
        and test), ``best`` the (layer, pool) with the highest validation MCC (ties: AUROC).
    """
    if model == "layer-weighted":
        raise InputError("the layer-weighted probe weighs the layers itself: run "
                         "`classify fit --probe layer-weighted --layers ...` instead of a sweep.")
    pools = list(dict.fromkeys(pools))
    if not pools:
        raise InputError("--pool is empty; give cls, mean or cls,mean.")
    steps.new_probe(model, seed, params)  # unknown models and bad parameters fail first
    clock = Clock()
    with staged(out, force) as staging:
        task = Task.read(data, cache=cache, backbone=backbone, layers=layers, pools=pools,
                         test=test, group_by=group_by, dedup_test=dedup_test, seed=seed,
                         reference=reference, variants=variants)
        table, y = task.table, task.y
        train, val, test_rows = steps.masks(table, "train", "validation", "test")
        clock.lap("read")
        rows, scores = [], {}
        for layer in task.layers:
            for pool in task.pools:
                # Each (layer, pool) array is read once, for all rows, and dropped after its fit.
                X = task.features if task.features is not None else task.read_features(layer, pool)
                estimator = steps.fit_probe(steps.new_probe(model, seed, params), X, y, train,
                                            val)
                proba, pred = steps.predicted(estimator, X, model)
                classes = list(estimator.classes_)
                rows.append(SweepRow(
                    layer, pool,
                    # train too: a perfect train score beside a lesser validation one is
                    # the overfitting a report should point out.
                    metrics=steps.per_split(table, y, pred, proba, classes),
                    intervals={s: steps.split_intervals(table, y, pred, proba, classes,
                                                        n_bootstrap, seed, s)
                               for s in ("validation", "test")}))
                scores[layer, pool] = proba, pred
                pause_point("sweep:fitting")
        clock.lap("fit")
        best = _best(rows, _fit_command(
            data, cache=task.store, out=out, test=test, backbone=backbone, model=model,
            params=params, group_by=group_by, dedup_test=dedup_test, seed=seed,
            n_bootstrap=n_bootstrap, reference=reference, variants=variants))
        baselines, _ = steps.baselines(table, y, classes, n_bootstrap, seed)
        clock.lap("baselines")
        run = RunRecord(
            "sweep", task.task_info(classes, seed), task.feature_info(best.layer, best.pool),
            ModelInfo.of(model, estimator, history=False), Provenance.now(command),
            warnings=(*random_weights_warnings(task.backbone),
                      *steps.duplicate_warnings(task.duplicates)),
            sweep=Sweep(task.layers, task.pools, tuple(rows)), best=best, baselines=baselines,
            duplicates=task.duplicates)
        _sweep_table(rows).to_csv(staging / SWEEP_FILE, index=False)
        proba, pred = scores[best.features]
        steps.prediction_frame(table, proba, pred, classes).to_csv(
            staging / PREDICTIONS_FILE, index=False)
        drawn = run.to_json()  # the figures draw the rows as metrics.json holds them
        figures = {f"{m.upper()} by layer": steps.save(
            staging, f"{m}_by_layer.png", plots.sweep_figure(
                drawn["sweep"]["rows"], m, best=drawn["best"],
                baselines={name: b["metrics"]["test"].get(m) for name, b in baselines.items()}))
            for m in ("mcc", "auroc")}
        clock.lap("write")
        return steps.finish(staging, run, figures, clock)


def _best(rows, fit_command) -> SweepChoice:
    """The row with the highest validation score (MCC, then AUROC); test never enters.
    ``fit_command(layer, pool)``: the line that fits it again."""
    def key(r):
        v = r.metrics["validation"]
        return tuple(-np.inf if v.get(m) is None else v[m] for m in SELECT_BY)

    best = max(rows, key=key)  # max keeps the first of equals: the shallower layer
    return SweepChoice(best.layer, best.pool, f"validation {SELECT_BY[0]}",
                       {m: best.metrics["validation"].get(m) for m in SELECT_BY},
                       fit_command(best.layer, best.pool))


def _fit_command(data, *, cache, out, test, backbone, model, params, group_by, dedup_test, seed,
                 n_bootstrap, reference=None, variants=None):
    """The `classify fit` line that fits a sweep's choice again, as a function of the layer and
    pooling: the same probe, parameters, data, split and seed (so its rows are the sweep's)."""
    out = Path(out)

    def command(layer, pool) -> str:
        args = ["classify", "fit", "--data", str(data), "--cache", str(cache.path),
                "--out", str(out.with_name(f"{out.name}-layer{layer}-{pool}")),
                "--probe", model, "--layer", str(layer), "--pool", pool]
        where = reference
        if variants is not None:
            where = variants.reference
            args += ["--variant-features", variants.kind]
            for flag, value in (("--label-field", variants.label_field),
                                ("--positive", variants.positive), ("--flank", variants.flank),
                                ("--ref-mismatch", None if variants.ref_mismatch == "error"
                                 else variants.ref_mismatch)):
                if value is not None:
                    args += [flag, str(value)]
        for flag, value in (("--test", test), ("--reference", where), ("--model", backbone),
                            ("--group-by", group_by)):
            if value is not None:
                args += [flag, str(value)]
        if dedup_test:
            args.append("--dedup-test")
        args += ["--seed", str(seed), "--bootstrap", str(n_bootstrap)]
        for name, value in (params or {}).items():
            text = value if isinstance(value, str) else json.dumps(value)
            args += ["--param", f"{name}={text}"]
        return shlex.join(args)

    return command


def _sweep_table(rows) -> pd.DataFrame:
    out = []
    for r in rows:
        row = {"layer": r.layer, "pool": r.pool}
        for split, prefix in (("validation", "val"), ("test", "test")):
            values, ci = r.metrics[split], r.intervals[split]
            row[f"{prefix}_n"] = values["n"]
            for m in SCALAR_METRICS:
                low, high = (ci.get(m) or [None, None])[:2]
                row.update({f"{prefix}_{m}": values[m], f"{prefix}_{m}_low": low,
                            f"{prefix}_{m}_high": high})
        out.append(row)
    return pd.DataFrame(out)
