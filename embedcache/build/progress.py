"""Build progress where users look: a live bar on a terminal, plain lines in a log file.

Without a terminal (a batch job's log), a line with rows done/total, sequences/s and ETA is
written at least every ``$EMBEDCACHE_PROGRESS_SECONDS`` (default 30) and a summary at the end.
"""

from __future__ import annotations

import os
import sys
import time

__all__ = ["Progress"]


class Progress:
    """Progress of ``total`` sequences on stderr; silent when ``quiet``."""

    def __init__(self, total: int, quiet: bool, stream=None):
        self.total, self.done, self.tokens = int(total), 0, 0
        self._stream = stream or sys.stderr
        self._t0 = self._last = time.perf_counter()
        self._every = float(os.environ.get("EMBEDCACHE_PROGRESS_SECONDS", 30))
        self._bar = None
        self._quiet = quiet
        if quiet or not self._stream.isatty():
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        self._bar = Bar(TextColumn("embedding"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[rate]:>8.1f} seq/s"),
                        TextColumn("{task.fields[tok_rate]:>9.0f} tok/s"), TextColumn("ETA"), TimeRemainingColumn(),
                        console=Console(file=self._stream))
        self._task = self._bar.add_task("embed", total=self.total, rate=0.0, tok_rate=0.0)
        self._bar.start()

    def advance(self, sequences: int, tokens: int) -> None:
        self.done += sequences
        self.tokens += tokens
        now = time.perf_counter()
        if self._bar is not None:
            tok_rate = self.tokens / max(now - self._t0, 1e-9)
            self._bar.update(self._task, completed=self.done, rate=self._rate(now), tok_rate=tok_rate)
        elif not self._quiet and now - self._last >= self._every:
            self._last = now
            rate = self._rate(now)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            self._line(f"embedded {self.done}/{self.total} sequences, {rate:.1f} seq/s, ETA {_clock(eta)}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif not self._quiet:
            seconds = time.perf_counter() - self._t0
            self._line(f"embedded {self.done}/{self.total} sequences in {_clock(seconds)} "
                       f"({self._rate(time.perf_counter()):.1f} seq/s)")

    def _rate(self, now: float) -> float:
        return self.done / max(now - self._t0, 1e-9)

    def _line(self, text: str) -> None:
        print(text, file=self._stream, flush=True)


def _clock(seconds: float) -> str:
    if seconds == float("inf"):
        return "unknown"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
