"""A test hook: a writer stops itself at a named point of a commit, so tests make faults happen.

``EMBEDCACHE_TEST_PAUSE="<point>:<marker file>[:<n>]"``: the ``n``-th time (default the
first) this process reaches ``<point>`` it writes its pid to ``<marker file>`` and stops
itself with SIGSTOP. The test, which waits for the marker, then does what it tests (lets
the lease lapse, lets other writers commit) and kills the writer or continues it
(SIGCONT). Points: ``locked`` (the commit lock just taken), ``before_publish`` (chunks
written, the manifest not yet swapped in), ``after_publish`` (swapped in, superseded
objects not yet deleted). Unset, it costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

__all__ = ["point"]

_seen: dict[str, int] = {}


def point(name: str) -> None:
    """Stop here if the hook names this point (see the module docs)."""
    spec = os.environ.get("EMBEDCACHE_TEST_PAUSE")
    if not spec:
        return
    wanted, marker, *nth = spec.split(":")
    if wanted != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] != int(nth[0] if nth else 1):
        return
    tmp = Path(f"{marker}.tmp")
    tmp.write_text(str(os.getpid()))
    tmp.replace(marker)  # whole, so the test never reads a half-written pid
    os.kill(os.getpid(), signal.SIGSTOP)
