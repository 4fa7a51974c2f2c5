"""`classify` command line: parse, call the classifiers library, print."""

from __future__ import annotations

import json
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.options import STORAGE_HELP, key_values, open_cache

from classifiers import DEFAULT_POOL, DEFAULT_PROBE

app = typer.Typer(
    name="classify",
    help="Train and evaluate probes (logistic, MLP, XGBoost, layer-weighted) on cached embeddings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

_PROBE_HELP = ("Probe: logistic (the default everywhere: the linear probe, convex and fast), mlp "
               "(JAX/Optax, 128-64 ReLU, 6 epochs, batch 32, Adam), xgboost, or layer-weighted "
               "(a learned softmax weight per layer, with --layers).")
_PARAM_HELP = ("Probe parameter as NAME=VALUE (repeatable; VALUE is read as JSON when it parses, "
               "else as a number such as nan or inf, else as text), checked against the probe's "
               "constraints before anything is read, e.g. --param C=0.1 --param "
               "hidden_layer_sizes=[256,64].")
_POOL_HELP = f"cls or mean (default {DEFAULT_POOL}, as `embedcache build` stores and exports)."


@app.callback()
def _root() -> None:
    """Train and evaluate probes (logistic, MLP, XGBoost, layer-weighted) on cached embeddings."""


def _command() -> str:
    return shlex.join(["classify", *sys.argv[1:]])


def _warn(message: str) -> None:
    typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, err=True)


def _is_probe_kind(name: str) -> bool:
    from classifiers.persistence import ESTIMATORS  # imports the probes (JAX): only when asked

    return name in ESTIMATORS


def _probe_and_model(probe: str | None, model: str | None, backbone: str | None) -> tuple[str, str | None]:
    """The probe and the language model, from ``--probe`` and ``--model`` as in ``embedcache``.

    Deprecated spellings still work for one release, with a warning: ``--backbone M`` (now
    ``--model M``), and ``--model PROBE`` without ``--probe`` (a probe kind such as ``logistic``
    where the language model now goes, as before)."""
    if probe is None and model is not None and _is_probe_kind(model):
        _warn(f"--model {model} names a probe: the probe is now --probe, and --model names the language "
              f"model (as in `embedcache`); read as --probe {model}. The old form goes in the next release.")
        probe, model = model, None
    if backbone is not None:
        if model is not None:
            raise typer.BadParameter(f"--backbone is the old name of --model: give the language model once, "
                                     f"as --model {backbone}.", param_hint="--backbone")
        _warn(f"--backbone is now --model (the language model, as in `embedcache`); read as --model {backbone}. "
              "The old name goes in the next release.")
        model = backbone
    return probe or DEFAULT_PROBE, model


def _params(items: list[str]) -> dict:
    """``--param NAME=VALUE`` items as typed values, parsed once here: JSON (numbers,
    true/false/null, lists as tuples, "quoted text"), else a float (nan, inf), else text.
    Whether a value suits the probe is the probe's constraints' question, asked next."""
    return key_values(items, "--param", typed=_typed)


def _typed(text: str):
    try:
        return _tuples(json.loads(text))
    except ValueError:
        return float(text)  # nan, inf; anything else stays text (key_values)


