"""One place where exceptions become a message on stderr and a documented exit code.

Exit codes (also in the README):

* 0 — success;
* 1 — an environment fault: disk full, read-only or unwritable path, a file where a directory
  is expected, permission denied (and ``verify`` finding damage);
* 2 — bad input or arguments (an :class:`~embedcache.errors.EmbedcacheError`, or Typer's own
  usage errors);
* 130 — interrupted (Ctrl-C). Whatever a build committed before the interrupt is kept, whole
  rows only, and a rerun resumes from there.
"""

from __future__ import annotations

import errno
import signal
import sys
import warnings

import typer

EXIT_ENVIRONMENT = 1
EXIT_INTERRUPTED = 130

# What to do about an OSError, by errno; the message names the path the OS named.
_WAY_OUT = {
    errno.ENOSPC: "the disk is full: free space (or point --cache at a larger disk) and rerun; "
                  "rows committed so far are kept and the rerun resumes",
    errno.EDQUOT: "the disk quota is exhausted: free space or raise the quota and rerun; "
                  "rows committed so far are kept and the rerun resumes",
    errno.EROFS: "the file system is read-only: use a writable location",
    errno.EACCES: "permission denied: use a location you may write, or fix its permissions",
    errno.EPERM: "operation not permitted: use a location you may write, or fix its permissions",
    errno.ENOTDIR: "a regular file stands where a directory is expected: a cache is a directory "
                   "(a Zarr store); give another path",
    errno.EISDIR: "a directory stands where a file is expected: give the path of a file",
}


def environment_message(exc: OSError) -> str:
    """Say what an OS-level fault means for the user, naming the path and the way out."""
    where = exc.filename if exc.filename is not None else ""
    reason = _WAY_OUT.get(exc.errno, "the operating system refused the operation; check the path and retry")
    strerror = exc.strerror or type(exc).__name__
    return f"{where + ': ' if where else ''}{strerror}. {reason[0].upper()}{reason[1:]}."


class Interrupted(BaseException):
    """Ctrl-C, raised by our SIGINT handler.

    Not a KeyboardInterrupt: Click catches those and exits with a bare "Aborted!", before we
    could say what was kept. ``finally`` blocks and context managers still run on the way out.
    """


def _on_sigint(signum, frame) -> None:
    raise Interrupted()


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=warnings.showwarning):
    # Our own warnings are messages for the user (random weights, duplicate ids): show them as
    # such; anything else keeps Python's format, whose file and line help a bug report.
    if category.__module__.split(".")[0] in ("embedcache", "classifiers"):
        typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, err=True)
    else:
        _default(message, category, filename, lineno, file, line)


def run_app(app: typer.Typer) -> None:
    """Run a Typer app and turn what it raises into a message and an exit code.

    Unexpected exceptions keep their traceback: they are bugs, and the traceback is the report.
    """
    from embedcache.errors import EmbedcacheError

    signal.signal(signal.SIGINT, _on_sigint)
    warnings.showwarning = _show_warning
    try:
        app()
    except EmbedcacheError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        _say_committed(exc)
        sys.exit(exc.exit_code)
    except (Interrupted, KeyboardInterrupt) as exc:
        typer.secho(f"interrupted: {_committed(exc)}rows committed so far are kept (whole rows only); "
                    "rerun the same command to resume.", fg=typer.colors.YELLOW, err=True)
        sys.exit(EXIT_INTERRUPTED)
    except OSError as exc:
        typer.secho(f"error: {environment_message(exc)}", fg=typer.colors.RED, err=True)
        _say_committed(exc)
        sys.exit(EXIT_ENVIRONMENT)


def _say_committed(exc: BaseException) -> None:
    if getattr(exc, "rows_committed", None) is not None:
        typer.secho(f"{_committed(exc)}they are kept.", err=True)


def _committed(exc: BaseException) -> str:
    """How many new rows a build committed before it stopped, where it knows (``build`` sets it)."""
    n = getattr(exc, "rows_committed", None)
    return "" if n is None else f"this build committed {n} new row(s) to the cache; "
