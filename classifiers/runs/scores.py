"""A metric's value with its interval or spread, and a table row of them: the one place such
a value is formatted (the report, the command line's tables and ``compare`` print these).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from classifiers.metrics import SCALAR_METRICS

__all__ = ["Estimate", "ScoreRow", "estimates", "summary_estimates"]


@dataclass(frozen=True)
class Estimate:
    """A metric's value with a bootstrap interval (``low``, ``high``) or a standard
    deviation (``sd``, cross-validation); either may be missing."""

    value: float | None
    low: float | None = None
    high: float | None = None
    sd: float | None = None

    def text(self, digits: int = 3) -> str:
        if self.value is None:
            return "–"
        out = f"{self.value:.{digits}f}"
        if self.sd is not None:
            return f"{out} ± {self.sd:.{digits}f}"
        if self.low is not None and self.high is not None:
            return f"{out} [{self.low:.{digits}f}, {self.high:.{digits}f}]"
        return out

    def bounds(self) -> tuple[float | None, float | None]:
        """(low, high): the interval, or mean ± sd."""
        if self.value is not None and self.sd is not None:
            return self.value - self.sd, self.value + self.sd
        return self.low, self.high


@dataclass(frozen=True)
class ScoreRow:
    """One line of a metrics table: a label, its row count, and an Estimate per metric."""

    label: str
    n: int | None
    metrics: dict[str, Estimate]


def estimates(values: Mapping, intervals: Mapping | None = None) -> dict[str, Estimate]:
    """Every scalar metric of ``values`` with its ``[low, high]`` from ``intervals``."""
    intervals = intervals or {}
    out = {}
    for m in SCALAR_METRICS:
        low, high = (intervals.get(m) or [None, None])[:2]
        out[m] = Estimate(values.get(m), low, high)
    return out


def summary_estimates(summary: Mapping) -> dict[str, Estimate]:
    """Every scalar metric as mean ± sd (a cross-validation summary)."""
    return {m: Estimate(summary[m]["mean"], sd=summary[m]["std"] or 0.0) for m in SCALAR_METRICS}
