"""The per-lane rows both progress displays draw (imaging and prune): a table with a bar on a
terminal, stamped plain lines otherwise. Each display says which columns it has."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

__all__ = ["LaneRow", "bar", "lane_lines", "lane_table"]


class LaneRow(Protocol):
    @property
    def account(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def eta(self) -> str: ...


R = TypeVar("R", bound=LaneRow)


def _label(row: LaneRow, accounts: int) -> str:
    return f"{row.account}/{row.region}" if accounts > 1 and row.account else row.region


def bar(done: int, of: int, *, empty: float, width: int = 10) -> str:
    """``[#####.....]  50%``: the plain lines' bar (``empty``: the share shown when ``of`` is 0)."""
    share = done / of if of else empty
    filled = min(width, math.floor(share * width))
    return f"[{'#' * filled}{'.' * (width - filled)}] {share:4.0%}"


def lane_table(
    rows: Sequence[R],
    total: R,
    columns: Sequence[str],
    cells: Callable[[R], Sequence[str]],
    progress: Callable[[R], tuple[int, int]],
) -> Table:
    """One row per lane and a bold total: label, bar (``progress``: done, of), the cells, ETA."""
    accounts = len({r.account for r in rows})
    table = Table(box=None, pad_edge=False)
    table.add_column("region", no_wrap=True)
    table.add_column("", no_wrap=True)  # the bar
    for name in columns:
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("ETA", justify="right", no_wrap=True)
    for row in [*rows, total]:
        style = "bold" if row is total else ""
        done, of = progress(row)
        table.add_row(
            Text(_label(row, accounts), style=style),
            ProgressBar(total=max(of, 1), completed=done, width=20),
            *(Text(value, style=style) for value in cells(row)),
            Text(row.eta, style=style),
        )
    return table


def lane_lines(
    rows: Sequence[R],
    total: R,
    columns: Sequence[str],
    cells: Callable[[R], Sequence[str]],
    bar_of: Callable[[R], str],
    stamp: str,
) -> list[str]:
    """``[stamp] region: N name, ..., [bar], ETA x`` per lane (and the total if several)."""
    accounts = len({r.account for r in rows})
    out = []
    for row in [*rows, total] if len(rows) > 1 else rows:
        line = ", ".join(f"{v} {n}" for n, v in zip(columns, cells(row), strict=True))
        # The bar goes after the counts: "region: N targets, ..." stays greppable.
        out.append(f"{stamp} {_label(row, accounts)}: {line}, {bar_of(row)}, ETA {row.eta}")
    return out
