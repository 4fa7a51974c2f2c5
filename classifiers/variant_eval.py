"""Evaluating zero-shot variant scores against labels: AUROC/AUPRC with intervals, plots, a report.

Larger distances and more negative ``llr`` count as more damaging: each score column is ranked
by ``sign * score`` with the sign of :data:`embedcache.variants.scores.DAMAGING_SIGN` (the
reported AUROC of ``llr`` is that of ``-llr``), so the reported numbers equal scikit-learn's on
the output's columns with that sign. Rows whose label is missing are left out and counted; rows
without a given score (``llr`` of an indel) are left out of that score's metrics and counted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from classifiers.metrics import ranking_metrics
from classifiers.plots import precision_recall_figure, roc_figure, save_png
from classifiers.report import _STYLE, _figures_section, _table
from embedcache.variants.labels import binary_labels
from embedcache.variants.scores import DAMAGING_SIGN

__all__ = ["evaluate_variant_scores", "score_sign", "write_variant_report"]

RANDOM_WEIGHTS_NOTE = ("Scores from a model with random weights show the pipeline, not biology: "
                       "expect AUROC near 0.5.")


def score_sign(column: str) -> float:
    """+1 for distance columns, -1 for ``llr`` (more negative = more damaging)."""
    return DAMAGING_SIGN[column.split("_", 1)[0]]


def evaluate_variant_scores(table: pd.DataFrame, columns: Sequence[str], *, label: str = "label",
                            positive: str | None = None, n_resamples: int = 1000, seed: int = 0) -> dict:
    """AUROC and AUPRC with 95% bootstrap intervals of every score column against ``label``."""
    is_pos, has = binary_labels(table[label].tolist(), positive)
    out: dict = {"n_variants": int(len(table)), "n_missing_label": int((~has).sum()),
                 "n_positive": int((is_pos & has).sum()), "positive": positive or "1", "seed": int(seed),
                 "scores": {}}
    for column in columns:
        score = table[column].to_numpy(dtype=np.float64)
        ok = has & np.isfinite(score)
        metrics = ranking_metrics(is_pos[ok], score_sign(column) * score[ok], n_resamples=n_resamples,
                                  seed=seed)
        metrics.update(sign=score_sign(column), n_without_score=int((has & ~np.isfinite(score)).sum()))
        out["scores"][column] = metrics
    return out


def write_variant_report(out: str | PathLike, table: pd.DataFrame, evaluation: Mapping, *,
                         label: str = "label", positive: str | None = None,
                         provenance: Mapping | None = None, store=None, backbone: Mapping | None = None,
                         command: str | None = None) -> dict[str, Path]:
    """``metrics.json``, ``roc.png``, ``pr.png`` and ``report.html`` in the directory ``out``.

    ``metrics.json`` is a classify run record of kind ``variants``
    (:meth:`~classifiers.runs.record.RunRecord.new_variant_scores`), so ``classify compare``
    reads it beside probe runs. ``provenance`` (``variants``, ``reference``, ``model``,
    ``model_key``, ``flank``, ``strands``, ``random_weights``) is shown in the report and fills
    the record; ``backbone`` (the store's model group, as runs record it) replaces its
    ``model``, ``model_key`` and ``random_weights`` there.
    """
    from classifiers.runs.record import RunRecord

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    provenance = dict(provenance or {})
    backbone = dict(backbone or {"name": provenance.get("model"), "key": provenance.get("model_key"),
                                 "random_weights": provenance.get("random_weights")})
    record = RunRecord.new_variant_scores(
        evaluation, store=store, backbone=backbone, command=command,
        files={"data": {"path": str(provenance.get("variants")), "rows": int(len(table))}},
        windows={k: provenance[k] for k in ("reference", "flank", "strands") if k in provenance})
    files = {"metrics": out / "metrics.json", "roc": out / "roc.png", "pr": out / "pr.png",
             "report": out / "report.html"}
    record.write(out)
    is_pos, has = binary_labels(table[label].tolist(), positive)
    curves = {}
    for column in evaluation["scores"]:
        score = table[column].to_numpy(dtype=np.float64)
        ok = has & np.isfinite(score)
        curves[("-" if score_sign(column) < 0 else "") + column] = (is_pos[ok], score_sign(column) * score[ok])
    save_png(roc_figure(curves, title="Variant scores: ROC"), files["roc"])
    save_png(precision_recall_figure(curves, title="Variant scores: precision-recall"), files["pr"])
    files["report"].write_text(_render(evaluation, provenance, {"ROC": files["roc"], "PR": files["pr"]}),
                               encoding="utf-8")
    return files


def _interval(value, interval) -> str:
    if value is None:
        return "undefined"
    return f"{value:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def _render(evaluation: Mapping, provenance: Mapping, figures: Mapping) -> str:
    title = "Variant effect scores"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
             f"<style>{_STYLE}</style></head><body><h1>{title}</h1>"]
    if provenance.get("random_weights"):
        parts.append(f"<p class='warning'>{escape(RANDOM_WEIGHTS_NOTE)}</p>")
    rows = [[escape(("-" if m["sign"] < 0 else "") + name), str(m["n"]), str(m["n_positive"]),
             escape(_interval(m["auroc"], m["intervals"]["auroc"])),
             escape(_interval(m["auprc"], m["intervals"]["auprc"])), str(m["n_without_score"])]
            for name, m in evaluation["scores"].items()]
    parts.append("<h2>Metrics</h2>" + _table(["score", "n", "positive", "AUROC [95% CI]", "AUPRC [95% CI]",
                                              "no score"], rows, "metrics"))
    parts.append(f"<p class='note'>{evaluation['n_variants']} variants; {evaluation['n_missing_label']} without "
                 f"a label left out; positive class {escape(str(evaluation['positive']))}. Larger distances and "
                 "more negative llr count as more damaging (the llr row is -llr). Intervals: percentile "
                 "bootstrap over rows.</p>")
    parts.append(_figures_section(figures))
    if provenance:
        parts.append("<h2>Provenance</h2>" + _table(["", ""], [[escape(str(k)), escape(str(v))]
                                                                for k, v in provenance.items()], "kv"))
    parts.append("</body></html>\n")
    return "".join(parts)
