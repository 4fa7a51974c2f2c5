"""One place where library errors become a message on stderr and an exit code."""

from __future__ import annotations

import sys

import typer


def run_app(app: typer.Typer) -> None:
    """Run a Typer app; an :class:`EmbedcacheError` prints its message and exits with code 2.

    Unexpected exceptions keep their traceback: they are bugs, and the traceback is the report.
    """
    from embedcache.errors import EmbedcacheError

    try:
        app()
    except EmbedcacheError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(exc.exit_code)
