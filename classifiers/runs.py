"""The ``classify`` workflow: fit, cross-validate, evaluate, predict, compare; the run directory.

A run directory (``classify fit --out RUN``)::

    RUN/
      metrics.json            encoding name + version, task and splits, train/validation/test
                              metrics, bootstrap intervals, baselines, duplicates, provenance
      predictions.csv         id, split, label, score (binary: P(second class)) or
                              score_<class> (multi-class), prediction; rows in input order
      model/                  the fitted probe (classifiers.persistence: JSON + safetensors,
                              or XGBoost's JSON), no pickle
      train_sequences.sha256  sha256 of every training sequence, so `evaluate` can count
                              evaluation sequences the probe was trained on
      plots/                  roc.png, precision_recall.png, confusion_matrix.png,
                              loss_curves.png (MLP)
      report.html             one page: warnings, metrics with intervals, baselines,
                              figures, overlap, provenance

``cv`` writes metrics.json (per-fold metrics, mean and standard deviation for the probe and
the baselines), predictions.csv (out-of-fold: id, seed, fold, label, score(s), prediction),
plots/cv_metrics.png and report.html; it keeps no model. ``evaluate`` writes a run directory of
kind ``evaluate`` (default ``RUN/evaluate-<data file stem>``). Every directory is written
into a temporary sibling and moved into place when complete, so a failure leaves nothing
half-written, and an existing non-empty directory is replaced only with ``force=True``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import inspect
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from importlib import metadata
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from classifiers import plots
from classifiers.baselines import BASELINES, make_baseline
from classifiers.features import Backbone, read_task, resolve_backbone, task_features
from classifiers.metrics import (SCALAR_METRICS, bootstrap_intervals, classification_metrics,
                                 summarize_runs)
from classifiers.report import write_report
from classifiers.splits import SPLIT_ALIASES, assign_splits, cv_folds, shared_with_train
from embedcache.errors import InputError, StoreError

__all__ = [
    "RUN_ENCODING",
    "RUN_ENCODING_VERSION",
    "RunVersionError",
    "compare_runs",
    "cross_validate",
    "default_evaluation_dir",
    "evaluate_run",
    "fit_run",
    "predict_run",
    "read_run",
]

RUN_ENCODING = "embedcache-classify-run"
RUN_ENCODING_VERSION = 1
_KNOWN_VERSIONS = (1,)

METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.csv"
MODEL_DIR = "model"
PLOTS_DIR = "plots"
REPORT_FILE = "report.html"
TRAIN_DIGESTS_FILE = "train_sequences.sha256"

RANDOM_WEIGHTS_WARNING = (
    "RANDOM WEIGHTS: the backbone {name} (key {key}) was built with seeded random weights, not "
    "released ones. The pipeline is real, but these numbers say nothing about what the language "
    "model learned; put the released weights in the Hugging Face cache and build again.")


class RunVersionError(InputError):
    """A run directory written in a run encoding this release does not read."""


# ---------------------------------------------------------------------------------------
# fit
# ---------------------------------------------------------------------------------------


def fit_run(data: str | PathLike, *, cache: str | PathLike, out: str | PathLike,
            model: str = "mlp", backbone: str | None = None, layer: int | None = None,
            pool: str = "cls", test: str | PathLike | None = None, group_by: str | None = None,
            dedup_test: bool = False, seed: int = 0, params: Mapping | None = None,
            n_bootstrap: int = 1000, force: bool = False, command: str | None = None) -> dict:
    """Train a probe on cached features, evaluate it and its baselines, write a run directory.

    Parameters
    ----------
    data : path
        The labelled task (CSV/TSV/Parquet with ``sequence`` and ``label``, optional ``id``,
        ``split``).
    cache : path
        The embedding store (``embedcache build`` wrote it).
    out : path
        The run directory to write.
    model : {"mlp", "logistic", "xgboost"}
        The probe.
    backbone : str, optional
        Model name or key in the store; default its only model.
    layer : int, optional
        1-based layer; default the backbone's last.
    pool : {"cls", "mean"}
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

    Returns
    -------
    dict
        The content of ``metrics.json``.
    """
    from classifiers.persistence import save_estimator

    clock = _Clock()
    with _run_directory(out, force) as staging:
        store, backbone_info, layer = _open_features(cache, backbone, layer)
        table, files = _read_tables(data, test, backbone_info, group_by)
        _require_classes(table, str(data))
        clock.lap("read")
        # Features first: sequences missing from the cache are the likeliest problem, and the
        # message (how many, which build command) is the most useful one to give.
        X = task_features(store, table["sequence"], backbone=backbone_info, layer=layer,
                          pool=pool, source=" ".join(f["path"] for f in files.values()))
        clock.lap("features")
        split_source = _split_source("split" in table.columns, test, group_by)
        n_data = len(table) - (0 if test is None else files["test"]["rows"])
        splits = assign_splits(table.iloc[:n_data], group_by=group_by, seed=seed,
                               test_table=None if test is None else table.iloc[n_data:],
                               source=str(data))
        table["split"] = splits.to_numpy()
        _check_labels(table, str(data))
        duplicates, keep = _duplicates(table, dedup_test)
        table, X = table[keep].reset_index(drop=True), X[keep]
        y = table["label"].to_numpy()
        train, val = (table["split"] == "train").to_numpy(), (table["split"] == "validation").to_numpy()
        estimator = _new_probe(model, seed, params)
        fit_kwargs = {}
        if "eval_set" in inspect.signature(estimator.fit).parameters and val.any():
            fit_kwargs["eval_set"] = (X[val], y[val])
        estimator.fit(X[train], y[train], **fit_kwargs)
        clock.lap("fit")
        proba, pred = estimator.predict_proba(X), estimator.predict(X)
        classes = list(estimator.classes_)
        metrics = _per_split(table, y, pred, proba, classes)
        intervals = _test_intervals(table, y, pred, proba, classes, n_bootstrap, seed)
        clock.lap("evaluate")
        baselines, baseline_scores = _baselines(table, y, classes, n_bootstrap, seed)
        clock.lap("baselines")

        run = _run_record("fit", model=model, estimator=estimator, classes=classes,
                          files=files, table=table, split_source=split_source,
                          seed=seed, store=store, backbone=backbone_info, layer=layer, pool=pool,
                          command=command)
        run.update(metrics=metrics, intervals={"test": intervals}, baselines=baselines,
                   duplicates=duplicates)
        run["warnings"] += _duplicate_warnings(duplicates)
        save_estimator(estimator, staging / MODEL_DIR)
        _write_predictions(staging / PREDICTIONS_FILE, table, proba, pred, classes)
        digests = sorted({_sha(s) for s in table.loc[train, "sequence"]})
        (staging / TRAIN_DIGESTS_FILE).write_text("\n".join(digests) + "\n")
        test_rows = (table["split"] == "test").to_numpy()
        figures = _score_figures(staging, y[test_rows], proba[test_rows], classes,
                                 {n: s[test_rows] for n, s in baseline_scores.items()},
                                 metrics["test"]["confusion_matrix"], "test")
        if hasattr(estimator, "history_"):
            figures["MLP loss curves"] = _save(
                staging, "loss_curves.png",
                plots.loss_curves_figure(estimator.history_,
                                         best_epoch=getattr(estimator, "best_epoch_", None)))
        clock.lap("write")
        run["provenance"]["seconds"] = clock.laps
        _write_json(staging / METRICS_FILE, run)
        write_report(staging / REPORT_FILE, run, figures)
    return run


# ---------------------------------------------------------------------------------------
# cross-validation
# ---------------------------------------------------------------------------------------


def cross_validate(data: str | PathLike, *, cache: str | PathLike, out: str | PathLike,
                   model: str = "logistic", backbone: str | None = None,
                   layer: int | None = None, pool: str = "cls", folds: int = 5, seeds: int = 1,
                   seed: int = 0, group_by: str | None = None, params: Mapping | None = None,
                   force: bool = False, command: str | None = None) -> dict:
    """K-fold cross-validation repeated over seeds; mean and standard deviation of the metrics.

    The rows of ``data`` that its split column marks as test are held out and not used (they
    stay a clean test set); all other rows are folded. Baselines are fitted on the same folds.

    Parameters
    ----------
    data, cache, out, model, backbone, layer, pool, group_by, params, force, command
        As for :func:`fit_run`.
    folds : int
        Folds per repetition (stratified; grouped with ``group_by``).
    seeds : int
        Repetitions, with shuffling seeds ``seed .. seed + seeds - 1`` (also the probe's seed).
    seed : int
        First seed.

    Returns
    -------
    dict
        The content of ``metrics.json``; ``cv`` holds per-fold metrics and the summaries.
    """
    if seeds < 1:
        raise InputError(f"--seeds must be at least 1, got {seeds}.")
    clock = _Clock()
    with _run_directory(out, force) as staging:
        store, backbone_info, layer = _open_features(cache, backbone, layer)
        table, files = _read_tables(data, None, backbone_info, group_by)
        held_out = 0
        if "split" in table.columns:
            is_test = table["split"].astype(str).str.strip().str.lower().map(SPLIT_ALIASES) == "test"
            held_out = int(is_test.sum())
            table = table[~is_test.to_numpy()].reset_index(drop=True)
        table["split"] = "train"
        _check_labels(table, str(data))
        X = task_features(store, table["sequence"], backbone=backbone_info, layer=layer,
                          pool=pool, source=files["data"]["path"])
        clock.lap("features")
        y = table["label"].to_numpy()
        sequences = table["sequence"].to_numpy(dtype=object)
        groups = table[group_by].to_numpy() if group_by else None
        classes = sorted(pd.unique(y).tolist())
        per_fold, baseline_folds = [], {name: [] for name in BASELINES}
        oof = []
        for s in range(seed, seed + seeds):
            for k, (tr, te) in enumerate(cv_folds(y, n_folds=folds, seed=s, groups=groups)):
                est = _new_probe(model, s, params)
                est.fit(X[tr], y[tr])
                proba, pred = est.predict_proba(X[te]), est.predict(X[te])
                per_fold.append({"seed": s, "fold": k + 1,
                                 **classification_metrics(y[te], pred, proba, classes)})
                frame = _prediction_frame(table.iloc[te], proba, pred, classes, with_split=False)
                frame.insert(1, "seed", s)
                frame.insert(2, "fold", k + 1)
                oof.append(frame)
                for name in BASELINES:
                    b = make_baseline(name, seed=s).fit(sequences[tr], y[tr])
                    baseline_folds[name].append({"seed": s, "fold": k + 1, **classification_metrics(
                        y[te], b.predict(sequences[te]), b.predict_proba(sequences[te]),
                        classes)})
        clock.lap("cv")
        run = _run_record("cv", model=model, estimator=_new_probe(model, seed, params),
                          classes=classes, files=files, table=table,
                          split_source=f"{folds}-fold cross-validation"
                          + (f" grouped by {group_by!r}" if group_by else ", stratified"),
                          seed=seed, store=store, backbone=backbone_info, layer=layer, pool=pool,
                          command=command)
        run["cv"] = {
            "folds": folds, "seeds": list(range(seed, seed + seeds)), "n_rows": len(table),
            "held_out_test_rows": held_out,
            "splitter": "StratifiedGroupKFold" if group_by else "StratifiedKFold",
            "summary": summarize_runs(per_fold),
            "baseline_summaries": {n: summarize_runs(v) for n, v in baseline_folds.items()},
            "per_fold": per_fold, "baseline_per_fold": baseline_folds,
        }
        pd.concat(oof, ignore_index=True).to_csv(staging / PREDICTIONS_FILE, index=False)
        bars = [_summary_bar(f"probe ({model})", run["cv"]["summary"])] + [
            _summary_bar(n, s) for n, s in run["cv"]["baseline_summaries"].items()]
        (staging / PLOTS_DIR).mkdir()
        figures = {"cross-validation metrics (mean ± sd)": _save(
            staging, "cv_metrics.png", plots.metric_bars_figure(
                bars, SCALAR_METRICS, title=f"{folds}-fold CV × {seeds} seed(s): mean ± sd"))}
        clock.lap("write")
        run["provenance"]["seconds"] = clock.laps
        _write_json(staging / METRICS_FILE, run)
        write_report(staging / REPORT_FILE, run, figures)
    return run


# ---------------------------------------------------------------------------------------
# evaluate / predict
# ---------------------------------------------------------------------------------------


def evaluate_run(run_dir: str | PathLike, data: str | PathLike, *, out: str | PathLike | None = None,
                 cache: str | PathLike | None = None, n_bootstrap: int = 1000, force: bool = False,
                 command: str | None = None) -> dict:
    """Evaluate a fitted run's probe on another labelled file, with the run's features.

    Parameters
    ----------
    run_dir : path
        A directory written by :func:`fit_run`.
    data : path
        A labelled task file; every row is evaluated (its split column is ignored).
    out : path, optional
        Where to write (default ``RUN/evaluate-<data stem>``).
    cache : path, optional
        The store, if it moved since the fit (default: the one the run recorded).
    n_bootstrap, force, command
        As for :func:`fit_run`.

    Returns
    -------
    dict
        The content of the evaluation's ``metrics.json``.
    """
    run_dir = Path(run_dir)
    fitted = read_run(run_dir, kind="fit")
    out = Path(out) if out is not None else default_evaluation_dir(run_dir, data)
    with _run_directory(out, force) as staging:
        estimator, store, backbone_info = _load_fitted(run_dir, fitted, cache)
        table, files = _read_tables(data, None, backbone_info, None)
        table["split"] = "evaluation"
        classes = list(estimator.classes_)
        unknown = sorted(set(pd.unique(table["label"])) - set(classes), key=str)
        if unknown:
            raise InputError(
                f"{data}: labels {unknown[:5]} were not among the classes the probe was trained on "
                f"({classes}); evaluate on a task with the same classes.")
        features = fitted["features"]
        X = task_features(store, table["sequence"], backbone=backbone_info,
                          layer=features["layer"], pool=features["pool"], source=str(data))
        y = table["label"].to_numpy()
        proba, pred = estimator.predict_proba(X), estimator.predict(X)
        metrics = {"evaluation": classification_metrics(y, pred, proba, classes)}
        trained_on = set((run_dir / TRAIN_DIGESTS_FILE).read_text().split())
        in_train = np.array([_sha(s) in trained_on for s in table["sequence"]])
        duplicates = {"evaluation_rows_in_train": int(in_train.sum()),
                      "unique_evaluation_sequences_in_train":
                          int(table.loc[in_train, "sequence"].nunique())}
        run = _run_record("evaluate", model=fitted["model"]["kind"], estimator=estimator,
                          classes=classes, files=files, table=table,
                          split_source="all rows of the evaluation file", seed=fitted["task"]["seed"],
                          store=store, backbone=backbone_info, layer=features["layer"],
                          pool=features["pool"], command=command)
        run.update(metrics=metrics, duplicates=duplicates, evaluated_run=str(run_dir.resolve()),
                   intervals={"test": bootstrap_intervals(y, pred, proba, classes,
                                                          n_resamples=n_bootstrap,
                                                          seed=fitted["task"]["seed"])})
        if in_train.any():
            run["warnings"].append(
                f"{int(in_train.sum())} evaluation rows have a sequence the probe was trained on; "
                "their scores are not out-of-sample.")
        _write_predictions(staging / PREDICTIONS_FILE, table, proba, pred, classes)
        figures = _score_figures(staging, y, proba, classes, {},
                                 metrics["evaluation"]["confusion_matrix"], "evaluation")
        _write_json(staging / METRICS_FILE, run)
        write_report(staging / REPORT_FILE, run, figures)
    return run


def default_evaluation_dir(run_dir: str | PathLike, data: str | PathLike) -> Path:
    """Where :func:`evaluate_run` writes by default: ``RUN/evaluate-<data file stem>``."""
    return Path(run_dir) / f"evaluate-{_stem(data)}"


def predict_run(run_dir: str | PathLike, data: str | PathLike, *,
                out: str | PathLike | None = None, cache: str | PathLike | None = None,
                force: bool = False) -> Path:
    """Score new sequences (labels not needed) with a fitted run's probe; write a CSV.

    Parameters
    ----------
    run_dir : path
        A directory written by :func:`fit_run`.
    data : path
        FASTA, CSV, TSV or Parquet; its sequences must be in the store (``embedcache build``).
    out : path, optional
        The CSV to write (default ``RUN/predictions-<data stem>.csv``): ``id``, score
        column(s) as in ``predictions.csv``, ``prediction``.
    cache : path, optional
        The store, if it moved since the fit.
    force : bool
        Replace an existing ``out``.

    Returns
    -------
    Path
        The CSV written.
    """
    run_dir = Path(run_dir)
    fitted = read_run(run_dir, kind="fit")
    out = Path(out) if out is not None else run_dir / f"predictions-{_stem(data)}.csv"
    if out.exists() and not force:
        raise InputError(f"{out} exists; pass --force to replace it, or choose another --out.")
    estimator, store, backbone_info = _load_fitted(run_dir, fitted, cache)
    table = read_task(data, alphabet=backbone_info["alphabet"], labelled=False)
    features = fitted["features"]
    X = task_features(store, table["sequence"], backbone=backbone_info, layer=features["layer"],
                      pool=features["pool"], source=str(data))
    frame = _prediction_frame(table, estimator.predict_proba(X), estimator.predict(X),
                              list(estimator.classes_), with_split=False, with_label=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    try:
        frame.to_csv(tmp, index=False)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


# ---------------------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------------------


def compare_runs(run_dirs: Sequence[str | PathLike], *, out: str | PathLike | None = None,
                 force: bool = False) -> pd.DataFrame:
    """Runs side by side: a table of test metrics (cv: mean ± sd) and comparison plots.

    Parameters
    ----------
    run_dirs : sequence of path
        Run directories of ``fit``, ``cv`` or ``evaluate``.
    out : path, optional
        Where to write ``compare.csv``, ``metrics.png``, ``mcc_by_layer.png``,
        ``auroc_by_layer.png`` and (binary fit runs) ``roc.png``; nothing is written without.
    force : bool
        Replace an existing non-empty ``out``.

    Returns
    -------
    pandas.DataFrame
        One row per run: name, kind, model, backbone, layer, pool, n, each metric with
        ``_low``/``_high`` (interval, or mean ± sd for cv), and the baselines' MCC and AUROC.
    """
    if not run_dirs:
        raise InputError("compare needs at least one run directory.")
    rows, runs = [], []
    for d in run_dirs:
        run = read_run(d)
        runs.append((Path(d), run))
        rows.append(_compare_row(Path(d), run))
    table = pd.DataFrame(rows)
    if out is None:
        return table
    with _run_directory(out, force) as staging:
        table.to_csv(staging / "compare.csv", index=False)
        records = table.to_dict("records")
        plots.save_png(plots.metric_bars_figure(records, SCALAR_METRICS), staging / "metrics.png")
        for metric in ("mcc", "auroc"):
            # fit, cv and evaluate numbers come from different rows: separate lines.
            series = [{**r, "series": " · ".join([r["model"], r["pool"], str(r["backbone"])]
                                                  + ([] if r["kind"] == "fit" else [r["kind"]]))}
                      for r in records]
            plots.save_png(plots.metric_by_layer_figure(series, metric),
                           staging / f"{metric}_by_layer.png")
        curves = {}
        for d, run in runs:
            if run["kind"] == "cv" or len(run["task"]["classes"]) != 2:
                continue
            pred = pd.read_csv(d / PREDICTIONS_FILE)
            split = "evaluation" if run["kind"] == "evaluate" else "test"
            pred = pred[pred["split"] == split]
            positive = pred["label"].astype(str) == run["task"]["classes"][1]
            curves[d.name] = (positive.to_numpy(), pred["score"].to_numpy())
        if curves:
            plots.save_png(plots.roc_figure(curves, title="ROC, test sets"), staging / "roc.png")
            plots.save_png(plots.precision_recall_figure(curves, title="Precision-recall, test sets"),
                           staging / "precision_recall.png")
    return table


# ---------------------------------------------------------------------------------------
# The run directory
# ---------------------------------------------------------------------------------------


def read_run(run_dir: str | PathLike, *, kind: str | None = None) -> dict:
    """The ``metrics.json`` of a run directory, after checking its encoding and version.

    Parameters
    ----------
    run_dir : path
    kind : {"fit", "cv", "evaluate"}, optional
        Require this kind of run.

    Raises
    ------
    InputError
        Not a run directory, a damaged ``metrics.json``, or the wrong kind.
    RunVersionError
        Written in a run encoding version this release does not read.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise InputError(f"{run_dir} is not a classify run directory (no {METRICS_FILE}); give "
                         "a directory written by `classify fit` (its --out).")
    try:
        run = json.loads(path.read_text())
        encoding = run["encoding"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path} is damaged ({exc}); fit the run again.") from None
    if encoding.get("name") != RUN_ENCODING:
        raise InputError(f"{path} was not written by classify (encoding {encoding.get('name')!r}).")
    if encoding.get("version") not in _KNOWN_VERSIONS:
        raise RunVersionError(
            f"{run_dir} is a run directory of encoding version {encoding.get('version')!r} "
            f"(written by embedcache {run.get('provenance', {}).get('embedcache', '?')}); this "
            f"embedcache reads version(s) {', '.join(map(str, _KNOWN_VERSIONS))}. Use the "
            "embedcache that wrote it, or fit the run again with this one.")
    if kind is not None and run.get("kind") != kind:
        raise InputError(f"{run_dir} is a {run.get('kind')!r} run; this needs a {kind!r} run "
                         "(written by `classify fit`).")
    return run


@contextmanager
def _run_directory(out: str | PathLike, force: bool):
    """A staging directory that becomes ``out`` when the block completes, and vanishes if not."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a directory.")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise InputError(f"{out} exists and is not empty; pass --force to replace it, or choose "
                         "another --out.")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        yield staging
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(staging, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _open_features(cache, backbone, layer):
    from embedcache import EmbeddingCache

    store = EmbeddingCache(cache)
    info = resolve_backbone(store, backbone)
    if layer is None:
        layer = int(info["num_layers"])
    return store, info, int(layer)


def _read_tables(data, test, backbone: Backbone, group_by):
    alphabet = backbone["alphabet"] or "iupac-to-n"
    tables = [read_task(data, alphabet=alphabet, group_by=group_by)]
    files = {"data": _file_record(data, len(tables[0]))}
    if test is not None:
        tables.append(read_task(test, alphabet=alphabet, group_by=group_by))
        files["test"] = _file_record(test, len(tables[1]))
    table = pd.concat(tables, ignore_index=True)
    if table["label"].map(type).nunique() > 1:
        raise InputError(f"the labels of {data} and {test} differ in kind (numbers in one file, "
                         "text in the other); use the same class names in both.")
    return table, files


def _require_classes(table: pd.DataFrame, source: str) -> None:
    classes = pd.unique(table["label"])
    if len(classes) < 2:
        raise InputError(
            f"{source}: every label is {_plain(classes[0])!r}; a classifier needs at least two classes. "
            "Check the label column.")


def _check_labels(table: pd.DataFrame, source: str) -> None:
    _require_classes(table, source)
    train = table.loc[table["split"] == "train", "label"]
    classes = pd.unique(train)
    if len(classes) < 2:
        raise InputError(
            f"{source}: the training rows hold only class {_plain(classes[0])!r}; a classifier needs at "
            "least two. Check the split column.")
    unseen = sorted((_plain(v) for v in set(table["label"]) - set(classes)), key=str)
    if unseen:
        where = table.loc[table["label"].isin(unseen), "split"].unique().tolist()
        raise InputError(
            f"{source}: labels {unseen} occur in {where} but not in train; the probe cannot learn "
            "them. Move some of those rows to train, or drop them.")


def _duplicates(table: pd.DataFrame, dedup_test: bool) -> tuple[dict, np.ndarray]:
    """Train-test overlap by content, and which rows to keep (all, or all but the shared
    test rows with ``dedup_test``)."""
    train = table.loc[table["split"] == "train", "sequence"]
    is_test = (table["split"] == "test").to_numpy()
    is_val = (table["split"] == "validation").to_numpy()
    # Validation rows choose the MLP's epoch: a test sequence among them was seen in fitting too.
    fitting = table.loc[~is_test, "sequence"]
    test_shared = np.zeros(len(table), dtype=bool)
    test_shared[is_test] = shared_with_train(fitting, table.loc[is_test, "sequence"])
    val_shared = shared_with_train(train, table.loc[is_val, "sequence"])
    report = {
        "test_rows_in_train": int(test_shared.sum()),
        "unique_test_sequences_in_train": int(table.loc[test_shared, "sequence"].nunique()),
        "validation_rows_in_train": int(val_shared.sum()),
        "duplicate_rows_within_train": int(train.duplicated().sum()),
        "dedup_test": bool(dedup_test),
        "dropped_from_test": int(test_shared.sum()) if dedup_test else 0,
    }
    keep = ~test_shared if dedup_test else np.ones(len(table), dtype=bool)
    if not (table.loc[keep, "split"] == "test").any():
        raise InputError("every test sequence also occurs in train; --dedup-test would leave "
                         "no test set. Give another test file.")
    return report, keep


def _duplicate_warnings(duplicates: Mapping) -> list[str]:
    n = duplicates["test_rows_in_train"]
    if n and not duplicates["dedup_test"]:
        return [f"{n} test rows ({duplicates['unique_test_sequences_in_train']} sequences) also "
                "occur in the train or validation split; they inflate the test metrics. "
                "--dedup-test drops them."]
    return []


def _split_source(has_split_column: bool, test, group_by) -> str:
    validation = "validation: the file's dev rows, else a stratified part of train (seeded)"
    if test is not None:
        return f"test: the separate test file; {validation}"
    if has_split_column:
        return f"the data file's split column; {validation}"
    if group_by:
        return f"random, grouped by {group_by!r} so no group straddles splits (seeded); {validation}"
    return f"stratified random (seeded); {validation}"


def _new_probe(model: str, seed: int, params: Mapping | None):
    """An unfitted probe; seeded with ``seed`` unless the probe is deterministic or the caller
    set ``random_state`` explicitly."""
    from classifiers.persistence import make_estimator

    params = dict(params or {})
    estimator = make_estimator(model, **params)
    if "random_state" in estimator.get_params() and "random_state" not in params:
        estimator.set_params(random_state=seed)
    return estimator


def _per_split(table, y, pred, proba, classes) -> dict:
    out = {}
    for split in ("train", "validation", "test"):
        m = (table["split"] == split).to_numpy()
        if m.any():
            out[split] = classification_metrics(y[m], pred[m], proba[m], classes)
    return out


def _test_intervals(table, y, pred, proba, classes, n_bootstrap, seed) -> dict:
    m = (table["split"] == "test").to_numpy()
    return bootstrap_intervals(y[m], pred[m], proba[m], classes, n_resamples=n_bootstrap,
                               seed=seed)


def _baselines(table, y, classes, n_bootstrap, seed):
    sequences = table["sequence"].to_numpy(dtype=object)
    train = (table["split"] == "train").to_numpy()
    results, scores = {}, {}
    for name in BASELINES:
        est = make_baseline(name, seed=seed).fit(sequences[train], y[train])
        if list(est.classes_) != list(classes):
            raise AssertionError("baseline and probe disagree on the classes")
        proba, pred = est.predict_proba(sequences), est.predict(sequences)
        results[name] = {"metrics": _per_split(table, y, pred, proba, classes),
                         "intervals": _test_intervals(table, y, pred, proba, classes,
                                                      n_bootstrap, seed)}
        scores[name] = proba
    return results, scores


def _score_figures(staging: Path, y, proba, classes, baseline_proba: Mapping, confusion,
                   split: str) -> dict:
    """ROC, precision-recall and confusion matrix PNGs of one split; caption -> path."""
    (staging / PLOTS_DIR).mkdir(exist_ok=True)
    if len(classes) == 2:
        truth = y == classes[1]
        curves = {"probe": (truth, proba[:, 1])}
        curves.update({f"baseline: {n}": (truth, p[:, 1]) for n, p in baseline_proba.items()
                       if n != "majority"})
        what = f"{split}, positive class {classes[1]}"
    else:
        curves = {f"probe: {c} vs rest": (y == c, proba[:, i]) for i, c in enumerate(classes)}
        what = f"{split}, one-vs-rest"
    return {
        "ROC": _save(staging, "roc.png", plots.roc_figure(curves, title=f"ROC ({what})")),
        "precision-recall": _save(staging, "precision_recall.png", plots.precision_recall_figure(
            curves, title=f"Precision-recall ({what})")),
        "confusion matrix": _save(staging, "confusion_matrix.png", plots.confusion_matrix_figure(
            confusion, [str(c) for c in classes], title=f"Confusion matrix ({split})")),
    }


def _save(staging: Path, name: str, fig) -> Path:
    path = staging / PLOTS_DIR / name
    path.parent.mkdir(exist_ok=True)
    plots.save_png(fig, path)
    return path


def _prediction_frame(table: pd.DataFrame, proba, pred, classes, *, with_split=True,
                      with_label=True) -> pd.DataFrame:
    frame = pd.DataFrame({"id": table["id"].to_numpy()})
    if with_split:
        frame["split"] = table["split"].to_numpy()
    if with_label:
        frame["label"] = table["label"].to_numpy()
    if len(classes) == 2:
        frame["score"] = proba[:, 1]
    else:
        for i, c in enumerate(classes):
            frame[f"score_{c}"] = proba[:, i]
    frame["prediction"] = pred
    return frame


def _write_predictions(path: Path, table, proba, pred, classes) -> None:
    _prediction_frame(table, proba, pred, classes).to_csv(path, index=False)


def _load_fitted(run_dir: Path, fitted: Mapping, cache):
    from classifiers.persistence import load_estimator
    from embedcache import EmbeddingCache

    features = fitted["features"]
    store = EmbeddingCache(cache if cache is not None else features["store"])
    recorded = features["backbone"]
    info = resolve_backbone(store, recorded["key"])
    if info["digest"] != recorded["digest"]:
        raise StoreError(
            f"the store {store.path} model {info['key']} has parameter digest {info['digest']}, "
            f"but the run {run_dir} was trained on {recorded['digest']}; give the store the run "
            "used (--cache).")
    return load_estimator(Path(run_dir) / MODEL_DIR), store, info


def _run_record(kind, *, model, estimator, classes, files, table, split_source, seed, store,
                backbone, layer, pool, command) -> dict:
    counts = table["split"].value_counts()
    warnings = []
    if backbone.get("random_weights"):
        warnings.append(RANDOM_WEIGHTS_WARNING.format(name=backbone["name"], key=backbone["key"]))
    record = {
        "encoding": {"name": RUN_ENCODING, "version": RUN_ENCODING_VERSION},
        "kind": kind,
        "warnings": warnings,
        "task": {
            "files": files,
            "classes": [str(c) for c in classes],
            "rows": {s: int(counts.get(s, 0)) for s in ("train", "validation", "test", "evaluation")
                     if counts.get(s, 0)},
            "split_source": split_source,
            "seed": int(seed),
        },
        "features": {"store": str(Path(store.path).resolve()), "backbone": dict(backbone),
                     "layer": int(layer), "pool": pool},
        "model": {"kind": model, "params": _jsonable(estimator.get_params())},
        "provenance": {
            "command": command or "(Python API)",
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "embedcache": _version("embedcache"),
            "versions": {"python": sys.version.split()[0], **{
                p: _version(p) for p in ("embedcache", "numpy", "scikit-learn", "xgboost", "jax",
                                         "optax", "zarr", "pandas", "matplotlib")}},
        },
    }
    for attr in ("best_epoch_", "n_epochs_", "history_"):
        if hasattr(estimator, attr):
            record["model"][attr.rstrip("_")] = _jsonable(getattr(estimator, attr))
    return record


def _compare_row(run_dir: Path, run: Mapping) -> dict:
    features, kind = run["features"], run["kind"]
    row = {"name": run_dir.name, "kind": kind, "model": run["model"]["kind"],
           "backbone": features["backbone"].get("name") or features["backbone"]["key"],
           "layer": features["layer"], "pool": features["pool"]}
    if kind == "cv":
        summary = run["cv"]["summary"]
        row["n"] = run["cv"]["n_rows"]
        for m in SCALAR_METRICS:
            mean, sd = summary[m]["mean"], summary[m]["std"] or 0.0
            row.update({m: mean, f"{m}_low": None if mean is None else mean - sd,
                        f"{m}_high": None if mean is None else mean + sd})
        baselines = run["cv"]["baseline_summaries"]
        for name in BASELINES:
            for m in ("mcc", "auroc"):
                row[f"{name}_{m}"] = baselines[name][m]["mean"]
        return row
    split = "evaluation" if kind == "evaluate" else "test"
    test, ci = run["metrics"][split], run["intervals"]["test"]
    row["n"] = test["n"]
    for m in SCALAR_METRICS:
        interval = ci.get(m) or [None, None]
        row.update({m: test[m], f"{m}_low": interval[0], f"{m}_high": interval[1]})
    for name in BASELINES:
        for m in ("mcc", "auroc"):
            row[f"{name}_{m}"] = run.get("baselines", {}).get(name, {}).get(
                "metrics", {}).get("test", {}).get(m)
    return row


def _summary_bar(name: str, summary: Mapping) -> dict:
    bar = {"name": name}
    for m in SCALAR_METRICS:
        mean, sd = summary[m]["mean"], summary[m]["std"] or 0.0
        bar.update({m: mean, f"{m}_low": None if mean is None else mean - sd,
                    f"{m}_high": None if mean is None else mean + sd})
    return bar


def _plain(value):
    """A NumPy scalar as the Python value it holds, so messages read 1, not np.int64(1)."""
    return value.item() if isinstance(value, np.generic) else value


def _file_record(path, rows: int) -> dict:
    return {"path": str(path), "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
            "rows": int(rows)}


def _sha(sequence: str) -> str:
    return hashlib.sha256(sequence.encode("ascii")).hexdigest()


def _stem(path) -> str:
    name = Path(path).name
    for suffix in (".gz", ".csv", ".tsv", ".parquet", ".pq", ".fa", ".fasta", ".fna", ".fas"):
        name = name.removesuffix(suffix)
    return name


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _jsonable(value):
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n")


class _Clock:
    """Wall-clock seconds per stage, recorded in the provenance."""

    def __init__(self):
        self._t = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._t, 3)
        self._t = now
