"""Figures of a run: ROC, precision-recall, confusion matrix, loss curves, run comparisons,
metric by layer (compare, sweep) and learned layer weights (attention heatmaps:
:mod:`embedcache.attention_plot`).

Figures are built with Matplotlib's object API (``matplotlib.figure.Figure``), which renders
with the Agg backend and touches no global pyplot state, so plotting works on a headless
machine and inside threads. Every function returns the Figure; :func:`save_png` writes one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from os import PathLike

import numpy as np
from matplotlib.figure import Figure
from sklearn import metrics as skm

from embedcache.util.ranges import FINAL, layer_order

__all__ = [
    "confusion_matrix_figure",
    "layer_weights_figure",
    "loss_curves_figure",
    "metric_by_layer_figure",
    "metric_bars_figure",
    "precision_recall_figure",
    "roc_figure",
    "save_png",
    "sweep_figure",
]

Curve = tuple[np.ndarray, np.ndarray]  # (true 0/1, score)


def roc_figure(curves: Mapping[str, Curve], *, title: str = "ROC") -> Figure:
    """ROC curves, one per named (binary truth, score) pair, with their AUROC in the legend.

    Parameters
    ----------
    curves : mapping of str to (ndarray, ndarray)
        Label of the curve -> (true class as 0/1 or bool, score of the positive class).
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = Figure(figsize=(5, 4.6), layout="constrained")
    ax = fig.add_subplot()
    for name, (truth, score) in curves.items():
        if len(np.unique(truth)) < 2:
            continue
        fpr, tpr, _ = skm.roc_curve(truth, score)
        ax.plot(fpr, tpr, label=f"{name} (AUROC {skm.roc_auc_score(truth, score):.3f})")
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title,
           xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize="small")
    return fig


def precision_recall_figure(curves: Mapping[str, Curve], *, title: str = "Precision-recall"
                            ) -> Figure:
    """Precision-recall curves with their average precision (AUPRC) in the legend.

    Parameters
    ----------
    curves : mapping of str to (ndarray, ndarray)
        As for :func:`roc_figure`.
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = Figure(figsize=(5, 4.6), layout="constrained")
    ax = fig.add_subplot()
    prevalence = None
    for name, (truth, score) in curves.items():
        if not np.any(truth):
            continue
        precision, recall, _ = skm.precision_recall_curve(truth, score)
        ap = skm.average_precision_score(truth, score)
        ax.step(recall, precision, where="post", label=f"{name} (AUPRC {ap:.3f})")
        prevalence = float(np.mean(truth))
    if prevalence is not None:
        ax.axhline(prevalence, color="0.6", lw=0.8, ls="--", label="chance (prevalence)")
    ax.set(xlabel="recall", ylabel="precision", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower left", fontsize="small")
    return fig


def confusion_matrix_figure(matrix: Sequence[Sequence[int]], classes: Sequence[str], *,
                            title: str = "Confusion matrix") -> Figure:
    """A confusion matrix (rows true, columns predicted) with counts and row percentages.

    Parameters
    ----------
    matrix : (k, k) array-like of int
    classes : sequence of str
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    cm = np.asarray(matrix, dtype=np.int64)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    k = len(classes)
    fig = Figure(figsize=(2.2 + 0.9 * k, 1.8 + 0.9 * k), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{cm[i, j]}\n{100 * share[i, j]:.0f}%", ha="center", va="center",
                    color="white" if share[i, j] > 0.6 else "black", fontsize="small")
    ax.set_xticks(range(k), [str(c) for c in classes], rotation=30, ha="right")
    ax.set_yticks(range(k), [str(c) for c in classes])
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(image, ax=ax, label="share of true class", shrink=0.8)
    return fig


