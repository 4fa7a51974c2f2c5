"""One place where exceptions become a message on stderr and a documented exit code.

Exit codes (also in the README):

* 0 — success;
* 1 — an environment fault: disk full, a file grown past the size limit, read-only or
  unwritable path, a file where a directory is expected, permission denied, object storage
  unreachable, lost or without the bucket; a model computing NaN or infinity (and ``verify``
  finding damage);
* 2 — bad input or arguments (an :class:`~embedcache.errors.EmbedcacheError`, or Typer's own
  usage errors);
* 130 — interrupted (Ctrl-C). Whatever a build committed before the interrupt is kept, whole
  rows only, and a rerun resumes from there.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import warnings
from urllib.parse import urlsplit

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
    errno.EFBIG: "a file reached the largest size allowed (the shell's `ulimit -f`, or the file system's "
                 "own limit): raise the limit or put the cache on another file system, then rerun; rows "
                 "committed so far are kept and the rerun resumes",
}
# botocore's errors for an endpoint that does not answer or stopped answering.
_UNREACHABLE = ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
                "ProxyConnectionError", "SSLError", "HTTPClientError")


def environment_message(exc: OSError) -> str:
    """Say what an OS-level fault means for the user, naming the path and the way out.

    A write error often names no file (``write()`` does not know it); a build then tells
    which store it was writing (``exc.store``)."""
    where = exc.filename if exc.filename is not None else getattr(exc, "store", None) or ""
    reason = _WAY_OUT.get(exc.errno, "the operating system refused the operation; check the path and retry")
    strerror = exc.strerror or type(exc).__name__
    return f"{where + ': ' if where else ''}{strerror}. {reason[0].upper()}{reason[1:]}."


def object_storage_message(exc: BaseException, argv: list[str] | None = None) -> str | None:
    """Say what an object-storage (S3) fault means, naming the endpoint or the bucket, or ``None``
    when ``exc`` (or what caused it) is not one. ``argv`` is searched for the store's URL, which
    the botocore errors do not carry."""
    fault = next((e for e in _causes(exc) if type(e).__module__.startswith(("botocore", "aiobotocore"))), None)
    if fault is None:
        return None
    url = next((a for a in (sys.argv if argv is None else argv) if a.startswith(("s3://", "s3a://"))), None)
    store = f" (the cache {url})" if url else ""
    names = {c.__name__ for c in type(fault).__mro__}
    kwargs = getattr(fault, "kwargs", {}) or {}
    if names & set(_UNREACHABLE):
        endpoint = _origin(kwargs.get("endpoint_url")) or _origin(os.environ.get("AWS_ENDPOINT_URL")) or "AWS"
        return (f"cannot reach the S3 endpoint {endpoint}{store}: {fault}. Check that the endpoint is up and "
                "its address is right (AWS_ENDPOINT_URL, or --storage-option endpoint_url=...), then rerun the "
                "same command; rows committed so far are kept and a rerun resumes.")
    endpoint = _origin(os.environ.get("AWS_ENDPOINT_URL")) or "AWS S3"
    if "NoCredentialsError" in names or "PartialCredentialsError" in names:
        return (f"no S3 credentials were found for {endpoint}{store}. Set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or pass --storage-option anon=true for a public bucket.")
    error = (getattr(fault, "response", None) or {}).get("Error", {})
    code = error.get("Code", type(fault).__name__)
    if code in ("NoSuchBucket", "404") or "NoSuchBucket" in names:
        bucket = error.get("BucketName") or (url.split("://", 1)[1].split("/", 1)[0] if url else "?")
        return (f"the bucket {bucket!r} does not exist on the S3 endpoint {endpoint}{store}. Check the bucket "
                f"name in the URL, or create the bucket first (e.g. `aws s3 mb s3://{bucket}`).")
    if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "AllAccessDisabled"):
        return (f"the S3 endpoint {endpoint} refused access{store} ({code}). Check the credentials "
                "(AWS_ACCESS_KEY_ID / AWS_PROFILE) and that they may read and write this bucket.")
    return f"the S3 endpoint {endpoint} refused a request{store}: {fault}. Check the URL and the credentials, then rerun."


def _causes(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _origin(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else url


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
        typer.secho(f"error: {exc.cli_message()}", fg=typer.colors.RED, err=True)
        _say_committed(exc)
        sys.exit(exc.exit_code)
    except (Interrupted, KeyboardInterrupt) as exc:
        typer.secho(f"interrupted: {_committed(exc)}rows committed so far are kept (whole rows only); "
                    "rerun the same command to resume.", fg=typer.colors.YELLOW, err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        message = object_storage_message(exc)
        if message is None and not isinstance(exc, OSError):
            raise  # a bug: the traceback is the report
        typer.secho(f"error: {message or environment_message(exc)}", fg=typer.colors.RED, err=True)
        _say_committed(exc)
        _quiet_leftovers()
        sys.exit(EXIT_ENVIRONMENT)


def _quiet_leftovers() -> None:
    """After the message, nothing more: writes still in flight on Zarr's event loop fail the
    same way, and asyncio would log each as "Task exception was never retrieved" at exit."""
    logging.getLogger("asyncio").setLevel(logging.CRITICAL + 1)


def _say_committed(exc: BaseException) -> None:
    if getattr(exc, "rows_committed", None) is not None:
        typer.secho(f"{_committed(exc)}they are kept.", err=True)


def _committed(exc: BaseException) -> str:
    """How many new rows a build committed before it stopped, where it knows (``build`` sets it)."""
    n = getattr(exc, "rows_committed", None)
    return "" if n is None else f"this build committed {n} new row(s) to the cache; "
