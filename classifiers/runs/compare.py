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
from classifiers.report import write_compare_report
from classifiers.runs.directory import REPORT_FILE
from classifiers.runs.record import Estimate, RunRecord
from embedcache.errors import InputError

__all__ = ["COMPARE_HEADER", "compare_cells", "compare_runs", "default_compare_dir"]

COMPARE_FILE = "compare.csv"


def compare_runs(run_dirs: Sequence[str | PathLike], *, out: str | PathLike | None = None,
                 force: bool = False) -> pd.DataFrame:
    """Runs side by side: a table of test metrics (cv: mean ± sd) and comparison plots.

    Parameters
    ----------
    run_dirs : sequence of path
        Run directories of ``fit``, ``cv``, ``evaluate`` or ``sweep`` (its best layer and
        pooling, chosen on validation).
    out : path, optional
        Where to write ``compare.csv``, ``report.html`` (the table, each run's notes and the
        figures on one page), ``metrics.png``, ``mcc_by_layer.png``, ``auroc_by_layer.png``
        and (binary fit runs) ``roc.png``; nothing is written without.
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
        table.to_csv(staging / COMPARE_FILE, index=False)
        records = table.to_dict("records")
        plots.save_png(plots.metric_bars_figure(records, SCALAR_METRICS), staging / "metrics.png")
        # A layer-weighted run has no single layer: it is in the bars, not on the layer axis.
        by_layer = [r for r in records if isinstance(r["layer"], int)]
        for metric in ("mcc", "auroc") if by_layer else ():  # zero-shot llr runs alone: no layer axis
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
        figures = {caption: staging / name for caption, name in _FIGURES.items()
                   if (staging / name).is_file()}
        notes = [(d.name, note) for d, run in runs
                 for note in (*run.get("warnings", []), run.overfitting()) if note]
        write_compare_report(staging / REPORT_FILE, COMPARE_HEADER,
                             [[c.text() if isinstance(c, Estimate) else c for c in compare_cells(r)]
                              for r in records], notes, figures)
    return table


_FIGURES = {"test metrics": "metrics.png", "MCC by layer": "mcc_by_layer.png",
            "AUROC by layer": "auroc_by_layer.png", "ROC": "roc.png",
            "precision-recall": "precision_recall.png"}


def default_compare_dir(run_dirs: Sequence[str | PathLike]) -> Path:
    """Where ``classify compare`` writes by default: ``compare-<run>-<run>...`` in the current
    directory, named for the runs (the first three, then how many more), so comparing other
    runs does not meet this one, and ``compare runs/*`` does not take it for a run."""
    names = [Path(d).resolve().name for d in run_dirs]
    name = "-".join(names[:3]) + (f"-and-{len(names) - 3}-more" if len(names) > 3 else "")
    return Path(f"compare-{name[:100]}")


#: The columns of :func:`compare_cells`.
COMPARE_HEADER = ("run", "kind", "model", "backbone", "layer", "pool", "n",
                  *[m.upper() for m in SCALAR_METRICS], "k-mer MCC", "majority MCC")


def compare_cells(row: dict) -> list:
    """One compare table row as cells under :data:`COMPARE_HEADER`: text, and the metrics as
    Estimates (cv: mean ± sd, else value and interval) for the caller to format."""
    cells = [row["name"], row["kind"], row["model"], str(row["backbone"]), str(row["layer"]),
             row["pool"], str(row["n"])]
    for m in SCALAR_METRICS:
        value, low, high = (_number(row[k]) for k in (m, f"{m}_low", f"{m}_high"))
        # compare's columns hold intervals; for cv they are mean ± sd.
        sd = None if row["kind"] != "cv" or value is None or high is None else high - value
        cells.append(Estimate(value, sd=sd) if sd is not None else Estimate(value, low, high))
    return cells + [Estimate(_number(row["kmer_logistic_mcc"])),
                    Estimate(_number(row["majority_mcc"]))]


def _number(value):
    """A table cell as a float, or None when pandas holds a missing value."""
    return None if value is None or value != value else float(value)


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
