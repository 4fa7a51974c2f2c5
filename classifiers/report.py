"""The one-page HTML report of a run: warnings, metrics with intervals, baselines, figures,
train–test overlap and provenance, all from the run record and its PNG files.

The page is self-contained (figures embedded as base64 PNG), so it can be mailed or archived
without the run directory.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from html import escape
from os import PathLike
from pathlib import Path

from classifiers.metrics import SCALAR_METRICS

__all__ = ["render_compare_report", "render_report", "write_compare_report", "write_report"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; }
h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; overflow-wrap: anywhere; }
table.metrics { font-size: 0.85em; } table.metrics td { white-space: nowrap; }
th:first-child, td:first-child { text-align: left; white-space: nowrap; }
table.kv td { text-align: left; }
.warning { background: #fff0f0; border: 2px solid #c00; padding: 0.7em 1em; font-weight: 600; }
.note { color: #555; font-size: 0.9em; }
.overfit { background: #fff8e0; border: 2px solid #c80; padding: 0.7em 1em; }
.best { background: #eef6ee; border: 1px solid #5a5; padding: 0.5em 1em; }
.figures img { max-width: 48%; margin: 0.5%; border: 1px solid #eee; }
code { font-size: 0.9em; }
"""

_NOTES = {
    "cv": "mean ± standard deviation over all folds and seeds.",
    "interval": "[low, high]: {level} {method} interval, {n} resamples, seed {seed}.",
    "baselines": "Baselines are fitted on the same split: majority always answers the most "
                 "frequent training class; kmer_logistic feeds frequencies of all k-mers, "
                 "k = 1..6, into a logistic regression. The probe must beat these to show what "
                 "the language model adds.",
    "classes": "Classes: {classes}; binary tasks score the second class as positive; "
               "multi-class F1 and AUPRC are macro averages, AUROC one-vs-rest macro.",
}


def render_report(run, figures: Mapping[str, str | PathLike]) -> str:
    """The HTML text of a run's report.

    Parameters
    ----------
    run : classifiers.runs.record.RunRecord
        The run record (read with :func:`classifiers.runs.read_run` from a run directory).
    figures : mapping of str to path
        Caption -> PNG file, embedded in this order.

    Returns
    -------
    str
    """
    title = run.title()
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
             f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>"]
    for warning in run.warnings:
        parts.append(f"<p class='warning'>{escape(warning)}</p>")
    if run.overfitting():
        parts.append(f"<p class='overfit'>{escape(run.overfitting())}</p>")
    if run.kind == "sweep":
        # The answer to "which layer?" first: the choice and the metric-by-layer figures.
        parts.append(_best_section(run))
        parts.append(_figures_section(figures))
    parts.append(_metrics_section(run))
    if run.layer_weights:
        rows = [[escape(layer), f"{w:.3f}"] for layer, w in run.layer_weights.items()]
        parts.append("<h2>Learned layer weights</h2>" + _table(["layer", "weight"], rows)
                     + "<p class='note'>Softmax weights over the layers' standardized pooled "
                       "embeddings, learned jointly with the head; they sum to 1.</p>")
    parts.append(_confusion_section(run))
    parts.append(_overlap_section(run))
    if run.kind != "sweep":
        parts.append(_figures_section(figures))
    parts.append(_provenance_section(run))
    parts.append("</body></html>\n")
    return "".join(parts)


def write_report(path: str | PathLike, run, figures: Mapping[str, str | PathLike]
                 ) -> None:
    """Write :func:`render_report` to ``path``."""
    Path(path).write_text(render_report(run, figures), encoding="utf-8")


def render_compare_report(header: Sequence[str], rows: Sequence[Sequence[str]],
                          notes: Sequence[tuple[str, str]],
                          figures: Mapping[str, str | PathLike]) -> str:
    """The HTML text of ``classify compare``'s report: the table, each run's warnings and
    notes, and the comparison figures.

    Parameters
    ----------
    header : sequence of str
    rows : sequence of sequence of str
        The table's cells, as text.
    notes : sequence of (run name, note)
    figures : mapping of str to path
        Caption -> PNG file, embedded in this order.
    """
    title = f"{len(rows)} classify runs compared"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
             f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>"]
    for name, note in notes:
        css = "overfit" if note.startswith("overfitting") else "warning"
        parts.append(f"<p class='{css}'>{escape(name)}: {escape(note)}</p>")
    parts.append("<h2>Test metrics</h2>"
                 + _table(header, [[escape(c) for c in row] for row in rows], "metrics")
                 + "<p class='note'>fit and evaluate: value [95% bootstrap interval]; cv: mean ± "
                   "sd over folds and seeds; sweep: the layer and pooling chosen on validation. "
                   "Baselines are fitted on each run's own split.</p>")
    parts.append(_figures_section(figures))
    parts.append("</body></html>\n")
    return "".join(parts)


