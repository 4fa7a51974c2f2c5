"""`classify` command line: parse, call the classifiers library, print."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="classify",
    help="Train and evaluate probes (logistic, MLP, XGBoost) on cached embeddings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root() -> None:
    """Train and evaluate probes (logistic, MLP, XGBoost) on cached embeddings."""


def main() -> None:
    from cli.errors import run_app

    run_app(app)


if __name__ == "__main__":
    main()
