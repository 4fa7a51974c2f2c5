"""Classification metrics, their bootstrap intervals, and summaries over folds and seeds.

The point estimates are scikit-learn's own functions. The bootstrap recomputes the same
metrics for many resamples at once: a resample is a row of integer weights (how often each test
row was drawn), and every metric below is written over such weights, so 1000 resamples cost a
few array operations instead of 1000 calls into scikit-learn. A test checks that the weighted
versions equal scikit-learn on the explicitly resampled rows.

Binary tasks: the positive class is ``classes[1]`` (scikit-learn's order: sorted labels), the
score is its probability; F1 is the positive class's. Multi-class tasks: macro F1, macro
average precision and one-vs-rest macro AUROC over all the task's classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sklearn import metrics as skm
from sklearn.preprocessing import label_binarize

__all__ = [
    "SCALAR_METRICS",
    "classification_metrics",
    "bootstrap_intervals",
    "ranking_metrics",
    "weighted_metrics",
    "summarize_runs",
]

SCALAR_METRICS = ("mcc", "auroc", "auprc", "accuracy", "f1")


def classification_metrics(y_true: Sequence, y_pred: Sequence, proba: np.ndarray,
                           classes: Sequence) -> dict:
    """MCC, AUROC, AUPRC, accuracy, F1 and the confusion matrix, computed by scikit-learn.

    Parameters
    ----------
    y_true, y_pred : sequence of labels, length n
        True and predicted labels, of the same type as ``classes``.
    proba : ndarray of shape (n, n_classes)
        Class probabilities, columns in the order of ``classes``.
    classes : sequence
        All the task's classes, sorted (the estimator's ``classes_``).

    Returns
    -------
    dict
        ``n``, the five scalar metrics (``None`` where undefined, e.g. AUROC when ``y_true``
        holds one class), ``confusion_matrix`` (rows true, columns predicted, in ``classes``
        order) and ``classes`` (as strings).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    proba = np.asarray(proba, dtype=np.float64)
    classes = list(classes)
    binary = len(classes) == 2
    present = np.unique(y_true)
    out = {
        "n": int(len(y_true)),
        "mcc": float(skm.matthews_corrcoef(y_true, y_pred)),
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "f1": float(skm.f1_score(y_true, y_pred, labels=classes, zero_division=0,
                                 **({"pos_label": classes[1]} if binary
                                    else {"average": "macro"}))),
        "auroc": None,
        "auprc": None,
    }
    if binary and len(present) == 2:
        positive = y_true == classes[1]
        out["auroc"] = float(skm.roc_auc_score(positive, proba[:, 1]))
        out["auprc"] = float(skm.average_precision_score(positive, proba[:, 1]))
    elif not binary and len(present) == len(classes):
        out["auroc"] = float(skm.roc_auc_score(y_true, proba, multi_class="ovr",
                                               average="macro", labels=classes))
        out["auprc"] = float(skm.average_precision_score(
            label_binarize(y_true, classes=classes), proba, average="macro"))
    out["confusion_matrix"] = skm.confusion_matrix(y_true, y_pred, labels=classes).tolist()
    out["classes"] = [str(c) for c in classes]
    return out