def write_compare_report(path: str | PathLike, header, rows, notes, figures) -> None:
    """Write :func:`render_compare_report` to ``path``."""
    Path(path).write_text(render_compare_report(header, rows, notes, figures), encoding="utf-8")


def _figures_section(figures: Mapping[str, str | PathLike]) -> str:
    if not figures:
        return ""
    parts = ["<h2>Figures</h2><div class='figures'>"]
    for caption, path in figures.items():
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        parts.append(f"<img alt='{escape(caption)}' title='{escape(caption)}' "
                     f"src='data:image/png;base64,{data}'>")
    parts.append("</div>")
    return "".join(parts)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], css: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table class='{css}'><tr>{head}</tr>{body}</table>"


def _metrics_section(run) -> str:
    rows = [[escape(r.label), "" if r.n is None else str(r.n)]
            + [escape(r.metrics[m].text()) for m in SCALAR_METRICS] for r in run.score_rows()]
    out = ["<h2>Metrics</h2>",
           _table(["", "n", *[m.upper() for m in SCALAR_METRICS]], rows, "metrics")]
    notes = []
    if run.kind == "cv":
        cv = run.cv
        notes.append(f"{cv.folds} folds × {len(cv.seeds)} seeds ({cv.splitter}), "
                     f"{cv.n_rows} rows; " + _NOTES["cv"])
    else:
        ci = (run.intervals or {}).get("test") or {}
        if run.kind == "sweep":
            ci = run.best_row().intervals["test"]
        if ci:
            notes.append(_NOTES["interval"].format(level=ci.get("level", 0.95),
                                                   method=ci.get("method", "bootstrap"),
                                                   n=ci.get("n_resamples"), seed=ci.get("seed")))
    notes.append(_NOTES["classes"].format(classes=", ".join(run.task.classes)))
    notes.append(_NOTES["baselines"])
    out.append("".join(f"<p class='note'>{escape(n)}</p>" for n in notes))
    return "".join(out)


def _best_section(run) -> str:
    best = run.best
    score = ", ".join(f"{m.upper()} {v:.3f}" for m, v in best.validation.items()
                      if v is not None)
    command = best.fit_command or (f"classify fit --probe {run.model.kind} "
                                   f"--layer {best.layer} --pool {best.pool}")
    return (f"<p class='best'>Chosen on {escape(best.by)} (never on test): layer "
            f"{best.layer}, {escape(best.pool)} pooling (validation {escape(score)}). Fit "
            f"the same probe there with <code>{escape(command)}</code>.</p>")


def _confusion_section(run) -> str:
    values = run.metrics or {}
    test = values.get("test") or values.get("evaluation")
    if not test or not test.get("confusion_matrix"):
        return ""
    classes = test.get("classes", [])
    cm_rows = [[escape(c)] + [str(v) for v in row]
               for c, row in zip(classes, test["confusion_matrix"])]
    return ("<h2>Confusion matrix (test; rows true, columns predicted)</h2>"
            + _table(["", *classes], cm_rows))


def _overlap_section(run) -> str:
    dup = run.duplicates
    if not dup:
        return ""
    rows = [[escape(k.replace("_", " ")), escape(str(v))] for k, v in dup.items()]
    return ("<h2>Sequences shared between splits (by content)</h2>" + _table(["", ""], rows)
            + "<p class='note'>\"In train\" counts test rows whose sequence is in the train or "
              "validation split (both are seen while fitting). Shared sequences inflate test "
              "metrics; <code>--dedup-test</code> drops them.</p>")


def _provenance_section(run) -> str:
    prov, features, task = run.provenance, run.features, run.task
    rows = [["store", escape(str(features.store))],
            ["backbone", escape(json.dumps(features.backbone, sort_keys=True))],
            ["layer", escape(run.layer_text())],
            ["pooling", escape(str(features.pool))]]
    if features.variants:
        rows.append(["variant features", escape(json.dumps(features.variants, sort_keys=True))])
    for role, f in task.files.items():
        rows.append([f"{escape(role)} file", f"{escape(f['path'])}<br><code>sha256 "
                     f"{escape(f['sha256'])}</code>"])
    rows.append(["splits", escape(str(task.split_source))])
    rows.append(["model", escape(json.dumps(run.model.params, sort_keys=True))])
    rows.append(["command", f"<code>{escape(str(prov.command))}</code>"])
    rows.append(["created", escape(str(prov.created))])
    rows.append(["versions", escape(", ".join(f"{k} {v}" for k, v in prov.versions.items()))])
    enc = run.encoding
    rows.append(["run encoding", escape(f"{enc.get('name')} v{enc.get('version')}")])
    return "<h2>Provenance</h2>" + _table(["", ""], rows, "kv")
