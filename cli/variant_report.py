"""The report of `embedcache variants --report`: the classifiers library's evaluation of the
score columns (AUROC/AUPRC with intervals, plots, metrics.json, report.html), and the lines to print.

Apart from :mod:`cli.embedcache_app` so that the embedding command line imports the classifiers
library only when a report is asked for.
"""

from __future__ import annotations

from classifiers.variant_eval import evaluate_variant_scores, write_variant_report

__all__ = ["report_variant_scores"]


def report_variant_scores(table, out, *, positive, provenance) -> list[str]:
    """Evaluate every score column of ``table`` against its ``label``; write the report; the summary lines."""
    columns = [c for c in table.columns if c == "llr" or c.startswith(("cosine_", "l2_"))]
    evaluation = evaluate_variant_scores(table, columns, positive=positive)
    files = write_variant_report(out, table, evaluation, positive=positive, provenance=provenance)
    lines = [f"{name}: AUROC {m['auroc']:.3f} AUPRC {m['auprc']:.3f} (n {m['n']}, {m['n_positive']} positive)"
             if m["auroc"] is not None else f"{name}: AUROC undefined (one class)"
             for name, m in evaluation["scores"].items()]
    return lines + [f"report: {files['report']} ({evaluation['n_missing_label']} unlabelled left out)"]
