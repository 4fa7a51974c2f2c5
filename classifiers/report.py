"""The one-page HTML report of a run: warnings, metrics with intervals, baselines, figures,
train–test overlap and provenance, all from the run's ``metrics.json`` and its PNG files.

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

__all__ = ["render_report", "write_report"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.warning { background: #fff0f0; border: 2px solid #c00; padding: 0.7em 1em; font-weight: 600; }
.note { color: #555; font-size: 0.9em; }
.figures img { max-width: 48%; margin: 0.5%; border: 1px solid #eee; }
code { font-size: 0.9em; }
"""


def render_report(run: Mapping, figures: Mapping[str, str | PathLike]) -> str:
    """The HTML text of a run's report.

    Parameters
    ----------
    run : mapping
        The run's ``metrics.json`` content.
    figures : mapping of str to path
        Caption -> PNG file, embedded in this order.

    Returns
    -------
    str
    """
    kind = run.get("kind", "fit")
    features = run.get("features", {})
    backbone = features.get("backbone", {})
    title = (f"{run.get('model', {}).get('kind', '?')} probe on "
             f"{backbone.get('name') or backbone.get('key', '?')}, layer {features.get('layer')}, "
             f"{features.get('pool')} pooling — {kind}")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
             f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>"]
    for warning in run.get("warnings", []):
        parts.append(f"<p class='warning'>{escape(warning)}</p>")
    if kind == "cv":
        parts.append(_cv_section(run))
    else:
        parts.append(_metrics_section(run))
    parts.append(_overlap_section(run))
    if figures:
        parts.append("<h2>Figures</h2><div class='figures'>")
        for caption, path in figures.items():
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            parts.append(f"<img alt='{escape(caption)}' title='{escape(caption)}' "
                         f"src='data:image/png;base64,{data}'>")
        parts.append("</div>")
    parts.append(_provenance_section(run))
    parts.append("</body></html>\n")
    return "".join(parts)


def write_report(path: str | PathLike, run: Mapping, figures: Mapping[str, str | PathLike]
                 ) -> None:
    """Write :func:`render_report` to ``path``."""
    Path(path).write_text(render_report(run, figures), encoding="utf-8")


def _fmt(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _with_interval(value, interval) -> str:
    text = _fmt(value)
    if value is not None and interval:
        text += f" <span class='note'>[{_fmt(interval[0])}, {_fmt(interval[1])}]</span>"
    return text


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _metrics_section(run: Mapping) -> str:
    metrics = run.get("metrics", {})
    intervals = run.get("intervals", {}).get("test", {})
    header = ["split", "n", *[m.upper() for m in SCALAR_METRICS]]
    rows = []
    for split, values in metrics.items():
        ci = intervals if split in ("test", "evaluation") else {}
        rows.append([escape(split), str(values.get("n", ""))]
                    + [_with_interval(values.get(m), ci.get(m)) for m in SCALAR_METRICS])
    out = ["<h2>Metrics</h2>", _table(header, rows)]
    if intervals:
        out.append(f"<p class='note'>[low, high]: {escape(str(intervals.get('level', 0.95)))} "
                   f"{escape(intervals.get('method', 'bootstrap'))} interval, "
                   f"{intervals.get('n_resamples')} resamples, seed {intervals.get('seed')}. "
                   f"Classes: {escape(', '.join(run.get('task', {}).get('classes', [])))}; "
                   "binary tasks score the second class as positive; multi-class F1 and AUPRC "
                   "are macro averages, AUROC one-vs-rest macro.</p>")
    baselines = run.get("baselines", {})
    if baselines:
        brows = [["probe (" + escape(run.get("model", {}).get("kind", "")) + ")"]
                 + [_with_interval(metrics.get("test", {}).get(m), intervals.get(m))
                    for m in SCALAR_METRICS]]
        for name, b in baselines.items():
            test, ci = b["metrics"].get("test", {}), b.get("intervals", {})
            brows.append([escape(name)] + [_with_interval(test.get(m), ci.get(m))
                                           for m in SCALAR_METRICS])
        out += ["<h2>Baselines (same split, test set)</h2>",
                _table(["model", *[m.upper() for m in SCALAR_METRICS]], brows),
                "<p class='note'>majority: always the most frequent training class. "
                "kmer_logistic: frequencies of all k-mers, k = 1..6, into a logistic "
                "regression. The probe must beat these to show what the language model adds."
                "</p>"]
    test = metrics.get("test") or metrics.get("evaluation")
    if test and test.get("confusion_matrix"):
        classes = test.get("classes", [])
        cm_rows = [[escape(c)] + [str(v) for v in row]
                   for c, row in zip(classes, test["confusion_matrix"])]
        out += ["<h2>Confusion matrix (test; rows true, columns predicted)</h2>",
                _table(["", *classes], cm_rows)]
    return "".join(out)


def _cv_section(run: Mapping) -> str:
    cv = run.get("cv", {})
    header = ["model", *[m.upper() for m in SCALAR_METRICS]]

    def row(name, summary):
        return [escape(name)] + [
            "–" if summary[m]["mean"] is None else
            f"{summary[m]['mean']:.3f} ± {_fmt(summary[m]['std'])}" for m in SCALAR_METRICS]

    rows = [row(f"probe ({run.get('model', {}).get('kind', '')})", cv["summary"])]
    rows += [row(name, s) for name, s in cv.get("baseline_summaries", {}).items()]
    return ("<h2>Cross-validation</h2>"
            f"<p>{cv.get('folds')} folds × {len(cv.get('seeds', []))} seeds "
            f"({escape(cv.get('splitter', ''))}), {cv.get('n_rows')} rows; "
            "mean ± standard deviation over all folds and seeds.</p>" + _table(header, rows))


def _overlap_section(run: Mapping) -> str:
    dup = run.get("duplicates")
    if not dup:
        return ""
    rows = [[escape(k.replace("_", " ")), escape(str(v))] for k, v in dup.items()]
    return ("<h2>Sequences shared between splits (by content)</h2>" + _table(["", ""], rows)
            + "<p class='note'>\"In train\" counts test rows whose sequence is in the train or "
              "validation split (both are seen while fitting). Shared sequences inflate test "
              "metrics; <code>--dedup-test</code> drops them from the test set.</p>")


def _provenance_section(run: Mapping) -> str:
    prov = run.get("provenance", {})
    features = run.get("features", {})
    task = run.get("task", {})
    rows = [["store", escape(str(features.get("store")))],
            ["backbone", escape(json.dumps(features.get("backbone", {}), sort_keys=True))],
            ["layer", escape(str(features.get("layer")))],
            ["pooling", escape(str(features.get("pool")))]]
    for role, f in task.get("files", {}).items():
        rows.append([f"{escape(role)} file", f"{escape(f['path'])}<br><code>sha256 "
                     f"{escape(f['sha256'])}</code>"])
    rows.append(["splits", escape(str(task.get("split_source", "")))])
    rows.append(["model", escape(json.dumps(run.get("model", {}).get("params", {}),
                                            sort_keys=True))])
    rows.append(["command", f"<code>{escape(str(prov.get('command')))}</code>"])
    rows.append(["created", escape(str(prov.get("created")))])
    rows.append(["versions", escape(", ".join(f"{k} {v}" for k, v in
                                               prov.get("versions", {}).items()))])
    enc = run.get("encoding", {})
    rows.append(["run encoding", escape(f"{enc.get('name')} v{enc.get('version')}")])
    return "<h2>Provenance</h2>" + _table(["", ""], rows)
