"""The steps every workflow shares: open the store and backbone, read the task, check labels
and splits, load features, make a probe, score it and its baselines, draw the score figures.

The workflows (:mod:`~classifiers.runs.fit`, :mod:`~classifiers.runs.cv`,
:mod:`~classifiers.runs.apply`) are these steps in order: stage the directory, load task and
features, fit or predict, record, write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from classifiers import plots
from classifiers.baselines import BASELINES, make_baseline
from classifiers.features import Backbone, check_layer, read_task, resolve_backbone, task_features
from classifiers.metrics import bootstrap_intervals, classification_metrics
from classifiers.probes.base import FitDivergedError
from classifiers.runs.directory import MODEL_DIR, PLOTS_DIR, REPORT_FILE, file_record
from classifiers.runs.record import RunRecord
from classifiers.report import write_report
from classifiers.splits import shared_with_train
from embedcache.errors import InputError, MissingRowsError, StoreError


def as_cache(cache):
    """An :class:`~embedcache.EmbeddingCache` given one (a URL cache with its storage options,
    as the command line opens it) or a path or URL."""
    from embedcache import EmbeddingCache

    return cache if isinstance(cache, EmbeddingCache) else EmbeddingCache(cache)


def open_store(cache, backbone):
    store = as_cache(cache)
    return store, resolve_backbone(store, backbone)


def parse_layers(spec, num_layers: int) -> list[int]:
    """``"all"``, ``"1-12"``, ``"1,6,12"`` (or a mix, or ints) as sorted 1-based layers
    (the library's one layer parser, :mod:`embedcache.util.ranges`)."""
    from embedcache.util.ranges import parse_layers as parse, resolve_layers

    return list(resolve_layers(parse(spec), range(1, num_layers + 1), model="the backbone"))


def require_features(store, table, *, backbone: Backbone, layers, pools, source):
    """Refuse, in one error, (layer, pool) pairs the store lacks for the task's rows: a
    :class:`~embedcache.errors.MissingRowsError` whose advice builds all of them (a variant
    task: the first pair missing, with the ``embedcache variants`` command that embeds it)."""
    from dataclasses import replace

    if getattr(source, "variants", None) is not None:
        for layer in layers:
            for pool in pools:
                features(store, table.iloc[:1], backbone=backbone, layer=layer, pool=pool, source=source)
        return
    probe_rows = list(table["sequence"][:1])
    missing, first = [], None
    for layer in layers:
        for pool in pools:
            try:
                task_features(store, probe_rows, backbone=backbone, layer=int(layer), pool=pool,
                              source=source)
            except MissingRowsError as exc:
                missing.append((layer, pool))
                first = first or exc
    if missing:
        listing = ", ".join(f"layer {l} {p}" for l, p in missing)
        advice = first.advice
        options = {**advice.options, "layers": sorted({l for l, _ in missing}),
                   "pools": sorted({p for _, p in missing})}
        raise MissingRowsError(
            missing=first.missing, absent=first.absent, total=first.total, first=first.first,
            first_id=first.first_id, store=first.store, model=first.model, key=first.key,
            what=listing, held=first.held, first_sequence=first.first_sequence,
            advice=replace(advice, options=options),
            summary=(f"the cache {store.path} lacks {len(missing)} of the requested layer and pooling "
                     f"features for model {backbone['name']} (key {backbone['key']}): {listing}."))


def features(store, table: pd.DataFrame, *, backbone: Backbone, layer, pool: str, source):
    """The task rows' features: (n, D) for one layer; (n, layers, D) for a list of layers (the
    layer-weighted probe). A variant task's (``source.variants``) are its alleles' ``alt - ref``
    or ``[ref, alt]`` (:mod:`classifiers.variant_task`); any other's, its sequences' embeddings."""
    if isinstance(layer, (list, tuple)):
        return np.stack([features(store, table, backbone=backbone, layer=l, pool=pool, source=source)
                         for l in layer], axis=1)
    variants = getattr(source, "variants", None)
    if variants is not None:
        from classifiers.variant_task import variant_task_features

        check_layer(backbone, layer)
        return variant_task_features(store, table, variants, backbone=backbone, layer=int(layer),
                                     pool=pool, source=source)
    return task_features(store, table["sequence"], backbone=backbone, layer=int(layer), pool=pool,
                         source=source)


def read_tables(data, test, backbone: Backbone, group_by, reference=None, *, variants=None, store=None):
    """The task rows of ``data`` (and ``test``) and their file records. With ``variants`` (a
    :class:`~classifiers.variant_task.VariantTask`), the files are variant sets read against
    the ``store``'s backbone."""
    if variants is not None:
        from classifiers.variant_task import read_variant_task

        def read(path):
            return read_variant_task(store, path, variants, backbone=backbone, group_by=group_by)
    else:
        alphabet = backbone["alphabet"] or "iupac-to-n"

        def read(path):
            return read_task(path, alphabet=alphabet, group_by=group_by, reference=reference)
    tables = [read(data)]
    files = {"data": file_record(data, len(tables[0]))}
    if test is not None:
        tables.append(read(test))
        files["test"] = file_record(test, len(tables[1]))
    if variants is not None:
        for key, t in zip(("data", "test"), tables):
            files[key].update(alleles_without_label=t.attrs["missing_labels"], alleles_skipped=t.attrs["skipped"])
    table = pd.concat(tables, ignore_index=True)
    if table["label"].map(type).nunique() > 1:
        raise InputError(f"the labels of {data} and {test} differ in kind (numbers in one file, "
                         "text in the other); use the same class names in both.")
    return table, files


def require_classes(table: pd.DataFrame, source: str) -> None:
    classes = pd.unique(table["label"])
    if len(classes) < 2:
        raise InputError(
            f"{source}: every label is {plain(classes[0])!r}; a classifier needs at least two "
            "classes. Check the label column.")


def check_labels(table: pd.DataFrame, source: str) -> None:
    require_classes(table, source)
    train = table.loc[table["split"] == "train", "label"]
    classes = pd.unique(train)
    if len(classes) < 2:
        raise InputError(
            f"{source}: the training rows hold only class {plain(classes[0])!r}; a classifier "
            "needs at least two. Check the split column.")
    unseen = sorted((plain(v) for v in set(table["label"]) - set(classes)), key=str)
    if unseen:
        where = table.loc[table["label"].isin(unseen), "split"].unique().tolist()
        raise InputError(
            f"{source}: labels {unseen} occur in {where} but not in train; the probe cannot "
            "learn them. Move some of those rows to train, or drop them.")


def duplicates(table: pd.DataFrame, dedup_test: bool) -> tuple[dict, np.ndarray]:
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


def duplicate_warnings(dup: Mapping) -> list[str]:
    n = dup["test_rows_in_train"]
    if n and not dup["dedup_test"]:
        return [f"{n} test rows ({dup['unique_test_sequences_in_train']} sequences) also "
                "occur in the train or validation split; they inflate the test metrics. "
                "--dedup-test drops them."]
    return []


def split_source(has_split_column: bool, test, group_by) -> str:
    validation = "validation: the file's dev rows, else a stratified part of train (seeded)"
    if test is not None:
        return f"test: the separate test file; {validation}"
    if has_split_column:
        return f"the data file's split column; {validation}"
    if group_by:
        return (f"random, grouped by {group_by!r} so no group straddles splits (seeded); "
                f"{validation}")
    return f"stratified random (seeded); {validation}"


def new_probe(model: str, seed: int, params: Mapping | None):
    """An unfitted probe; seeded with ``seed`` unless the probe is deterministic or the caller
    set ``random_state`` explicitly."""
    from classifiers.persistence import make_estimator

    params = dict(params or {})
    estimator = make_estimator(model, **params)
    if "random_state" in estimator.get_params() and "random_state" not in params:
        estimator.set_params(random_state=seed)
    return estimator


def fit_probe(estimator, X, y, train, val):
    """Fit on the train rows; probes that choose an epoch or stop early watch validation."""
    import inspect

    kwargs = {}
    if "eval_set" in inspect.signature(estimator.fit).parameters and val.any():
        kwargs["eval_set"] = (X[val], y[val])
    return estimator.fit(X[train], y[train], **kwargs)


def predicted(estimator, X, model: str) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, predictions) of a fitted probe; non-finite probabilities mean the fit
    diverged (a huge step size, say), which no metric or run should record."""
    proba = estimator.predict_proba(X)
    if not np.isfinite(proba).all():
        params = ", ".join(f"{k}={v!r}" for k, v in sorted(estimator.get_params().items()))
        raise FitDivergedError(
            f"the {model} probe's fit diverged: its predicted probabilities are NaN or infinite "
            f"({params}); nothing was written. Use a smaller step (learning_rate) or stronger "
            "regularisation and fit again.")
    return proba, estimator.classes_[proba.argmax(axis=1)]


def per_split(table, y, pred, proba, classes, splits=("train", "validation", "test")) -> dict:
    out = {}
    for split in splits:
        m = (table["split"] == split).to_numpy()
        if m.any():
            out[split] = classification_metrics(y[m], pred[m], proba[m], classes)
    return out


def split_intervals(table, y, pred, proba, classes, n_bootstrap, seed, split="test") -> dict:
    m = (table["split"] == split).to_numpy()
    if not m.any():
        return {}
    return bootstrap_intervals(y[m], pred[m], proba[m], classes, n_resamples=n_bootstrap,
                               seed=seed)


def baselines(table, y, classes, n_bootstrap, seed):
    sequences = table["sequence"].to_numpy(dtype=object)
    train = (table["split"] == "train").to_numpy()
    results, scores = {}, {}
    for name in BASELINES:
        est = make_baseline(name, seed=seed).fit(sequences[train], y[train])
        if list(est.classes_) != list(classes):
            raise AssertionError("baseline and probe disagree on the classes")
        proba, pred = est.predict_proba(sequences), est.predict(sequences)
        results[name] = {"metrics": per_split(table, y, pred, proba, classes),
                         "intervals": split_intervals(table, y, pred, proba, classes,
                                                      n_bootstrap, seed)}
        scores[name] = proba
    return results, scores


def score_figures(staging: Path, y, proba, classes, baseline_proba: Mapping, confusion,
                  split: str) -> dict:
    """ROC, precision-recall and confusion matrix PNGs of one split; caption -> path."""
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
        "ROC": save(staging, "roc.png", plots.roc_figure(curves, title=f"ROC ({what})")),
        "precision-recall": save(staging, "precision_recall.png", plots.precision_recall_figure(
            curves, title=f"Precision-recall ({what})")),
        "confusion matrix": save(staging, "confusion_matrix.png", plots.confusion_matrix_figure(
            confusion, [str(c) for c in classes], title=f"Confusion matrix ({split})")),
    }


def save(staging: Path, name: str, fig) -> Path:
    path = staging / PLOTS_DIR / name
    path.parent.mkdir(exist_ok=True)
    plots.save_png(fig, path)
    return path


def finish(staging: Path, record: RunRecord, figures: Mapping, clock) -> RunRecord:
    """The last step of every workflow: timings, metrics.json, report.html."""
    record["provenance"]["seconds"] = clock.laps
    record.write(staging)
    write_report(staging / REPORT_FILE, record, figures)
    return record


def prediction_frame(table: pd.DataFrame, proba, pred, classes, *, with_split=True,
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


def fitted_variants(fitted: RunRecord, reference=None, **labels):
    """The :class:`~classifiers.variant_task.VariantTask` a run was fitted with (``None``: a
    sequence task), so that ``evaluate`` and ``predict`` read a variant set as its fit did;
    ``reference`` (their ``--reference``) replaces the recorded genome, ``labels``
    (``label_field``, ``positive``: evaluate's options) the recorded ones where given."""
    recorded = fitted["features"].get("variants")
    if not recorded:
        given = [f"--{k.replace('_', '-')}" for k, v in labels.items() if v is not None]
        if given:
            raise InputError(f"{', '.join(given)} are for runs fitted on variant features (--variant-features); "
                             "this run was fitted on a sequence task.")
        return None
    from classifiers.variant_task import VariantTask

    return VariantTask.from_record(recorded, reference=reference, **labels)


def load_fitted(run_dir: Path, fitted: RunRecord, cache):
    from classifiers.persistence import load_estimator
    from embedcache import EmbeddingCache

    recorded_features = fitted["features"]
    store = EmbeddingCache(cache if cache is not None else recorded_features["store"])
    recorded = recorded_features["backbone"]
    info = resolve_backbone(store, recorded["key"])
    if info["digest"] != recorded["digest"]:
        raise StoreError(
            f"the store {store.path} model {info['key']} has parameter digest {info['digest']}, "
            f"but the run {run_dir} was trained on {recorded['digest']}; give the store the run "
            "used (--cache).")
    return load_estimator(Path(run_dir) / MODEL_DIR), store, info


def plain(value):
    """A NumPy scalar as the Python value it holds, so messages read 1, not np.int64(1)."""
    return value.item() if isinstance(value, np.generic) else value


def masks(table: pd.DataFrame, *names: str) -> Sequence[np.ndarray]:
    return [(table["split"] == n).to_numpy() for n in names]