def bootstrap_intervals(y_true: Sequence, y_pred: Sequence, proba: np.ndarray,
                        classes: Sequence, *, n_resamples: int = 1000, level: float = 0.95,
                        seed: int = 0, chunk: int = 200) -> dict:
    """Percentile bootstrap intervals of the scalar metrics, over resampled rows.

    Parameters
    ----------
    y_true, y_pred, proba, classes
        As for :func:`classification_metrics`.
    n_resamples : int
        Number of resamples (rows drawn with replacement, as many as there are rows).
    level : float
        Coverage of the interval.
    seed : int
        Seed of the resampling; the same seed gives the same intervals.
    chunk : int
        Resamples evaluated together (bounds memory at ``chunk * n`` floats).

    Returns
    -------
    dict
        ``{metric: [low, high]}`` for each of :data:`SCALAR_METRICS` (``None`` when the metric
        is undefined in most resamples), plus ``n_resamples``, ``level``, ``seed`` and
        ``method``.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    proba = np.asarray(proba, dtype=np.float64)
    classes = list(classes)
    n = len(y_true)
    rng = np.random.default_rng(seed)
    values: dict[str, list[np.ndarray]] = {m: [] for m in SCALAR_METRICS}
    for start in range(0, n_resamples, chunk):
        r = min(chunk, n_resamples - start)
        draws = rng.integers(0, n, size=(r, n))
        weights = np.zeros((r, n))
        np.add.at(weights, (np.arange(r)[:, None], draws), 1.0)
        for name, v in weighted_metrics(y_true, y_pred, proba, classes, weights).items():
            values[name].append(v)
    alpha = (1.0 - level) / 2.0
    out: dict = {}
    for name, chunks in values.items():
        v = np.concatenate(chunks)
        ok = np.isfinite(v)
        out[name] = ([float(np.quantile(v[ok], alpha)), float(np.quantile(v[ok], 1 - alpha))]
                     if ok.mean() >= 0.5 else None)
    out.update(n_resamples=int(n_resamples), level=float(level), seed=int(seed),
               method="percentile bootstrap over test rows")
    return out


def ranking_metrics(positive: Sequence[bool], score: Sequence[float], *, n_resamples: int = 1000,
                    level: float = 0.95, seed: int = 0, chunk: int = 200) -> dict:
    """AUROC and AUPRC of a real-valued score (larger = positive), with bootstrap intervals.

    The point estimates are scikit-learn's ``roc_auc_score`` and ``average_precision_score``;
    the intervals resample rows as :func:`bootstrap_intervals` does.

    Returns
    -------
    dict
        ``n``, ``n_positive``, ``auroc``, ``auprc`` (``None`` when one class is absent), and
        ``intervals``: ``{"auroc": [low, high], "auprc": [...], "n_resamples", "level", "seed",
        "method"}``.
    """
    positive = np.asarray(positive, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    n = len(positive)
    out: dict = {"n": int(n), "n_positive": int(positive.sum()), "auroc": None, "auprc": None}
    both = 0 < positive.sum() < n
    if both:
        out["auroc"] = float(skm.roc_auc_score(positive, score))
        out["auprc"] = float(skm.average_precision_score(positive, score))
    rng = np.random.default_rng(seed)
    values: dict[str, list[np.ndarray]] = {"auroc": [], "auprc": []}
    for start in range(0, n_resamples if both else 0, chunk):
        r = min(chunk, n_resamples - start)
        draws = rng.integers(0, n, size=(r, n))
        weights = np.zeros((r, n))
        np.add.at(weights, (np.arange(r)[:, None], draws), 1.0)
        values["auroc"].append(_weighted_auroc(positive, score, weights))
        values["auprc"].append(_weighted_average_precision(positive, score, weights))
    alpha = (1.0 - level) / 2.0
    intervals: dict = {}
    for name, chunks in values.items():
        v = np.concatenate(chunks) if chunks else np.array([])
        ok = np.isfinite(v)
        intervals[name] = ([float(np.quantile(v[ok], alpha)), float(np.quantile(v[ok], 1 - alpha))]
                           if len(v) and ok.mean() >= 0.5 else None)
    intervals.update(n_resamples=int(n_resamples), level=float(level), seed=int(seed),
                     method="percentile bootstrap over rows")
    out["intervals"] = intervals
    return out


def weighted_metrics(y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray,
                     classes: Sequence, weights: np.ndarray) -> dict[str, np.ndarray]:
    """The scalar metrics for each row of ``weights`` (shape (r, n): how often each row counts).

    Integer weights are resampling with replacement: the result for a weight row equals
    scikit-learn's metric on the rows repeated that many times. Undefined values are NaN.
    """
    classes = list(classes)
    k = len(classes)
    true_idx = _class_index(y_true, classes)
    pred_idx = _class_index(y_pred, classes)
    cells = np.zeros((len(y_true), k * k))
    cells[np.arange(len(y_true)), true_idx * k + pred_idx] = 1.0
    cm = (weights @ cells).reshape(-1, k, k)  # (r, true, pred)
    total = cm.sum(axis=(1, 2))
    correct = np.trace(cm, axis1=1, axis2=2)
    t, p = cm.sum(axis=2), cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        # scikit-learn's multi-class MCC (Gorodkin's R_K); 0 when undefined, as scikit-learn.
        cov_ytyp = correct * total - (t * p).sum(axis=1)
        cov_ypyp = total**2 - (p * p).sum(axis=1)
        cov_ytyt = total**2 - (t * t).sum(axis=1)
        denom = np.sqrt(cov_ytyt * cov_ypyp)
        mcc = np.where(denom > 0, cov_ytyp / np.where(denom > 0, denom, 1.0), 0.0)
        tp = np.diagonal(cm, axis1=1, axis2=2)
        f1_denom = t + p
        f1_class = np.where(f1_denom > 0, 2 * tp / np.where(f1_denom > 0, f1_denom, 1.0), 0.0)
    f1 = f1_class[:, 1] if k == 2 else f1_class.mean(axis=1)
    if k == 2:
        positive = true_idx == 1
        auroc = _weighted_auroc(positive, proba[:, 1], weights)
        auprc = _weighted_average_precision(positive, proba[:, 1], weights)
    else:
        auroc = np.mean([_weighted_auroc(true_idx == c, proba[:, c], weights)
                         for c in range(k)], axis=0)
        auprc = np.mean([_weighted_average_precision(true_idx == c, proba[:, c], weights)
                         for c in range(k)], axis=0)
    return {"mcc": mcc, "auroc": auroc, "auprc": auprc, "accuracy": correct / total, "f1": f1}


def _class_index(labels: np.ndarray, classes: list) -> np.ndarray:
    lookup = {c: i for i, c in enumerate(classes)}
    return np.array([lookup[c] for c in labels.tolist()], dtype=np.int64)


def _tie_groups(score: np.ndarray, descending: bool) -> tuple[np.ndarray, np.ndarray]:
    """Sort order of ``score`` and the start of each run of equal scores in that order."""
    order = np.argsort(-score if descending else score, kind="mergesort")
    s = score[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    return order, starts


def _weighted_auroc(positive: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Area under the ROC curve per weight row: P(score_pos > score_neg) + ½ P(tie)."""
    order, starts = _tie_groups(score, descending=False)
    w = weights[:, order]
    pos_in_group = np.add.reduceat(w * positive[order], starts, axis=1)
    neg_in_group = np.add.reduceat(w * ~positive[order], starts, axis=1)
    neg_below = np.cumsum(neg_in_group, axis=1) - neg_in_group
    n_pos, n_neg = pos_in_group.sum(axis=1), neg_in_group.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos_in_group * (neg_below + 0.5 * neg_in_group)).sum(axis=1) / (n_pos * n_neg)


