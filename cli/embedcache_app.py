"""`embedcache` command line: parse, call the library, print. No logic of its own."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="embedcache",
    help="Compute Nucleotide Transformer embeddings once and cache them in a Zarr store.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root() -> None:
    """Compute Nucleotide Transformer embeddings once and cache them in a Zarr store."""


def main() -> None:
    from cli.errors import run_app

    run_app(app)


if __name__ == "__main__":
    main()