def _tuples(value):
    """JSON lists as tuples: the probes' sequence parameters are tuples (their defaults)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


class _Progress:
    """How far a command got, for its Ctrl-C message: where it writes (``out``, once known)
    and whether that was written (``done``)."""

    def __init__(self, verb: str, noun: str):
        self.verb, self.noun, self.out, self.done = verb, noun, None, False

    def message(self, exc: BaseException) -> str:
        out = self.out
        if out is None:  # stopped while importing: nothing is known, nothing was written
            said = "nothing was written"
        elif self.done or getattr(exc, "run_written", False):
            said = f"{out} was complete before it stopped"
        else:
            from classifiers.runs import METRICS_FILE  # imported once out is known

            said = f"no {self.noun} was written to {out}"
            if out.is_file() or (out / METRICS_FILE).is_file():
                said += f" (the {self.noun} already there is unchanged)"
        return (f"interrupted: classify {self.verb} stopped; {said}. Nothing is resumed: rerun "
                "the command to run it again.")


@contextmanager
def _interruptible(verb: str, noun: str = "run"):
    """Answer Ctrl-C in a command (exit 130) with what stopped and what is on disk: runs are
    written whole or not at all (classifiers.runs.directory.staged), never resumed."""
    from cli.errors import EXIT_INTERRUPTED, Interrupted

    progress = _Progress(verb, noun)
    try:
        yield progress
    except (Interrupted, KeyboardInterrupt) as exc:
        typer.secho(progress.message(exc), fg=typer.colors.YELLOW, err=True)
        sys.exit(EXIT_INTERRUPTED)


def _estimate(e) -> tuple[str, str]:
    """An Estimate as (with its interval or sd, the value alone) for cli.tables."""
    from classifiers.runs.record import Estimate

    return e.text(), Estimate(e.value).text()


def _print_run(run, out: Path) -> None:
    from classifiers.metrics import SCALAR_METRICS
    from classifiers.runs import METRICS_FILE, REPORT_FILE
    from cli.tables import Column, print_table

    for warning in run["warnings"]:
        typer.secho(f"WARNING: {warning}", fg=typer.colors.RED, err=True)
    metric_columns = [Column(m.upper(), right=True) for m in SCALAR_METRICS]
    if run.kind == "sweep":
        _print_sweep(run, out)
    else:
        print_table(run.title(), [Column("", shrink=True), *metric_columns],
                    [[f"{row.label} (n={row.n})", *[_estimate(row.metrics[m])
                                                     for m in SCALAR_METRICS]]
                     for row in run.score_rows()], full=str(out / METRICS_FILE))
    note = run.overfitting()
    if note:
        typer.secho(f"note: {note}", fg=typer.colors.YELLOW)
    for layer, weight in run.layer_weights().items():
        typer.echo(f"layer {layer}: weight {weight:.3f}")
    typer.echo(f"wrote {out} (report: {out / REPORT_FILE})")


def _print_sweep(run, out: Path) -> None:
    """One line per (layer, pooling): validation and test MCC and AUROC, the choice marked;
    the baselines below. Every metric with its interval is in sweep.csv."""
    from classifiers.runs import SWEEP_FILE
    from classifiers.runs.record import Estimate
    from cli.tables import Column, print_table

    best = run["best"]
    columns = [Column("features", shrink=True), Column("val MCC", right=True),
               Column("val AUROC", right=True), Column("test MCC", right=True),
               Column("test AUROC", right=True), Column("")]

    def cells(metrics, intervals=None):
        val, test = metrics.get("validation", {}), metrics.get("test", {})
        intervals = intervals or {}
        return [Estimate(val.get("mcc")).text(), Estimate(val.get("auroc")).text(),
                *[_estimate(Estimate(test.get(m), *(intervals.get(m) or [None, None])[:2]))
                  for m in ("mcc", "auroc")]]

    rows = [[f"layer {r['layer']} · {r['pool']}", *cells(r["metrics"], r["intervals"]["test"]),
             "← chosen" if (r["layer"], r["pool"]) == (best["layer"], best["pool"]) else ""]
            for r in run["sweep"]["rows"]]
    rows += [[f"baseline: {name}", *cells(b["metrics"], b.get("intervals")), ""]
             for name, b in run.get("baselines", {}).items()]
    print_table(run.title(), columns, rows, full=str(out / SWEEP_FILE))
    typer.echo(f"best on {best['by']}: layer {best['layer']}, {best['pool']} pooling "
               f"(every metric with its interval: {out / SWEEP_FILE})")
    if best.get("fit_command"):
        typer.echo(f"fit it with: {best['fit_command']}")


# Options shared by fit, sweep and cv: declared once.
Data = Annotated[Path, typer.Option("--data", help="Labelled task: CSV/TSV/Parquet with sequence and label (optional "
                                    "id, split), or a BED file with --reference whose header line names label "
                                    "(and split) columns after strand; rows its split column marks test are "
                                    "held out.")]
Cache = Annotated[str, typer.Option("--cache", help="The embedding cache (written by `embedcache build`): a path or a URL such as s3://bucket/cache.zarr.")]
StorageOption = Annotated[list[str], typer.Option("--storage-option", help=STORAGE_HELP)]
Out = Annotated[Path, typer.Option("--out", help="Run directory to write.")]
Test = Annotated[Optional[Path], typer.Option("--test", help="Separate test file (else the data's split column, "
                                              "else a stratified 20%).")]
Model = Annotated[Optional[str], typer.Option("--model", help="Language model whose features to use: a released name, "
                                              "a checkpoint directory or a model key of the cache (default: its only "
                                              "model).")]
Probe = Annotated[Optional[str], typer.Option("--probe", help=_PROBE_HELP)]
Reference = Annotated[Optional[Path], typer.Option("--reference", help="Genome FASTA a BED --data (and --test) is "
                                                   "cut from, as for `embedcache build --reference`, or a variant "
                                                   "set (--variant-features) is called on.")]
Backbone = Annotated[Optional[str], typer.Option("--backbone", hidden=True, help="Deprecated: use --model. Model name or key in the cache (default: its "
                                                 "only model).")]
Layer = Annotated[Optional[int], typer.Option("--layer", help="1-based layer (default: the model's last).")]
GroupBy = Annotated[Optional[str], typer.Option("--group-by", help="Column (e.g. chrom) whose groups never straddle "
                                                "train and test (cv: stay within one fold).")]
DedupTest = Annotated[bool, typer.Option("--dedup-test", help="Drop test sequences that also occur in train.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of the splits, the probes and the bootstrap (cv: the first).")]
Params = Annotated[list[str], typer.Option("--param", help=_PARAM_HELP)]
Bootstrap = Annotated[int, typer.Option("--bootstrap", help="Bootstrap resamples for the test intervals.")]
Force = Annotated[bool, typer.Option("--force", help="Replace an existing non-empty --out.")]
VariantFeatures = Annotated[Optional[str], typer.Option(
    "--variant-features", help="--data is a variant set (VCF, plain or bgzip, or a CSV/TSV/Parquet table with chrom, "
    "pos, ref, alt[, id, label]) on the --reference genome: one row per allele, features alt - ref (diff) or "
    "[ref, alt] (concat) of its windows' pooled embeddings, which must be in the cache (`embedcache variants`).")]
LabelField = Annotated[Optional[str], typer.Option("--label-field", help="Variant sets: the INFO key (VCF) or column "
                                                   "(table) holding labels (default: a table's label).")]
Positive = Annotated[Optional[str], typer.Option("--positive", help="Variant sets: the positive label value, for "
                                                 "labels other than 0/1.")]
Flank = Annotated[Optional[int], typer.Option("--flank", help="Variant sets: the --flank the windows were embedded "
                                              "with (default: `embedcache variants`' default).")]
RefMismatch = Annotated[Optional[str], typer.Option("--ref-mismatch", help="Variant sets: error (default), or skip "
                                                    "(count) alleles whose REF differs from the reference.")]


def _variant_task(kind, reference, label_field, positive, flank, ref_mismatch):
    """The variant options as one typed object (``None``: --data is a sequence task)."""
    if kind is None:
        given = [name for name, value in (("--label-field", label_field), ("--positive", positive),
                                          ("--flank", flank), ("--ref-mismatch", ref_mismatch))
                 if value is not None]
        if given:
            raise typer.BadParameter(f"{', '.join(given)} are for variant sets: add --variant-features diff|concat.",
                                     param_hint="--variant-features")
        return None
    if reference is None:
        raise typer.BadParameter("a variant set needs the genome it is called on: add --reference GENOME.fa.",
                                 param_hint="--reference")
    from classifiers.variant_task import VariantTask

    return VariantTask(reference, kind, label_field=label_field, positive=positive, flank=flank,
                       ref_mismatch=ref_mismatch or "error")


@app.command()
def fit(
    data: Data, cache: Cache, out: Out, probe: Probe = None, model: Model = None, storage_option: StorageOption = [],
    test: Test = None, reference: Reference = None, backbone: Backbone = None, layer: Layer = None,
    layers: Optional[str] = typer.Option(None, "--layers", help="layer-weighted only: the layers it mixes: all (default), 1-12, 1,6,12."),
    pool: str = typer.Option(DEFAULT_POOL, "--pool", help=_POOL_HELP),
    group_by: GroupBy = None, dedup_test: DedupTest = False, seed: Seed = 0, param: Params = [],
    bootstrap: Bootstrap = 1000, force: Force = False, variant_features: VariantFeatures = None,
    label_field: LabelField = None, positive: Positive = None, flank: Flank = None,
    ref_mismatch: RefMismatch = None,
) -> None:
    """Train a probe on cached features; write metrics, predictions, model, plots and report."""
    params = _params(param)
    probe, model = _probe_and_model(probe, model, backbone)
    variants = _variant_task(variant_features, reference, label_field, positive, flank, ref_mismatch)
    with _interruptible("fit") as progress:
        from classifiers.runs import fit_run

        progress.out = out
        run = fit_run(data, cache=open_cache(cache, storage_option), out=out, model=probe, backbone=model, layer=layer,
                      layers=layers, pool=pool, test=test, group_by=group_by,
                      dedup_test=dedup_test, seed=seed, params=params, n_bootstrap=bootstrap,
                      force=force, command=_command(), reference=reference, variants=variants)
        progress.done = True
        _print_run(run, out)


@app.command()
def sweep(
    data: Data, cache: Cache, out: Out, storage_option: StorageOption = [],
    probe: Optional[str] = typer.Option(None, "--probe", help=f"Probe fitted on every layer and pooling: logistic, "
                                        f"mlp or xgboost (default {DEFAULT_PROBE})."),
    model: Model = None,
    layers: str = typer.Option("all", "--layers", help="all, a range (1-12) or a list (1,6,12)."),
    pool: str = typer.Option(DEFAULT_POOL, "--pool", help=f"Poolings, comma-separated: cls, mean or cls,mean (default {DEFAULT_POOL})."),
    test: Test = None, reference: Reference = None, backbone: Backbone = None, group_by: GroupBy = None,
    dedup_test: DedupTest = False, seed: Seed = 0, param: Params = [], bootstrap: Bootstrap = 1000,
    force: Force = False, variant_features: VariantFeatures = None, label_field: LabelField = None,
    positive: Positive = None, flank: Flank = None, ref_mismatch: RefMismatch = None,
) -> None:
    """Which layer? Fit a probe on every (layer, pooling), same split; pick the best on validation."""
    params = _params(param)
    probe, model = _probe_and_model(probe, model, backbone)
    variants = _variant_task(variant_features, reference, label_field, positive, flank, ref_mismatch)
    with _interruptible("sweep") as progress:
        from classifiers.runs import sweep_run

        progress.out = out
        run = sweep_run(data, cache=open_cache(cache, storage_option), out=out, model=probe, backbone=model,
                        layers=layers, pools=[p.strip() for p in pool.split(",") if p.strip()],
                        test=test, group_by=group_by, dedup_test=dedup_test, seed=seed,
                        params=params, n_bootstrap=bootstrap, force=force, command=_command(),
                        reference=reference, variants=variants)
        progress.done = True
        _print_run(run, out)


@app.command()
def cv(
    data: Data, cache: Cache, out: Out, probe: Probe = None, model: Model = None, storage_option: StorageOption = [],
    folds: int = typer.Option(5, "--folds", help="Folds (stratified; grouped with --group-by)."),
    seeds: int = typer.Option(1, "--seeds", help="Repetitions with different shuffles."),
    seed: Seed = 0, reference: Reference = None, backbone: Backbone = None, layer: Layer = None,
    pool: str = typer.Option(DEFAULT_POOL, "--pool", help=_POOL_HELP),
    group_by: GroupBy = None, param: Params = [], force: Force = False,
    variant_features: VariantFeatures = None, label_field: LabelField = None, positive: Positive = None,
    flank: Flank = None, ref_mismatch: RefMismatch = None,
) -> None:
    """Cross-validate a probe and its baselines: mean ± sd over folds and seeds."""
    params = _params(param)
    probe, model = _probe_and_model(probe, model, backbone)
    variants = _variant_task(variant_features, reference, label_field, positive, flank, ref_mismatch)
    with _interruptible("cv") as progress:
        from classifiers.runs import cross_validate

        progress.out = out
        run = cross_validate(data, cache=open_cache(cache, storage_option), out=out, model=probe, backbone=model,
                             layer=layer, pool=pool, folds=folds, seeds=seeds, seed=seed,
                             group_by=group_by, params=params, force=force, command=_command(),
                             reference=reference, variants=variants)
        progress.done = True
        _print_run(run, out)


@app.command()
def evaluate(
    run_dir: Path = typer.Argument(..., help="A run directory written by `classify fit`."),
    data: Path = typer.Option(..., "--data", help="Labelled file to evaluate on (all rows): as for fit's --data (a run on "
                              "--variant-features: a variant set, featurized as the fit was; --reference if its genome moved)."),
    reference: Reference = None,
    out: Optional[Path] = typer.Option(None, "--out", help="Where to write (default RUN/evaluate-<file stem>)."),
    cache: Optional[str] = typer.Option(None, "--cache", help="The cache (path or URL), if it moved since the fit."),
    storage_option: StorageOption = [],
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for the intervals."),
    force: bool = typer.Option(False, "--force", help="Replace an existing non-empty --out."),
    label_field: LabelField = None, positive: Positive = None,
) -> None:
    """Evaluate a fitted probe on another labelled file, with the run's language model, layer, pooling."""
    with _interruptible("evaluate") as progress:
        from classifiers.runs import default_evaluation_dir, evaluate_run

        progress.out = out if out is not None else default_evaluation_dir(run_dir, data)
        run = evaluate_run(run_dir, data, out=progress.out, cache=cache and open_cache(cache, storage_option), n_bootstrap=bootstrap,
                           force=force, command=_command(), reference=reference, label_field=label_field,
                           positive=positive)
        progress.done = True
        _print_run(run, progress.out)


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="A run directory written by `classify fit`."),
    data: Path = typer.Option(..., "--data", help="Sequences to score: FASTA, CSV, TSV, Parquet, or BED with "
                              "--reference (no labels needed); a run on --variant-features: a variant set."),
    reference: Reference = None,
    out: Optional[Path] = typer.Option(None, "--out", help="CSV to write (default RUN/predictions-<file stem>.csv)."),
    cache: Optional[str] = typer.Option(None, "--cache", help="The cache (path or URL), if it moved since the fit."),
    storage_option: StorageOption = [],
    force: bool = typer.Option(False, "--force", help="Replace an existing --out."),
) -> None:
    """Score new sequences with a fitted probe (they must be in the cache: `embedcache build`)."""
    with _interruptible("predict", "prediction file") as progress:
        from classifiers.runs import default_predictions_path, predict_run

        progress.out = out if out is not None else default_predictions_path(run_dir, data)
        written = predict_run(run_dir, data, out=progress.out, cache=cache and open_cache(cache, storage_option), force=force, reference=reference)
        progress.done = True
        typer.echo(f"wrote {written}")


