"""`classify` command line: parse, call the classifiers library, print."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    name="classify",
    help="Train and evaluate probes (logistic, MLP, XGBoost) on cached embeddings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

_MODEL_HELP = "Probe: mlp (JAX/Optax, 128-64 ReLU, 6 epochs, batch 32, Adam), logistic or xgboost."
_PARAM_HELP = ("Probe parameter as NAME=VALUE (repeatable; VALUE is read as JSON when it parses), "
               "e.g. --param max_epochs=10 --param hidden_layer_sizes=[256,64].")


@app.callback()
def _root() -> None:
    """Train and evaluate probes (logistic, MLP, XGBoost) on cached embeddings."""


def _command() -> str:
    return shlex.join(["classify", *sys.argv[1:]])


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


def _print_run(run: dict, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from classifiers.metrics import SCALAR_METRICS

    console = Console()
    err = Console(stderr=True)
    for warning in run["warnings"]:
        err.print(f"[bold red]WARNING[/]: {warning}", highlight=False)
    features = run["features"]
    backbone = features["backbone"]
    table = Table(title=f"{run['model']['kind']} probe · {backbone['name']} (key {backbone['key']}) "
                        f"· layer {features['layer']} · {features['pool']}")
    table.add_column("")
    for m in SCALAR_METRICS:
        table.add_column(m.upper(), justify="right")

    def cell(value, interval=None):
        if value is None:
            return "–"
        return f"{value:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")

    if run["kind"] == "cv":
        def mean_sd(s):
            return ["–" if s[m]["mean"] is None else
                    f"{s[m]['mean']:.3f} ± {(s[m]['std'] or 0):.3f}" for m in SCALAR_METRICS]
        table.add_row("probe", *mean_sd(run["cv"]["summary"]))
        for name, s in run["cv"]["baseline_summaries"].items():
            table.add_row(f"baseline: {name}", *mean_sd(s))
    else:
        ci = run["intervals"]["test"]
        for split, values in run["metrics"].items():
            with_ci = split in ("test", "evaluation")
            table.add_row(f"{split} (n={values['n']})",
                          *[cell(values[m], ci.get(m) if with_ci else None) for m in SCALAR_METRICS])
        for name, b in run.get("baselines", {}).items():
            test = b["metrics"]["test"]
            table.add_row(f"baseline: {name} (test)",
                          *[cell(test[m], b["intervals"].get(m)) for m in SCALAR_METRICS])
    console.print(table)
    console.print(f"wrote {out} (report: {out / 'report.html'})", highlight=False)


@app.command()
def fit(
    model: str = typer.Option("mlp", "--model", help=_MODEL_HELP),
    data: Path = typer.Option(..., "--data", help="Labelled task: CSV/TSV/Parquet with sequence and label (optional id, split)."),
    cache: Path = typer.Option(..., "--cache", help="The embedding cache (written by `embedcache build`)."),
    out: Path = typer.Option(..., "--out", help="Run directory to write."),
    test: Optional[Path] = typer.Option(None, "--test", help="Separate test file (else the data's split column, else a stratified 20%)."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="Model name or key in the cache (default: its only model)."),
    layer: Optional[int] = typer.Option(None, "--layer", help="1-based layer (default: the backbone's last)."),
    pool: str = typer.Option("cls", "--pool", help="cls or mean."),
    group_by: Optional[str] = typer.Option(None, "--group-by", help="Column (e.g. chrom) whose groups never straddle train and test."),
    dedup_test: bool = typer.Option(False, "--dedup-test", help="Drop test sequences that also occur in train."),
    seed: int = typer.Option(0, "--seed", help="Seed of the splits, the probe and the bootstrap."),
    param: list[str] = typer.Option([], "--param", help=_PARAM_HELP),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for the test intervals."),
    force: bool = typer.Option(False, "--force", help="Replace an existing non-empty --out."),
) -> None:
    """Train a probe on cached features; write metrics, predictions, model, plots and report."""
    from classifiers.runs import fit_run

    run = fit_run(data, cache=cache, out=out, model=model, backbone=backbone, layer=layer,
                  pool=pool, test=test, group_by=group_by, dedup_test=dedup_test, seed=seed,
                  params=_params(param), n_bootstrap=bootstrap, force=force, command=_command())
    _print_run(run, out)


@app.command()
def cv(
    model: str = typer.Option("logistic", "--model", help=_MODEL_HELP),
    data: Path = typer.Option(..., "--data", help="Labelled task; rows its split column marks test are held out."),
    cache: Path = typer.Option(..., "--cache", help="The embedding cache."),
    out: Path = typer.Option(..., "--out", help="Run directory to write."),
    folds: int = typer.Option(5, "--folds", help="Folds (stratified; grouped with --group-by)."),
    seeds: int = typer.Option(1, "--seeds", help="Repetitions with different shuffles."),
    seed: int = typer.Option(0, "--seed", help="First seed."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="Model name or key in the cache."),
    layer: Optional[int] = typer.Option(None, "--layer", help="1-based layer (default: the last)."),
    pool: str = typer.Option("cls", "--pool", help="cls or mean."),
    group_by: Optional[str] = typer.Option(None, "--group-by", help="Column whose groups stay within one fold."),
    param: list[str] = typer.Option([], "--param", help=_PARAM_HELP),
    force: bool = typer.Option(False, "--force", help="Replace an existing non-empty --out."),
) -> None:
    """Cross-validate a probe and its baselines: mean ± sd over folds and seeds."""
    from classifiers.runs import cross_validate

    run = cross_validate(data, cache=cache, out=out, model=model, backbone=backbone, layer=layer,
                         pool=pool, folds=folds, seeds=seeds, seed=seed, group_by=group_by,
                         params=_params(param), force=force, command=_command())
    _print_run(run, out)


@app.command()
def evaluate(
    run_dir: Path = typer.Argument(..., help="A run directory written by `classify fit`."),
    data: Path = typer.Option(..., "--data", help="Labelled file to evaluate on (all rows)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where to write (default RUN/evaluate-<file stem>)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="The cache, if it moved since the fit."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for the intervals."),
    force: bool = typer.Option(False, "--force", help="Replace an existing non-empty --out."),
) -> None:
    """Evaluate a fitted probe on another labelled file, with the run's backbone, layer, pooling."""
    from classifiers.runs import default_evaluation_dir, evaluate_run

    target = out if out is not None else default_evaluation_dir(run_dir, data)
    run = evaluate_run(run_dir, data, out=target, cache=cache, n_bootstrap=bootstrap,
                       force=force, command=_command())
    _print_run(run, target)


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="A run directory written by `classify fit`."),
    data: Path = typer.Option(..., "--data", help="Sequences to score: FASTA, CSV, TSV or Parquet (no labels needed)."),
    out: Optional[Path] = typer.Option(None, "--out", help="CSV to write (default RUN/predictions-<file stem>.csv)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="The cache, if it moved since the fit."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out."),
) -> None:
    """Score new sequences with a fitted probe (they must be in the cache: `embedcache build`)."""
    from classifiers.runs import predict_run

    written = predict_run(run_dir, data, out=out, cache=cache, force=force)
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

    table = compare_runs(runs, out=out, force=force)
    view = Table(title="runs (test metrics; cv: mean ± sd)")
    for column in ("run", "kind", "model", "backbone", "layer", "pool", "n",
                   *[m.upper() for m in SCALAR_METRICS], "k-mer MCC", "majority MCC"):
        view.add_column(column, justify="left" if column in ("run", "kind", "model", "backbone", "pool") else "right")
    for r in table.to_dict("records"):
        def cell(m):
            v, lo, hi = r[m], r[f"{m}_low"], r[f"{m}_high"]
            if v is None or v != v:
                return "–"
            return f"{v:.3f}" + ("" if lo is None or lo != lo else f" [{lo:.3f}, {hi:.3f}]")
        view.add_row(r["name"], r["kind"], r["model"], str(r["backbone"]), str(r["layer"]), r["pool"],
                     str(r["n"]), *[cell(m) for m in SCALAR_METRICS],
                     _fmt(r["kmer_logistic_mcc"]), _fmt(r["majority_mcc"]))
    Console().print(view)
    typer.echo(f"wrote {out}")


def _fmt(value) -> str:
    return "–" if value is None or value != value else f"{value:.3f}"


def main() -> None:
    from cli.errors import run_app

    run_app(app)


if __name__ == "__main__":
    main()
