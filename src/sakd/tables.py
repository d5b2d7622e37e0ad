"""Tables that stay readable in any terminal, 80 columns included.

:func:`print_table` prints rows under their headers as a rich table; where that table is wider
than the console it is printed with a lighter frame, and where even that does not fit, turned on
its side: one line per column, the rows side by side, in as many blocks as the width needs.
No cell is ever broken across lines or cut short.
"""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table


def _table(title: str | None, headers: list[str], rows: list[list[str]], left: set[str], frame) -> Table:
    light = frame is box.SIMPLE
    table = Table(title=title, box=frame, pad_edge=not light, collapse_padding=light, title_justify="left")
    for h in headers:
        table.add_column(h, justify="left" if h in left else "right", no_wrap=True)
    for r in rows:
        table.add_row(*r)
    return table


def _width(console: Console, table: Table) -> int:
    """The table's natural width (as if the console had no edge)."""
    return Measurement.get(console, console.options.update_width(10_000), table).maximum


def print_table(console: Console, headers: list[str], rows: list[list[str]], *, title: str | None = None,
                left: set[str] | frozenset = frozenset(), key: str | None = None) -> None:
    """Print ``rows`` (strings) under ``headers``; ``left``: the columns justified left; ``key``:
    the column that names a row (the header of each block when the table is turned)."""
    for frame in (box.HEAVY_HEAD, box.SIMPLE):
        table = _table(title, headers, rows, set(left), frame)
        if _width(console, table) <= console.width:
            console.print(table)
            return
    key = key or headers[0]
    k = headers.index(key)
    fields = [h for h in headers if h != key]
    blocks, block = [], []
    for r in rows:  # as many rows side by side as fit
        trial = block + [r]
        turned = _table(None, [key, *(x[k] for x in trial)],
                        [[f, *(x[headers.index(f)] for x in trial)] for f in fields], {key}, box.SIMPLE)
        if block and _width(console, turned) > console.width:
            blocks.append(block)
            trial = [r]
        block = trial
    blocks.append(block)
    if title:
        console.print(title, highlight=False)
    for b in blocks:
        console.print(_table(None, [key, *(x[k] for x in b)], [[f, *(x[headers.index(f)] for x in b)] for f in fields],
                             {key}, box.SIMPLE))