def _weighted_average_precision(positive: np.ndarray, score: np.ndarray,
                                weights: np.ndarray) -> np.ndarray:
    """scikit-learn's average precision, sum over thresholds of ΔRecall × Precision, per row."""
    order, starts = _tie_groups(score, descending=True)
    w = weights[:, order]
    tp = np.cumsum(np.add.reduceat(w * positive[order], starts, axis=1), axis=1)
    fp = np.cumsum(np.add.reduceat(w * ~positive[order], starts, axis=1), axis=1)
    n_pos = tp[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        # A threshold whose group was not drawn adds no recall, so its precision never counts.
        precision = np.where(tp + fp > 0, tp / np.where(tp + fp > 0, tp + fp, 1.0), 0.0)
        recall_step = np.diff(tp, axis=1, prepend=0.0) / n_pos
        return (recall_step * precision).sum(axis=1)


def summarize_runs(results: Sequence[Mapping]) -> dict:
    """Mean and standard deviation of each scalar metric over runs (folds × seeds).

    Parameters
    ----------
    results : sequence of dict
        Outputs of :func:`classification_metrics`, one per fold and seed.

    Returns
    -------
    dict
        ``{metric: {"mean": m, "std": s, "n": k}}``; the standard deviation is the sample one
        (ddof=1), over the ``k`` runs where the metric was defined.
    """
    out = {}
    for name in SCALAR_METRICS:
        v = np.array([r[name] for r in results if r.get(name) is not None], dtype=np.float64)
        out[name] = {"mean": float(v.mean()) if len(v) else None,
                     "std": float(v.std(ddof=1)) if len(v) > 1 else None,
                     "n": int(len(v))}
    return out