def loss_curves_figure(history: Mapping[str, Sequence[float]], *, best_epoch: int | None = None,
                       title: str = "MLP loss") -> Figure:
    """Training and validation loss per epoch, with the kept epoch marked.

    Parameters
    ----------
    history : mapping
        ``epoch``, ``train_loss`` and optionally ``val_loss`` lists.
    best_epoch : int, optional
        The epoch whose parameters were kept.
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = Figure(figsize=(5, 3.6), layout="constrained")
    ax = fig.add_subplot()
    epochs = history["epoch"]
    ax.plot(epochs, history["train_loss"], marker="o", label="train")
    if history.get("val_loss"):
        ax.plot(epochs, history["val_loss"], marker="o", label="validation")
    if best_epoch is not None:
        ax.axvline(best_epoch, color="0.5", ls=":", label=f"kept (epoch {best_epoch})")
    ax.set(xlabel="epoch", ylabel="cross-entropy", title=title)
    ax.legend(fontsize="small")
    return fig


def metric_bars_figure(rows: Sequence[Mapping], metrics: Sequence[str], *,
                       title: str = "Test metrics") -> Figure:
    """Runs side by side: one panel per metric, one bar per run, 95% intervals as error bars.

    Parameters
    ----------
    rows : sequence of mapping
        Per run: ``name`` and, per metric, ``metric`` (value) and optionally
        ``metric_low``/``metric_high``.
    metrics : sequence of str
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = Figure(figsize=(3.2 * len(metrics), 0.9 + 0.35 * max(len(rows), 3)),
                 layout="constrained")
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    names = [r["name"] for r in rows]
    y = np.arange(len(rows))
    for ax, metric in zip(axes, metrics):
        value = np.array([np.nan if r.get(metric) is None else r[metric] for r in rows], float)
        low = np.array([r.get(f"{metric}_low", np.nan) or np.nan for r in rows], float)
        high = np.array([r.get(f"{metric}_high", np.nan) or np.nan for r in rows], float)
        err = np.vstack([value - low, high - value])
        ax.barh(y, value, xerr=np.where(np.isfinite(err), err, 0), color="tab:blue",
                alpha=0.8, capsize=3)
        ax.set(title=metric.upper(), xlim=(min(0.0, np.nanmin(value, initial=0)), 1.0))
        ax.axvline(0, color="0.3", lw=0.6)
    axes[0].set_yticks(y, names)
    axes[0].invert_yaxis()
    fig.suptitle(title)
    return fig


