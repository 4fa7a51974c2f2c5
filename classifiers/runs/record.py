"""The run record: what a run found and how, as ``metrics.json`` holds it.

One type, :class:`RunRecord`, is written and read here and nowhere else; the report, the
command line's tables and ``compare`` all take their numbers from its accessors
(:meth:`RunRecord.score_rows`, :meth:`RunRecord.headline`), and :class:`Estimate` is the one
place a value with its interval or spread is formatted.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from classifiers.metrics import SCALAR_METRICS
from embedcache.util.ranges import format_ranges
from embedcache.util.versions import distribution_version, package_versions
from classifiers.runs.directory import METRICS_FILE, jsonable, write_json
from embedcache.errors import InputError

__all__ = ["Estimate", "RUN_ENCODING", "RUN_ENCODING_VERSION", "RunRecord", "RunVersionError",
           "ScoreRow", "read_run"]

RUN_ENCODING = "embedcache-classify-run"
RUN_ENCODING_VERSION = 1
_KNOWN_VERSIONS = (1,)
KINDS = ("fit", "cv", "evaluate", "sweep", "variants")

#: Packages whose versions every run records.
PACKAGES = ("embedcache", "numpy", "scikit-learn", "xgboost", "jax", "optax", "zarr", "pandas",
            "matplotlib")

RANDOM_WEIGHTS_WARNING = (
    "RANDOM WEIGHTS: the backbone {name} (key {key}) was built with seeded random weights, not "
    "released ones. The pipeline is real, but these numbers say nothing about what the language "
    "model learned; put the released weights in the Hugging Face cache and build again.")


class RunVersionError(InputError):
    """A run directory written in a run encoding this release does not read."""


@dataclass(frozen=True)
class Estimate:
    """A metric's value with a bootstrap interval (``low``, ``high``) or a standard
    deviation (``sd``, cross-validation); either may be missing."""

    value: float | None
    low: float | None = None
    high: float | None = None
    sd: float | None = None

    def text(self, digits: int = 3) -> str:
        if self.value is None:
            return "–"
        out = f"{self.value:.{digits}f}"
        if self.sd is not None:
            return f"{out} ± {self.sd:.{digits}f}"
        if self.low is not None and self.high is not None:
            return f"{out} [{self.low:.{digits}f}, {self.high:.{digits}f}]"
        return out

    def bounds(self) -> tuple[float | None, float | None]:
        """(low, high): the interval, or mean ± sd."""
        if self.value is not None and self.sd is not None:
            return self.value - self.sd, self.value + self.sd
        return self.low, self.high


@dataclass(frozen=True)
class ScoreRow:
    """One line of a metrics table: a label, its row count, and an Estimate per metric."""

    label: str
    n: int | None
    metrics: dict[str, Estimate]


def _estimates(values: Mapping, intervals: Mapping | None = None) -> dict[str, Estimate]:
    intervals = intervals or {}
    out = {}
    for m in SCALAR_METRICS:
        low, high = (intervals.get(m) or [None, None])[:2]
        out[m] = Estimate(values.get(m), low, high)
    return out


def _summary_estimates(summary: Mapping) -> dict[str, Estimate]:
    return {m: Estimate(summary[m]["mean"], sd=summary[m]["std"] or 0.0) for m in SCALAR_METRICS}


class RunRecord(dict):
    """The content of a run's ``metrics.json`` (a dict, as JSON gives it) with typed views.

    Keys: ``encoding``, ``kind`` (fit, cv, evaluate, sweep, variants), ``warnings``, ``task``,
    ``features`` (store, backbone, layer — a list of layers for the layer-weighted probe —,
    pool), ``model``, ``provenance``, and by kind ``metrics``, ``intervals``, ``baselines``,
    ``duplicates``, ``cv``, ``sweep``, ``best``, ``layer_weights``, ``variant_scores``.
    """

    @classmethod
    def new(cls, kind, *, model, estimator, classes, files, table, split_source, seed, store,
            backbone, layer, pool, command, variants=None) -> RunRecord:
        """The common part of every record; the workflow adds its results. ``variants`` (a
        :class:`~classifiers.variant_task.VariantTask`): the features are a variant set's,
        recorded as ``features.variants``."""
        counts = table["split"].value_counts()
        warnings = []
        if backbone.get("random_weights"):
            warnings.append(RANDOM_WEIGHTS_WARNING.format(name=backbone["name"],
                                                          key=backbone["key"]))
        record = cls({
            "encoding": {"name": RUN_ENCODING, "version": RUN_ENCODING_VERSION},
            "kind": kind,
            "warnings": warnings,
            "task": {
                "files": files,
                "classes": [str(c) for c in classes],
                "rows": {s: int(counts.get(s, 0))
                         for s in ("train", "validation", "test", "evaluation")
                         if counts.get(s, 0)},
                "split_source": split_source,
                "seed": int(seed),
            },
            "features": {"store": store.path if isinstance(store.path, str) else str(Path(store.path).resolve()), "backbone": dict(backbone),
                         "layer": layer, "pool": pool},
            "model": {"kind": model, "params": jsonable(estimator.get_params())},
            "provenance": {
                "command": command or "(Python API)",
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "embedcache": distribution_version("embedcache"),
                "versions": package_versions(PACKAGES),
            },
        })
        if variants is not None:
            record["features"]["variants"] = variants.record()
        for attr in ("best_epoch_", "n_epochs_", "history_"):
            if hasattr(estimator, attr):
                record["model"][attr.rstrip("_")] = jsonable(getattr(estimator, attr))
        return record

    @classmethod
    def new_variant_scores(cls, evaluation: Mapping, *, store, backbone, files, windows,
                           command=None) -> RunRecord:
        """The record of ``embedcache variants --report`` (kind ``variants``): zero-shot scores,
        no probe. ``variant_scores`` is :func:`~classifiers.variant_eval.evaluate_variant_scores`'
        result; its first score (``llr`` when scored) is the run's headline, its layer and pool
        the record's; ``windows``: how the windows were cut (reference, flank, strands)."""
        scores = list(evaluation["scores"])
        layer, pool = _score_features(scores[0])
        backbone = dict(backbone or {})
        warnings = ([RANDOM_WEIGHTS_WARNING.format(name=backbone.get("name"), key=backbone.get("key"))]
                    if backbone.get("random_weights") else [])
        return cls({
            "encoding": {"name": RUN_ENCODING, "version": RUN_ENCODING_VERSION},
            "kind": "variants",
            "warnings": warnings,
            "task": {"files": files, "classes": ["0", "1"], "positive": evaluation["positive"],
                     "rows": {"evaluation": evaluation["n_variants"] - evaluation["n_missing_label"]},
                     "split_source": "zero-shot: nothing trained; every labelled allele evaluated",
                     "seed": int(evaluation.get("seed", 0))},
            "features": {"store": None if store is None or "://" in str(store) else str(Path(store).resolve()),
                         "backbone": backbone,
                         "layer": layer, "pool": pool, "windows": dict(windows)},
            "model": {"kind": f"zero-shot {_score_label(evaluation, scores[0])}", "params": {"scores": scores}},
            "provenance": {"command": command or "(Python API)",
                           "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                           "embedcache": distribution_version("embedcache"),
                           "versions": package_versions(PACKAGES)},
            "variant_scores": dict(evaluation),
        })

    @classmethod
    def read(cls, run_dir: str | PathLike, *, kind: str | None = None) -> RunRecord:
        """The record of a run directory, after checking its encoding, version and kind.

        Raises
        ------
        InputError
            Not a run directory, a damaged ``metrics.json``, or the wrong kind.
        RunVersionError
            Written in a run encoding version this release does not read.
        """
        path = Path(run_dir) / METRICS_FILE
        if not path.is_file():
            raise InputError(f"{run_dir} is not a classify run directory (no {METRICS_FILE}); "
                             "give a directory written by `classify fit` (its --out).")
        try:
            run = json.loads(path.read_text())
            encoding = run["encoding"]
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path} is damaged ({exc}); fit the run again.") from None
        if encoding.get("name") != RUN_ENCODING:
            raise InputError(
                f"{path} was not written by classify (encoding {encoding.get('name')!r}).")
        if encoding.get("version") not in _KNOWN_VERSIONS:
            raise RunVersionError(
                f"{run_dir} is a run directory of encoding version {encoding.get('version')!r} "
                f"(written by embedcache {run.get('provenance', {}).get('embedcache', '?')}); "
                f"this embedcache reads version(s) {', '.join(map(str, _KNOWN_VERSIONS))}. Use "
                "the embedcache that wrote it, or fit the run again with this one.")
        if kind is not None and run.get("kind") != kind:
            raise InputError(f"{run_dir} is a {run.get('kind')!r} run; this needs a {kind!r} "
                             f"run (written by `classify {kind}`).")
        return cls(run)

    def write(self, run_dir: Path) -> None:
        write_json(Path(run_dir) / METRICS_FILE, self)

    # -- typed views ----------------------------------------------------------------------

    @property
    def kind(self) -> str:
        return self["kind"]

    @property
    def layers(self) -> list[int]:
        """The backbone layers the probe read (one, except for the layer-weighted probe)."""
        layer = self["features"]["layer"]
        return list(layer) if isinstance(layer, list) else [layer]

    def layer_text(self) -> str:
        layers = self.layers
        if self.kind == "sweep":
            swept = format_ranges(self["sweep"]["layers"])
            return f"layer {layers[0]} (chosen on validation; swept {swept})"
        if len(layers) == 1:
            return f"layer {layers[0]}"
        return f"layers {format_ranges(layers)}"

    def title(self) -> str:
        backbone = self["features"]["backbone"]
        name = backbone.get("name") or backbone.get("key", "?")
        what = (f"{self['model']['kind']} probe on {name} (key {backbone.get('key')}), "
                f"{self.layer_text()}, {self['features']['pool']} pooling")
        if self.kind == "sweep":
            what = (f"{self['model']['kind']} probe on {name} (key {backbone.get('key')}), "
                    f"sweep over layers {format_ranges(self['sweep']['layers'])}, "
                    f"pooling {', '.join(self['sweep']['pools'])}")
        if self["features"].get("variants"):
            what += f", variant features {self['features']['variants']['features']}"
        if self.kind == "variants":
            what = (f"zero-shot variant scores on {name} (key {backbone.get('key')}): "
                    f"{', '.join(row.label for row in self.score_rows())}")
        return f"{what} — {self.kind}"

    def score_rows(self) -> list[ScoreRow]:
        """The probe's and the baselines' metrics, as tables show them."""
        if self.kind == "cv":
            cv = self["cv"]
            rows = [ScoreRow(f"probe ({self['model']['kind']})", cv["n_rows"],
                             _summary_estimates(cv["summary"]))]
            rows += [ScoreRow(f"baseline: {name}", cv["n_rows"], _summary_estimates(s))
                     for name, s in cv["baseline_summaries"].items()]
            return rows
        if self.kind == "variants":
            scores = self["variant_scores"]
            return [ScoreRow(_score_label(scores, name), m["n"], _estimates(m, m["intervals"]))
                    for name, m in scores["scores"].items()]
        if self.kind == "sweep":
            best = self["best"]
            rows = []
            for r in self["sweep"]["rows"]:
                mark = " (chosen)" if (r["layer"], r["pool"]) == (best["layer"],
                                                                   best["pool"]) else ""
                for split in ("validation", "test"):
                    values = r["metrics"][split]
                    rows.append(ScoreRow(f"layer {r['layer']} · {r['pool']} · {split}{mark}",
                                         values["n"], _estimates(values, r["intervals"][split])))
        else:
            intervals = self.get("intervals", {}).get("test", {})
            rows = [ScoreRow(split, values["n"], _estimates(
                values, intervals if split in ("test", "evaluation") else None))
                for split, values in self["metrics"].items()]
        for name, b in self.get("baselines", {}).items():
            test = b["metrics"]["test"]
            rows.append(ScoreRow(f"baseline: {name} (test)", test["n"],
                                 _estimates(test, b.get("intervals"))))
        return rows

    def headline(self) -> ScoreRow:
        """The one row that stands for the run side by side with others: test (evaluate:
        evaluation; cv: mean ± sd; sweep: the layer and pooling chosen on validation)."""
        if self.kind in ("cv", "variants"):
            return self.score_rows()[0]
        if self.kind == "sweep":
            best = self.best_row()
            test = best["metrics"]["test"]
            return ScoreRow("test", test["n"], _estimates(test, best["intervals"]["test"]))
        split = "evaluation" if self.kind == "evaluate" else "test"
        values = self["metrics"][split]
        return ScoreRow(split, values["n"], _estimates(values, self["intervals"]["test"]))

    def baseline_headlines(self) -> dict[str, ScoreRow]:
        if self.kind == "cv":
            return {name: ScoreRow(name, self["cv"]["n_rows"], _summary_estimates(s))
                    for name, s in self["cv"]["baseline_summaries"].items()}
        return {name: ScoreRow(name, b["metrics"]["test"]["n"],
                               _estimates(b["metrics"]["test"], b.get("intervals")))
                for name, b in self.get("baselines", {}).items()}

    def overfitting(self) -> str | None:
        """A note when the probe is perfect on its training rows but not on held-out ones.

        For fit runs and a sweep's chosen row (the records holding train metrics), by MCC:
        train 1 while validation (else test) is below 1. None otherwise.
        """
        if self.kind == "fit":
            metrics = self.get("metrics", {})
        elif self.kind == "sweep":
            metrics = self.best_row()["metrics"]
        else:
            return None
        train = metrics.get("train") or {}
        split = "validation" if "validation" in metrics else "test"
        held = (metrics.get(split) or {}).get("mcc")
        if train.get("mcc") is None or held is None or train["mcc"] < 1 - 1e-9 or held >= 1 - 1e-9:
            return None
        return (f"overfitting: the probe is perfect on its {train['n']} training rows (train MCC "
                f"1.000) but not on {split} (MCC {held:.3f}): it has memorized its training "
                f"rows. Judge it by {split} and test, never by train; a simpler probe or stronger "
                "regularisation (--param) may generalize better.")

    def layer_weights(self) -> dict[str, float]:
        """Layer -> learned weight (layer-weighted probe); empty for other probes."""
        return dict(self.get("layer_weights", {}))

    def best_row(self) -> dict:
        best = self["best"]
        return next(r for r in self["sweep"]["rows"]
                    if (r["layer"], r["pool"]) == (best["layer"], best["pool"]))

    def chosen_features(self) -> tuple[object, str]:
        """(layer, pool) the headline stands for (a sweep's best; a list of layers for the
        layer-weighted probe)."""
        if self.kind == "sweep":
            return self["best"]["layer"], self["best"]["pool"]
        return self["features"]["layer"], self["features"]["pool"]


def _score_features(column: str) -> tuple[object, str]:
    """(layer, pool) of a variant score column: ``cosine_L2_mean`` -> (2, "mean"),
    ``l2_Lfinal_center`` -> ("final", "center"), ``llr`` -> ("lm head", "masked")."""
    if column == "llr":
        return "lm head", "masked"
    layer, pool = column.split("_L", 1)[1].split("_", 1)
    return (int(layer) if layer.isdigit() else layer), pool


def _score_label(evaluation: Mapping, column: str) -> str:
    """A variant score as ranked: ``-llr`` (more negative = more damaging), else its name."""
    return ("-" if evaluation["scores"][column].get("sign", 1) < 0 else "") + column


def read_run(run_dir: str | PathLike, *, kind: str | None = None) -> RunRecord:
    """The record (``metrics.json``) of a run directory; see :meth:`RunRecord.read`."""
    return RunRecord.read(run_dir, kind=kind)
