"""`embedcache` command line: parse, call the library, print. No logic of its own."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

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


@app.command()
def convert(
    model: str = typer.Argument(..., help="Released model name (e.g. 50M_multi_species_v2) or checkpoint directory."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Destination directory (default: in place for a directory, "
        "$EMBEDCACHE_HOME/checkpoints/NAME for a released name)."
    ),
) -> None:
    """Write a non-executable copy (safetensors) of a checkpoint; later loads use it instead of the pickle."""
    from embedcache.checkpoints import CONVERTED_FILE, convert_checkpoint, load_checkpoint

    written = convert_checkpoint(model, out)
    typer.echo(f"wrote {written / CONVERTED_FILE}")
    typer.echo(f"digest {load_checkpoint(written).digest}")


def main() -> None:
    from cli.errors import run_app

    run_app(app)


if __name__ == "__main__":
    main()
