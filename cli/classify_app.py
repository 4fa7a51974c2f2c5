"""`classify` command line: parse, call the classifiers library, print."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    name="classify",
    help="Train and evaluate probes (logistic, MLP, XGBoost, layer-weighted) on cached embeddings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

_PROBE_HELP = ("Probe: mlp (JAX/Optax, 128-64 ReLU, 6 epochs, batch 32, Adam), logistic, xgboost, "
               "or layer-weighted (a learned softmax weight per layer, with --layers).")
# The probe each command fits when --probe is not given.
DEFAULT_PROBE = {"fit": "mlp", "sweep": "logistic", "cv": "logistic"}
_PARAM_HELP = ("Probe parameter as NAME=VALUE (repeatable; VALUE is read as JSON when it parses), "
               "e.g. --param max_epochs=10 --param hidden_layer_sizes=[256,64].")


@app.callback()
def _root() -> None:
    """Train and evaluate probes (logistic, MLP, XGBoost, layer-weighted) on cached embeddings."""


def _command() -> str:
    return shlex.join(["classify", *sys.argv[1:]])


def _warn(message: str) -> None:
    typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, err=True)


def _probe_and_model(command: str, probe: str | None, model: str | None, backbone: str | None) -> tuple[str, str | None]:
    """The probe and the language model, from ``--probe`` and ``--model`` as in ``embedcache``.

    Deprecated spellings still work for one release, with a warning: ``--backbone M`` (now
    ``--model M``), and ``--model PROBE`` without ``--probe`` (a probe kind such as ``logistic``
    given where the language model now goes, as before 0.2)."""
    from classifiers.persistence import ESTIMATORS

    if probe is None and model in ESTIMATORS:
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
    return probe or DEFAULT_PROBE[command], model


def _params(items: list[str]) -> dict:
    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"--param takes NAME=VALUE, not {item!r}")
        try:
            params[name.strip()] = json.loads(value)
        except ValueError:
            params[name.strip()] = value
    return params


def _print_run(run, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from classifiers.metrics import SCALAR_METRICS

    err = Console(stderr=True)
    for warning in run["warnings"]:
        err.print(f"[bold red]WARNING[/]: {warning}", highlight=False)
    table = Table(title=run.title())
    table.add_column("")
    for m in SCALAR_METRICS:
        table.add_column(m.upper(), justify="right")
    for row in run.score_rows():
        table.add_row(f"{row.label} (n={row.n})", *[row.metrics[m].text() for m in SCALAR_METRICS])
    console = Console()
    console.print(table)
    for layer, weight in run.layer_weights().items():
        console.print(f"layer {layer}: weight {weight:.3f}", highlight=False)
    if run.kind == "sweep":
        best = run["best"]
        console.print(f"best on {best['by']}: layer {best['layer']}, {best['pool']} pooling",
                      highlight=False)
    console.print(f"wrote {out} (report: {out / 'report.html'})", highlight=False)


# Options shared by fit, sweep and cv: declared once.
Data = Annotated[Path, typer.Option("--data", help="Labelled task: CSV/TSV/Parquet with sequence and label (optional "
                                    "id, split), or a BED file with --reference whose header line names label "
                                    "(and split) columns after strand; rows its split column marks test are "
                                    "held out.")]
Reference = Annotated[Optional[Path], typer.Option("--reference", help="Genome FASTA a BED --data (and --test) is "
                                                   "cut from, as for `embedcache build --reference`.")]
Cache = Annotated[Path, typer.Option("--cache", help="The embedding cache (written by `embedcache build`).")]
Out = Annotated[Path, typer.Option("--out", help="Run directory to write.")]
Test = Annotated[Optional[Path], typer.Option("--test", help="Separate test file (else the data's split column, "
                                              "else a stratified 20%).")]
Model = Annotated[Optional[str], typer.Option("--model", help="Language model whose features to use: a released name, "
                                              "a checkpoint directory or a model key of the cache (default: its only "
                                              "model).")]
Probe = Annotated[Optional[str], typer.Option("--probe", help=_PROBE_HELP)]
Backbone = Annotated[Optional[str], typer.Option("--backbone", hidden=True, help="Deprecated: use --model.")]
Layer = Annotated[Optional[int], typer.Option("--layer", help="1-based layer (default: the model's last).")]
GroupBy = Annotated[Optional[str], typer.Option("--group-by", help="Column (e.g. chrom) whose groups never straddle "
                                                "train and test (cv: stay within one fold).")]
DedupTest = Annotated[bool, typer.Option("--dedup-test", help="Drop test sequences that also occur in train.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of the splits, the probes and the bootstrap (cv: the first).")]
Params = Annotated[list[str], typer.Option("--param", help=_PARAM_HELP)]
Bootstrap = Annotated[int, typer.Option("--bootstrap", help="Bootstrap resamples for the test intervals.")]
Force = Annotated[bool, typer.Option("--force", help="Replace an existing non-empty --out.")]


@app.command()
def fit(
    data: Data, cache: Cache, out: Out, probe: Probe = None, model: Model = None,
    test: Test = None, reference: Reference = None, backbone: Backbone = None, layer: Layer = None,
    layers: Optional[str] = typer.Option(None, "--layers", help="layer-weighted only: the layers it mixes: all (default), 1-12, 1,6,12."),
    pool: str = typer.Option("cls", "--pool", help="cls or mean."),
    group_by: GroupBy = None, dedup_test: DedupTest = False, seed: Seed = 0, param: Params = [],
    bootstrap: Bootstrap = 1000, force: Force = False,
) -> None:
    """Train a probe on cached features; write metrics, predictions, model, plots and report."""
    from classifiers.runs import fit_run

    probe, model = _probe_and_model("fit", probe, model, backbone)
    run = fit_run(data, cache=cache, out=out, model=probe, backbone=model, layer=layer,
                  layers=layers, pool=pool, test=test, group_by=group_by, dedup_test=dedup_test, seed=seed,
                  params=_params(param), n_bootstrap=bootstrap, force=force, command=_command(),
                  reference=reference)
    _print_run(run, out)


@app.command()
def sweep(
    data: Data, cache: Cache, out: Out,
    probe: Optional[str] = typer.Option(None, "--probe", help="Probe fitted on every layer and pooling: logistic "
                                        "(default), mlp or xgboost."),
    model: Model = None,
    layers: str = typer.Option("all", "--layers", help="all, a range (1-12) or a list (1,6,12)."),
    pool: str = typer.Option("cls", "--pool", help="Poolings, comma-separated: cls, mean or cls,mean."),
    test: Test = None, reference: Reference = None, backbone: Backbone = None, group_by: GroupBy = None,
    dedup_test: DedupTest = False, seed: Seed = 0, param: Params = [], bootstrap: Bootstrap = 1000,
    force: Force = False,
) -> None:
    """Which layer? Fit a probe on every (layer, pooling), same split; pick the best on validation."""
    from classifiers.runs import sweep_run

    probe, model = _probe_and_model("sweep", probe, model, backbone)
    run = sweep_run(data, cache=cache, out=out, model=probe, backbone=model, layers=layers, reference=reference,
                    pools=[p.strip() for p in pool.split(",") if p.strip()], test=test,
                    group_by=group_by, dedup_test=dedup_test, seed=seed, params=_params(param),
                    n_bootstrap=bootstrap, force=force, command=_command())
    _print_run(run, out)


@app.command()
def cv(
    data: Data, cache: Cache, out: Out, probe: Probe = None, model: Model = None,
    folds: int = typer.Option(5, "--folds", help="Folds (stratified; grouped with --group-by)."),
    seeds: int = typer.Option(1, "--seeds", help="Repetitions with different shuffles."),
    seed: Seed = 0, reference: Reference = None, backbone: Backbone = None, layer: Layer = None,
    pool: str = typer.Option("cls", "--pool", help="cls or mean."),
    group_by: GroupBy = None, param: Params = [], force: Force = False,
) -> None:
    """Cross-validate a probe and its baselines: mean ± sd over folds and seeds."""
    from classifiers.runs import cross_validate

    probe, model = _probe_and_model("cv", probe, model, backbone)
    run = cross_validate(data, cache=cache, out=out, model=probe, backbone=model, layer=layer,
                         pool=pool, folds=folds, seeds=seeds, seed=seed, group_by=group_by,
                         params=_params(param), force=force, command=_command(), reference=reference)
    _print_run(run, out)


@app.command()
def evaluate(
    run_dir: Path = typer.Argument(..., help="A run directory written by `classify fit`."),
    data: Path = typer.Option(..., "--data", help="Labelled file to evaluate on (all rows): as for fit's --data."),
    reference: Reference = None,
    out: Optional[Path] = typer.Option(None, "--out", help="Where to write (default RUN/evaluate-<file stem>)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="The cache, if it moved since the fit."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for the intervals."),
    force: bool = typer.Option(False, "--force", help="Replace an existing non-empty --out."),
) -> None:
    """Evaluate a fitted probe on another labelled file, with the run's language model, layer, pooling."""
    from classifiers.runs import default_evaluation_dir, evaluate_run

    target = out if out is not None else default_evaluation_dir(run_dir, data)
    run = evaluate_run(run_dir, data, out=target, cache=cache, n_bootstrap=bootstrap,
                       force=force, command=_command(), reference=reference)
    _print_run(run, target)


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="A run directory written by `classify fit`."),
    data: Path = typer.Option(..., "--data", help="Sequences to score: FASTA, CSV, TSV, Parquet, or BED with "
                              "--reference (no labels needed)."),
    reference: Reference = None,
    out: Optional[Path] = typer.Option(None, "--out", help="CSV to write (default RUN/predictions-<file stem>.csv)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="The cache, if it moved since the fit."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out."),
) -> None:
    """Score new sequences with a fitted probe (they must be in the cache: `embedcache build`)."""
    from classifiers.runs import predict_run

    written = predict_run(run_dir, data, out=out, cache=cache, force=force, reference=reference)
    typer.echo(f"wrote {written}")


