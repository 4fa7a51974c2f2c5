"""The run record: what a run found and how, as ``metrics.json`` holds it.

:class:`RunRecord` is a frozen dataclass of typed sections (:class:`TaskInfo`,
:class:`FeatureInfo`, :class:`ModelInfo`, :class:`Provenance`, and by kind
:class:`CrossValidation`, :class:`Sweep` of :class:`SweepRow`, :class:`SweepChoice`); a workflow
builds it whole, and :meth:`RunRecord.to_json` / :meth:`RunRecord.from_json` are the one place
it meets the file. The report, the command line's tables and ``compare`` take their numbers
from its accessors (:meth:`RunRecord.score_rows`, :meth:`RunRecord.headline`), as rows of
:class:`~classifiers.runs.scores.Estimate` s.

Length: the record, its eight typed sections and their one mapping to and from the file
belong on one page; the views are the record's own questions.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from os import PathLike
from pathlib import Path

from classifiers.runs.directory import METRICS_FILE, jsonable, write_json
from classifiers.runs.scores import ScoreRow, estimates, summary_estimates
from embedcache.errors import InputError
from embedcache.util.ranges import format_layers
from embedcache.util.versions import distribution_version, package_versions

__all__ = ["CrossValidation", "FeatureInfo", "ModelInfo", "Provenance", "RUN_ENCODING",
           "RUN_ENCODING_VERSION", "RunRecord", "RunVersionError", "Sweep", "SweepChoice",
           "SweepRow", "TaskInfo", "random_weights_warnings", "read_run"]

RUN_ENCODING = "embedcache-classify-run"
RUN_ENCODING_VERSION = 1
_KNOWN_VERSIONS = (1,)
KINDS = ("fit", "cv", "evaluate", "sweep", "variants")
_SPLITS = ("train", "validation", "test", "evaluation")
_FITTED = ("best_epoch", "n_epochs", "history")

#: Packages whose versions every run records.
PACKAGES = ("embedcache", "numpy", "scikit-learn", "xgboost", "jax", "optax", "zarr", "pandas",
            "matplotlib")

RANDOM_WEIGHTS_WARNING = (
    "RANDOM WEIGHTS: the backbone {name} (key {key}) was built with seeded random weights, not "
    "released ones. The pipeline is real, but these numbers say nothing about what the language "
    "model learned; put the released weights in the Hugging Face cache and build again.")


def random_weights_warnings(backbone: Mapping) -> list[str]:
    """The warning every run of a backbone with seeded random weights carries, or none."""
    if backbone.get("random_weights"):
        return [RANDOM_WEIGHTS_WARNING.format(name=backbone.get("name"), key=backbone.get("key"))]
    return []


class RunVersionError(InputError):
    """A run directory written in a run encoding this release does not read."""


@dataclass(frozen=True)
class TaskInfo:
    """The task a run read (``task`` in ``metrics.json``): its files (path, sha256, rows), the
    classes in the probe's order, rows per split, how the splits were made, and the seed; a
    ``variants`` run also records which label value of its file was the positive class."""

    files: Mapping[str, Mapping]
    classes: tuple[str, ...]
    rows: Mapping[str, int]
    split_source: str
    seed: int
    positive: str | None = None

    @classmethod
    def of(cls, table, *, files, classes, split_source: str, seed: int) -> TaskInfo:
        """The section for ``table`` (its ``split`` column counted)."""
        counts = table["split"].value_counts()
        return cls(files, tuple(str(c) for c in classes),
                   {s: int(counts.get(s, 0)) for s in _SPLITS if counts.get(s, 0)},
                   split_source, int(seed))


@dataclass(frozen=True)
class FeatureInfo:
    """Which features the probe read (``features``): the store, the backbone (the run's JSON
    form of its model group), the layer (a list for the layer-weighted probe), the pooling, for
    a variant task how alleles became features, and for zero-shot variant scores how their
    windows were cut (``windows``). ``store`` is None for a store at a URL."""

    store: str | None
    backbone: Mapping
    layer: int | str | list
    pool: str
    variants: Mapping | None = None
    windows: Mapping | None = None

    @classmethod
    def of(cls, store, backbone, layer, pool: str, variants=None) -> FeatureInfo:
        """``store`` an open cache (a URL stays as given, a path is made absolute);
        ``variants`` a :class:`~classifiers.variant_task.VariantTask` or None."""
        where = store.path if isinstance(store.path, str) else str(Path(store.path).resolve())
        return cls(where, dict(backbone), list(layer) if isinstance(layer, (list, tuple)) else layer,
                   pool, None if variants is None else variants.record())


@dataclass(frozen=True)
class ModelInfo:
    """The probe (``model``): its kind, constructor parameters and, for probes that train by
    epochs, the chosen epoch, the epochs run and the loss history."""

    kind: str
    params: Mapping
    best_epoch: int | None = None
    n_epochs: int | None = None
    history: Mapping | None = None

    @classmethod
    def of(cls, kind: str, estimator, *, history: bool = True) -> ModelInfo:
        """``history=False`` leaves the loss history out (a sweep's last fit is not its best)."""
        fitted = {name: jsonable(getattr(estimator, f"{name}_")) for name in _FITTED
                  if hasattr(estimator, f"{name}_") and (history or name != "history")}
        return cls(kind, jsonable(estimator.get_params()), **fitted)


@dataclass(frozen=True)
class Provenance:
    """How the run came about: the command, when, which versions, and seconds per stage."""

    command: str
    created: str
    embedcache: str | None
    versions: Mapping[str, str | None]
    seconds: Mapping[str, float] | None = None

    @classmethod
    def now(cls, command: str | None) -> Provenance:
        return cls(command or "(Python API)",
                   _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                   distribution_version("embedcache"), package_versions(PACKAGES))


@dataclass(frozen=True)
class SweepRow:
    """One (layer, pooling) of a sweep: per-split metrics (train too, for the overfitting
    note) and the validation and test intervals."""

    layer: int | str
    pool: str
    metrics: Mapping[str, Mapping]
    intervals: Mapping[str, Mapping]

    @property
    def features(self) -> tuple:
        return self.layer, self.pool


@dataclass(frozen=True)
class SweepChoice:
    """A sweep's ``best``: the (layer, pooling) chosen on validation, by what, its validation
    scores, and the ``classify fit`` line that fits it again."""

    layer: int | str
    pool: str
    by: str
    validation: Mapping[str, float | None]
    fit_command: str | None = None

    @property
    def features(self) -> tuple:
        return self.layer, self.pool


@dataclass(frozen=True)
class Sweep:
    """What a sweep covered (``sweep``): the layers, the poolings and a row per pair."""

    layers: tuple
    pools: tuple[str, ...]
    rows: tuple[SweepRow, ...]


@dataclass(frozen=True)
class CrossValidation:
    """A cv run's folds (``cv``): the design, per-fold metrics and their mean and sd, for the
    probe and the baselines."""

    folds: int
    seeds: tuple[int, ...]
    n_rows: int
    held_out_test_rows: int
    splitter: str
    summary: Mapping
    baseline_summaries: Mapping
    per_fold: tuple[Mapping, ...]
    baseline_per_fold: Mapping


@dataclass(frozen=True)
class RunRecord:
    """What a run found and how: the typed content of its ``metrics.json``.

    The workflow builds it whole; :meth:`to_json` and :meth:`from_json` are the one mapping to
    and from the file (keys ``encoding``, ``kind``, ``warnings``, ``task``, ``features``,
    ``model``, ``provenance``, and by kind ``metrics``, ``intervals``, ``baselines``,
    ``duplicates``, ``cv``, ``sweep``, ``best``, ``layer_weights``, ``evaluated_run``).
    """

    kind: str
    task: TaskInfo
    features: FeatureInfo
    model: ModelInfo
    provenance: Provenance
    warnings: tuple[str, ...] = ()
    metrics: Mapping[str, Mapping] | None = None
    intervals: Mapping[str, Mapping] | None = None
    baselines: Mapping[str, Mapping] | None = None
    duplicates: Mapping[str, int | bool] | None = None
    cv: CrossValidation | None = None
    sweep: Sweep | None = None
    best: SweepChoice | None = None
    layer_weights: Mapping[str, float] = field(default_factory=dict)
    evaluated_run: str | None = None
    variant_scores: Mapping | None = None
    encoding: Mapping = field(default_factory=lambda: {"name": RUN_ENCODING,
                                                        "version": RUN_ENCODING_VERSION})

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown run kind {self.kind!r}; one of {KINDS}")

    # -- the one mapping to and from metrics.json ----------------------------------------

    def to_json(self) -> dict:
        """The record as ``metrics.json`` holds it (sections a kind lacks are left out)."""
        out = {"encoding": dict(self.encoding), "kind": self.kind, "warnings": list(self.warnings),
               "task": _without_none(asdict(self.task)),
               "features": {"store": self.features.store, **_without_none(asdict(self.features))},
               "model": _without_none(asdict(self.model)),
               "provenance": _without_none(asdict(self.provenance))}
        for name in ("metrics", "intervals", "baselines", "duplicates", "cv", "sweep", "best",
                     "layer_weights", "evaluated_run", "variant_scores"):
            value = getattr(self, name)
            if value:
                out[name] = _without_none(asdict(value)) if is_dataclass(value) else value
        return jsonable(out)

    @classmethod
    def from_json(cls, run: Mapping) -> RunRecord:
        """The record of a ``metrics.json`` content (encoding already checked).

        Raises KeyError or TypeError on a content that lacks what its kind needs."""
        sweep, best, cv = run.get("sweep"), run.get("best"), run.get("cv")
        return cls(
            kind=run["kind"], task=TaskInfo(**{**run["task"], "classes": tuple(run["task"]["classes"])}),
            features=FeatureInfo(**run["features"]), model=ModelInfo(**run["model"]),
            provenance=Provenance(**run["provenance"]), warnings=tuple(run.get("warnings", ())),
            metrics=run.get("metrics"), intervals=run.get("intervals"),
            baselines=run.get("baselines"), duplicates=run.get("duplicates"),
            cv=None if cv is None else CrossValidation(**{**cv, "seeds": tuple(cv["seeds"]),
                                                          "per_fold": tuple(cv["per_fold"])}),
            sweep=None if sweep is None else Sweep(
                tuple(sweep["layers"]), tuple(sweep["pools"]),
                tuple(SweepRow(**r) for r in sweep["rows"])),
            best=None if best is None else SweepChoice(**best),
            layer_weights=run.get("layer_weights") or {}, evaluated_run=run.get("evaluated_run"),
            variant_scores=run.get("variant_scores"),
            encoding=run["encoding"])

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
        task = TaskInfo(files, ("0", "1"),
                        {"evaluation": evaluation["n_variants"] - evaluation["n_missing_label"]},
                        "zero-shot: nothing trained; every labelled allele evaluated",
                        int(evaluation.get("seed", 0)), positive=evaluation["positive"])
        features = FeatureInfo(None if store is None or "://" in str(store) else str(Path(store).resolve()),
                               backbone, layer, pool, windows=dict(windows))
        return cls("variants", task, features,
                   ModelInfo(f"zero-shot {_score_label(evaluation, scores[0])}", {"scores": scores}),
                   Provenance.now(command),
                   warnings=tuple(random_weights_warnings(backbone)),
                   variant_scores=dict(evaluation))

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
        try:
            return cls.from_json(run)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path} is damaged (its {run.get('kind')!r} record: {exc!r}); fit "
                             "the run again.") from None

    def write(self, run_dir: str | PathLike) -> None:
        write_json(Path(run_dir) / METRICS_FILE, self.to_json())

    # -- views ----------------------------------------------------------------------------

    @property
    def layers(self) -> list:
        """The backbone layers the probe read (one, except for the layer-weighted probe)."""
        layer = self.features.layer
        return list(layer) if isinstance(layer, (list, tuple)) else [layer]

    def layer_text(self) -> str:
        layers = self.layers
        if self.kind == "sweep":
            return (f"layer {layers[0]} (chosen on validation; swept "
                    f"{format_layers(self.sweep.layers)})")
        if len(layers) == 1:
            return f"layer {layers[0]}"
        return f"layers {format_layers(layers)}"

    def title(self) -> str:
        backbone = self.features.backbone
        name = backbone.get("name") or backbone.get("key", "?")
        probe = f"{self.model.kind} probe on {name} (key {backbone.get('key')}), "
        if self.kind == "sweep":
            what = (f"{probe}sweep over layers {format_layers(self.sweep.layers)}, "
                    f"pooling {', '.join(self.sweep.pools)}")
        elif self.kind == "variants":
            what = (f"zero-shot variant scores on {name} (key {backbone.get('key')}): "
                    f"{', '.join(row.label for row in self.score_rows())}")
        else:
            what = f"{probe}{self.layer_text()}, {self.features.pool} pooling"
        if self.features.variants:
            what += f", variant features {self.features.variants['features']}"
        return f"{what} — {self.kind}"

    def score_rows(self) -> list[ScoreRow]:
        """The probe's and the baselines' metrics, as tables show them."""
        if self.kind == "cv":
            cv = self.cv
            rows = [ScoreRow(f"probe ({self.model.kind})", cv.n_rows,
                             summary_estimates(cv.summary))]
            rows += [ScoreRow(f"baseline: {name}", cv.n_rows, summary_estimates(s))
                     for name, s in cv.baseline_summaries.items()]
            return rows
        if self.kind == "variants":
            scores = self.variant_scores
            return [ScoreRow(_score_label(scores, name), m["n"], estimates(m, m["intervals"]))
                    for name, m in scores["scores"].items()]
        if self.kind == "sweep":
            rows = []
            for r in self.sweep.rows:
                mark = " (chosen)" if r.features == self.best.features else ""
                for split in ("validation", "test"):
                    values = r.metrics[split]
                    rows.append(ScoreRow(f"layer {r.layer} · {r.pool} · {split}{mark}",
                                         values["n"], estimates(values, r.intervals[split])))
        else:
            intervals = (self.intervals or {}).get("test", {})
            rows = [ScoreRow(split, values["n"], estimates(
                values, intervals if split in ("test", "evaluation") else None))
                for split, values in self.metrics.items()]
        for name, b in (self.baselines or {}).items():
            test = b["metrics"]["test"]
            rows.append(ScoreRow(f"baseline: {name} (test)", test["n"],
                                 estimates(test, b.get("intervals"))))
        return rows

    def headline(self) -> ScoreRow:
        """The one row that stands for the run side by side with others: test (evaluate:
        evaluation; cv: mean ± sd; sweep: the layer and pooling chosen on validation)."""
        if self.kind in ("cv", "variants"):
            return self.score_rows()[0]
        if self.kind == "sweep":
            best = self.best_row()
            test = best.metrics["test"]
            return ScoreRow("test", test["n"], estimates(test, best.intervals["test"]))
        split = "evaluation" if self.kind == "evaluate" else "test"
        values = self.metrics[split]
        return ScoreRow(split, values["n"], estimates(values, self.intervals["test"]))

    def baseline_headlines(self) -> dict[str, ScoreRow]:
        if self.kind == "cv":
            return {name: ScoreRow(name, self.cv.n_rows, summary_estimates(s))
                    for name, s in self.cv.baseline_summaries.items()}
        return {name: ScoreRow(name, b["metrics"]["test"]["n"],
                               estimates(b["metrics"]["test"], b.get("intervals")))
                for name, b in (self.baselines or {}).items()}

    def overfitting(self) -> str | None:
        """A note when the probe is perfect on its training rows but not on held-out ones.

        For fit runs and a sweep's chosen row (the records holding train metrics), by MCC:
        train 1 while validation (else test) is below 1. None otherwise.
        """
        if self.kind == "fit":
            metrics = self.metrics or {}
        elif self.kind == "sweep":
            metrics = self.best_row().metrics
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

    def best_row(self) -> SweepRow:
        """A sweep's row of the (layer, pooling) chosen on validation."""
        return next(r for r in self.sweep.rows if r.features == self.best.features)

    def chosen_features(self) -> tuple[object, str]:
        """(layer, pool) the headline stands for (a sweep's best; a list of layers for the
        layer-weighted probe)."""
        if self.kind == "sweep":
            return self.best.features
        return self.features.layer, self.features.pool


def _without_none(section: dict) -> dict:
    """A section's optional fields that are unset are left out of the file, as before."""
    return {k: v for k, v in section.items() if v is not None}


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