@app.command()
def compare(
    runs: list[Path] = typer.Argument(..., help="Run directories (fit, cv, evaluate or sweep)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Directory for compare.csv, report.html and the plots (default compare-<run>-<run>... in the current directory, named for the runs)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing non-empty --out."),
) -> None:
    """Put runs side by side: a table of test metrics, a report, bar and metric-by-layer plots,
    ROC overlay."""
    with _interruptible("compare", "comparison") as progress:
        from classifiers.runs import compare_runs, default_compare_dir

        progress.out = out if out is not None else default_compare_dir(runs)
        table = compare_runs(runs, out=progress.out, force=force)
        progress.done = True
        _print_compare(table, progress.out)


def _print_compare(table, out: Path) -> None:
    from classifiers.runs import COMPARE_FILE, COMPARE_HEADER, REPORT_FILE, compare_cells
    from classifiers.runs.record import Estimate
    from cli.tables import Column, print_table

    left, shrink = {"run", "kind", "model", "backbone", "pool"}, {"run", "model", "backbone", "layer"}
    columns = [Column(name, right=name not in left, shrink=name in shrink) for name in COMPARE_HEADER]
    print_table("runs (test metrics; cv: mean ± sd; sweep: the layer chosen on validation)",
                columns, [[_estimate(c) if isinstance(c, Estimate) else c for c in compare_cells(r)]
                          for r in table.to_dict("records")], full=str(out / COMPARE_FILE))
    typer.echo(f"wrote {out} (report: {out / REPORT_FILE})")


def main() -> None:
    from cli.errors import run_app

    run_app(app)


if __name__ == "__main__":
    main()
