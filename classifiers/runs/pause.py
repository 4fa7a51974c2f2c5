"""A test hook: hold a workflow at a named point, so a test can interrupt it exactly there.

With ``CLASSIFY_PAUSE_AT=NAME`` in the environment, a workflow reaching ``pause_point(NAME)``
prints ``paused at NAME`` on stderr and waits until the file named by ``CLASSIFY_PAUSE_UNTIL``
exists (or, without it, for ``CLASSIFY_PAUSE_SECONDS``, default 120). A test reads that line
and sends SIGINT: the signal lands at a known place, not at a moment guessed with a sleep.
Without the variable a pause point costs one dictionary lookup.

Points: ``fit:fitted``, ``sweep:fitting`` (after the first layer's fit), ``cv:fold`` (after
the first fold), ``predict:scored`` (before the CSV is written), ``run:moving`` (while the
finished run directory is moved into place).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

__all__ = ["pause_point"]


def pause_point(name: str) -> None:
    """Wait here if the environment asks for a pause at ``name`` (see the module docstring)."""
    if os.environ.get("CLASSIFY_PAUSE_AT") != name:
        return
    print(f"paused at {name}", file=sys.stderr, flush=True)
    until = os.environ.get("CLASSIFY_PAUSE_UNTIL")
    deadline = time.monotonic() + float(os.environ.get("CLASSIFY_PAUSE_SECONDS", 120))
    while time.monotonic() < deadline and not (until and Path(until).exists()):
        time.sleep(0.02)
