"""The report of `embedcache variants --report`: the classifiers library's evaluation of the
score columns (AUROC/AUPRC with intervals, plots, metrics.json, report.html), and the lines to print.

Apart from :mod:`cli.embedcache_app` so that the embedding command line imports the classifiers
library only when a report is asked for.
"""

from __future__ import annotations

from classifiers.variant_eval import evaluate_variant_scores, write_variant_report

__all__ = ["report_variant_scores"]


def report_variant_scores(table, out, *, cache, positive, provenance, command) -> list[str]:
    """Evaluate every score column of ``table`` against its ``label``; write the report; the summary lines."""
    from classifiers.features import resolve_backbone

    columns = [c for c in table.columns if c == "llr" or c.startswith(("cosine_", "l2_"))]
    # The table's labels are 0/1 already (score_variants read them with --positive): the
    # evaluation ranks those, and records which value of the file was the positive class.
    evaluation = evaluate_variant_scores(table, columns)
    evaluation["positive"] = positive or "1"
    files = write_variant_report(out, table, evaluation, provenance=provenance, store=cache.path,
                                 backbone=resolve_backbone(cache, provenance["model_key"]), command=command)
    lines = [f"{name}: AUROC {m['auroc']:.3f} AUPRC {m['auprc']:.3f} (n {m['n']}, {m['n_positive']} positive)"
             if m["auroc"] is not None else f"{name}: AUROC undefined (one class)"
             for name, m in evaluation["scores"].items()]
    return lines + [f"report: {files['report']} ({evaluation['n_missing_label']} unlabelled left out)"]
