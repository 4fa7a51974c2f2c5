"""Tables on stdout: rich's boxes in a terminal; elsewhere (logs, pipes, CI) compact aligned
text that fits :data:`WIDTH` columns.

A cell is text, or a pair (detailed, compact), e.g. a value with its interval and the value
alone. Outside a terminal the detailed cells are used when the table fits, else the compact
ones; only when neither fits are text columns marked shrinkable shortened with an ellipsis
(numbers never are); a table that still does not fit is not printed, and the line says
where its full content is (the CSV).
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["WIDTH", "Column", "print_table", "render_text"]

#: Widest line printed outside a terminal.
WIDTH = 120
_GAP = "  "
_MIN_SHRUNK = 10


@dataclass(frozen=True)
class Column:
    """A table column: its header, alignment, and whether its text may be shortened."""

    name: str
    right: bool = False
    shrink: bool = False


Cell = str | tuple[str, str]


def render_text(title: str, columns: Sequence[Column], rows: Sequence[Sequence[Cell]], *,
                width: int = WIDTH, full: str | None = None) -> str:
    """The table as aligned plain text no wider than ``width``.

    Parameters
    ----------
    title : str
    columns : sequence of Column
    rows : sequence of sequence of Cell
    width : int
    full : str, optional
        Where the whole table is (a CSV path): named when the table cannot fit.
    """
    # Detailed cells, else compact ones; only then shorten text, the last resort.
    for pick, shrink in ((0, False), (1, False), (0, True), (1, True)):
        cells = [[c if isinstance(c, str) else c[pick] for c in row] for row in rows]
        widths = [max([len(col.name), *(len(r[i]) for r in cells)])
                  for i, col in enumerate(columns)]
        widths = _shrunk(widths, columns if shrink else (), width)
        if widths is not None:
            break
    else:
        where = f"; the full table is in {full}" if full else ""
        return f"{title}: too wide for {width} columns{where}\n"
    lines = [*textwrap.wrap(title, width), _line([c.name for c in columns], widths, columns)]
    lines += [_line(r, widths, columns) for r in cells]
    return "\n".join(lines) + "\n"


def print_table(title: str, columns: Sequence[Column], rows: Sequence[Sequence[Cell]], *,
                full: str | None = None) -> None:
    """Print a table: rich in a terminal (detailed cells), else :func:`render_text`."""
    if not sys.stdout.isatty():
        sys.stdout.write(render_text(title, columns, rows, full=full))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col.name, justify="right" if col.right else "left")
    for row in rows:
        table.add_row(*[c if isinstance(c, str) else c[0] for c in row])
    Console().print(table)


def _shrunk(widths: list[int], columns: Sequence[Column], limit: int) -> list[int] | None:
    """Widths with the widest shrinkable columns narrowed until the line fits, or None."""
    widths = list(widths)
    while sum(widths) + len(_GAP) * (len(widths) - 1) > limit:
        candidates = [i for i, c in enumerate(columns) if c.shrink and widths[i] > _MIN_SHRUNK]
        if not candidates:
            return None
        widest = max(candidates, key=lambda i: widths[i])
        widths[widest] -= 1
    return widths


def _line(cells: Sequence[str], widths: Sequence[int], columns: Sequence[Column]) -> str:
    out = []
    for text, w, col in zip(cells, widths, columns):
        if len(text) > w:
            text = text[:w - 1] + "…"
        out.append(text.rjust(w) if col.right else text.ljust(w))
    return _GAP.join(out).rstrip()