def metric_by_layer_figure(rows: Sequence[Mapping], metric: str, *,
                           title: str | None = None) -> Figure:
    """A metric against the backbone layer, one line per series (model × pooling × backbone).

    Parameters
    ----------
    rows : sequence of mapping
        Per run: ``series`` (str), ``layer`` (int), ``metric`` and optionally
        ``metric_low``/``metric_high`` (drawn as error bars).
    metric : str
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    for series in sorted({r["series"] for r in rows}):
        pts = sorted((r for r in rows if r["series"] == series and r.get(metric) is not None),
                     key=lambda r: r["layer"])
        if not pts:
            continue
        layers = [r["layer"] for r in pts]
        value = np.array([r[metric] for r in pts], dtype=float)
        low = np.array([np.nan if r.get(f"{metric}_low") is None else r[f"{metric}_low"]
                        for r in pts], dtype=float)
        high = np.array([np.nan if r.get(f"{metric}_high") is None else r[f"{metric}_high"]
                         for r in pts], dtype=float)
        err = np.nan_to_num(np.vstack([value - low, high - value]))
        ax.errorbar(layers, value, yerr=err, marker="o", capsize=4, label=series)
    ax.set(xlabel="layer", ylabel=f"test {metric.upper()}",
           title=title or f"Test {metric.upper()} by layer")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize="small")
    return fig


def sweep_figure(rows: Sequence[Mapping], metric: str, *, best: Mapping | None = None,
                 baselines: Mapping[str, float | None] | None = None) -> Figure:
    """A sweep's metric by layer, one colour per pooling: test with its interval as a band,
    validation dashed, the (layer, pooling) chosen on validation starred, and the baselines'
    test scores as horizontal reference lines; the legend sits beside the axes, off the data.

    Parameters
    ----------
    rows : sequence of mapping
        The sweep's rows: ``layer``, ``pool``, ``metrics`` and ``intervals`` per split.
    metric : str
    best : mapping, optional
        ``layer`` and ``pool`` of the chosen row.
    baselines : mapping of str to float, optional
        Baseline name -> its test score on the same split (None: not defined, not drawn).

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = Figure(figsize=(8.4, 4), layout="constrained")
    ax = fig.add_subplot()
    # NTv3's "final" output is drawn one step past the deepest numbered layer.
    numbered = [r["layer"] for r in rows if r["layer"] != FINAL]
    x_of = {FINAL: max(numbered, default=0) + 1}
    for i, pool in enumerate(dict.fromkeys(r["pool"] for r in rows)):
        pts = sorted((r for r in rows if r["pool"] == pool), key=lambda r: layer_order(r["layer"]))
        layers = [x_of.get(r["layer"], r["layer"]) for r in pts]

        def values(split, key=None):
            out = []
            for r in pts:
                if key is None:
                    v = r["metrics"][split].get(metric)
                else:
                    v = (r["intervals"][split].get(metric) or [None, None])[key]
                out.append(np.nan if v is None else v)
            return np.array(out, dtype=float)

        colour = f"C{i}"
        ax.fill_between(layers, values("test", 0), values("test", 1), color=colour, alpha=0.2,
                        lw=0, label=f"{pool}: test 95% interval")
        ax.plot(layers, values("test"), marker="o", color=colour, label=f"{pool}: test")
        ax.plot(layers, values("validation"), ls="--", color=colour, alpha=0.8,
                label=f"{pool}: validation")
        if best is not None and best["pool"] == pool:
            chosen = next(r for r in pts if r["layer"] == best["layer"])
            ax.plot([x_of.get(best["layer"], best["layer"])],
                    [chosen["metrics"]["validation"].get(metric)], marker="*",
                    ms=16, color=colour, ls="none", label="chosen on validation")
    # Grey reference lines, not pooling colours: a baseline does not depend on the layer.
    for (name, value), style in zip((baselines or {}).items(), (":", "-.", (0, (5, 2)))):
        if value is not None and np.isfinite(value):
            ax.axhline(value, color="0.35", ls=style, lw=1.3,
                       label=f"baseline {name}: test {value:.3f}")
    ax.set(xlabel="layer", ylabel=metric.upper(), title=f"{metric.upper()} by layer")
    ax.xaxis.get_major_locator().set_params(integer=True)
    if len(numbered) < len(rows):
        ticks = sorted(set(numbered))
        ax.set_xticks([*ticks, x_of[FINAL]], [*map(str, ticks), FINAL])
    # A figure legend "outside": constrained layout makes room for it beside the axes.
    fig.legend(*ax.get_legend_handles_labels(), loc="outside right upper", fontsize="x-small")
    return fig


def layer_weights_figure(layers: Sequence[int], weights: Sequence[float]) -> Figure:
    """The layer-weighted probe's learned softmax weights, one bar per layer."""
    fig = Figure(figsize=(6, 3.2), layout="constrained")
    ax = fig.add_subplot()
    ax.bar([str(l) for l in layers], weights, color="tab:blue")
    ax.axhline(1 / len(layers), color="0.4", ls="--", lw=0.8, label="even mix")
    ax.set(xlabel="layer", ylabel="weight", title="Learned layer weights (sum to 1)")
    ax.legend(fontsize="small")
    return fig


def save_png(fig: Figure, path: str | PathLike, *, dpi: int = 110) -> None:
    """Write a figure as PNG."""
    fig.savefig(path, format="png", dpi=dpi)