@app.command()
def compare(
    runs: list[Path] = typer.Argument(..., help="Run directories (fit, cv or evaluate)."),
    out: Path = typer.Option(Path("compare"), "--out", help="Directory for compare.csv and the plots."),
    force: bool = typer.Option(False, "--force", help="Replace an existing non-empty --out."),
) -> None:
    """Put runs side by side: a table of test metrics, bar and metric-by-layer plots, ROC overlay."""
    from rich.console import Console
    from rich.table import Table

    from classifiers.metrics import SCALAR_METRICS
    from classifiers.runs import compare_runs
    from classifiers.runs.record import Estimate

    table = compare_runs(runs, out=out, force=force)
    view = Table(title="runs (test metrics; cv: mean ± sd; sweep: the layer chosen on validation)")
    for column in ("run", "kind", "model", "backbone", "layer", "pool", "n",
                   *[m.upper() for m in SCALAR_METRICS], "k-mer MCC", "majority MCC"):
        view.add_column(column, justify="left" if column in ("run", "kind", "model", "backbone", "pool") else "right")
    for r in table.to_dict("records"):
        kind = r["kind"]
        cells = []
        for m in SCALAR_METRICS:
            value, low, high = (_number(r[k]) for k in (m, f"{m}_low", f"{m}_high"))
            # compare's columns hold intervals; for cv they are mean ± sd.
            sd = None if kind != "cv" or value is None or high is None else high - value
            cells.append(Estimate(value, None if sd is not None else low,
                                  None if sd is not None else high, sd).text())
        view.add_row(r["name"], kind, r["model"], str(r["backbone"]), str(r["layer"]), r["pool"],
                     str(r["n"]), *cells, Estimate(_number(r["kmer_logistic_mcc"])).text(),
                     Estimate(_number(r["majority_mcc"])).text())
    Console().print(view)
    typer.echo(f"wrote {out}")


def _number(value):
    """A table cell as a float, or None when pandas holds a missing value."""
    return None if value is None or value != value else float(value)


def main() -> None:
    from cli.errors import run_app

    run_app(app)


if __name__ == "__main__":
    main()
