"""``classify compare``: runs side by side, from their run records."""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import pandas as pd

from classifiers import plots
from classifiers.baselines import BASELINES
from classifiers.metrics import SCALAR_METRICS
from classifiers.runs.directory import PREDICTIONS_FILE, staged
from classifiers.runs.record import RunRecord
from embedcache.errors import InputError

__all__ = ["compare_runs"]


def compare_runs(run_dirs: Sequence[str | PathLike], *, out: str | PathLike | None = None,
                 force: bool = False) -> pd.DataFrame:
    """Runs side by side: a table of test metrics (cv: mean ± sd) and comparison plots.

    Parameters
    ----------
    run_dirs : sequence of path
        Run directories of ``fit``, ``cv``, ``evaluate`` or ``sweep`` (its best layer and
        pooling, chosen on validation).
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
    runs = [(Path(d), RunRecord.read(d)) for d in run_dirs]
    table = pd.DataFrame([_row(d, run) for d, run in runs])
    if out is None:
        return table
    with staged(out, force) as staging:
        table.to_csv(staging / "compare.csv", index=False)
        records = table.to_dict("records")
        plots.save_png(plots.metric_bars_figure(records, SCALAR_METRICS), staging / "metrics.png")
        # A layer-weighted run has no single layer: it is in the bars, not on the layer axis.
        by_layer = [r for r in records if isinstance(r["layer"], int)]
        for metric in ("mcc", "auroc"):
            # fit, cv and evaluate numbers come from different rows: separate lines.
            series = [{**r, "series": " · ".join([r["model"], r["pool"], str(r["backbone"])]
                                                  + ([] if r["kind"] == "fit" else [r["kind"]]))}
                      for r in by_layer]
            plots.save_png(plots.metric_by_layer_figure(series, metric),
                           staging / f"{metric}_by_layer.png")
        curves = {}
        for d, run in runs:
            if run.kind not in ("fit", "evaluate") or len(run["task"]["classes"]) != 2:
                continue
            pred = pd.read_csv(d / PREDICTIONS_FILE)
            pred = pred[pred["split"] == ("evaluation" if run.kind == "evaluate" else "test")]
            positive = pred["label"].astype(str) == run["task"]["classes"][1]
            curves[d.name] = (positive.to_numpy(), pred["score"].to_numpy())
        if curves:
            plots.save_png(plots.roc_figure(curves, title="ROC, test sets"), staging / "roc.png")
            plots.save_png(plots.precision_recall_figure(
                curves, title="Precision-recall, test sets"), staging / "precision_recall.png")
    return table


def _row(run_dir: Path, run: RunRecord) -> dict:
    backbone = run["features"]["backbone"]
    layer, pool = run.chosen_features()
    headline = run.headline()
    row = {"name": run_dir.name, "kind": run.kind, "model": run["model"]["kind"],
           "backbone": backbone.get("name") or backbone["key"],
           "layer": layer if isinstance(layer, int) else run.layer_text(), "pool": pool,
           "n": headline.n}
    for m in SCALAR_METRICS:
        estimate = headline.metrics[m]
        low, high = estimate.bounds()
        row.update({m: estimate.value, f"{m}_low": low, f"{m}_high": high})
    baselines = run.baseline_headlines()
    for name in BASELINES:
        for m in ("mcc", "auroc"):
            row[f"{name}_{m}"] = baselines[name].metrics[m].value if name in baselines else None
    return row
