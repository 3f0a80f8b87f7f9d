"""FitTable: ids are never cut, at any width, on a terminal or piped."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console
from rich.text import Text

from fleetimage.output.tables import Column, FitTable

RUN_IDS = [f"20261127T1617{i:02d}Z-6034c{i}" for i in range(3)]
ACCOUNT = "123456789012"
INSTANCES = ["i-0d18c89dfb6f09d1a", "i-ef9787aa8e87d78b2", "i-79598efdcea4913a3"]
MESSAGE = "Internal error: snapshot creation failed [because reasons] " * 2


def _failures() -> FitTable:
    table = FitTable(
        [
            Column("instance", "id"),
            Column("account", "id"),
            Column("region", lead=True),
            Column("outcome"),
            Column("code"),
            Column("message", "text"),
        ],
        title="3 failures",
    )
    for instance in INSTANCES:
        table.add_row(
            instance, ACCOUNT, "ap-southeast-2", "failed", "Server.InternalError", Text(MESSAGE)
        )
    return table


def _runs() -> FitTable:
    table = FitTable(
        [
            Column("run id", "id"),
            Column("status"),
            *(Column(n, "number") for n in ("targets", "available", "to resume")),
        ],
        title="runs",
        box=None,
    )
    for run_id in RUN_IDS:
        table.add_row(run_id, "finished", "77", "70", "0")
    return table


def _render(table: FitTable, width: int, terminal: bool, soft_wrap: bool = False) -> str:
    console = Console(
        file=io.StringIO(), width=width, force_terminal=terminal, no_color=True, soft_wrap=False
    )
    console.print(table, soft_wrap=soft_wrap)
    out = re.sub(r"\x1b\[[0-9;]*m", "", console.file.getvalue())  # type: ignore[attr-defined]
    print(f"--- width {width}, terminal {terminal}, soft_wrap {soft_wrap}\n{out}")
    return out


def _lines_with(text: str, value: str) -> list[str]:
    return [line for line in text.splitlines() if value in line]


@pytest.mark.parametrize("width", [60, 80, 200])
@pytest.mark.parametrize("terminal", [True, False])
@pytest.mark.parametrize("soft_wrap", [True, False])
def test_ids_never_cut(width: int, terminal: bool, soft_wrap: bool) -> None:
    for table, ids in ((_failures(), [*INSTANCES, ACCOUNT]), (_runs(), RUN_IDS)):
        out = _render(table, width, terminal, soft_wrap)
        assert "…" not in out
        for value in ids:
            assert _lines_with(out, value), (value, out)
        # Every line fits unless soft-wrapped (then the terminal wraps, never we cut).
        if not soft_wrap:
            assert max(len(line) for line in out.splitlines()) <= width


def test_wide_terminal_gets_a_table_narrow_or_piped_one_record_per_line() -> None:
    wide = _render(_failures(), 200, True)
    assert "┃ instance" in wide and "┃ message" in wide
    for terminal, width in ((True, 60), (True, 80), (False, 200)):
        out = _render(_failures(), width, terminal, soft_wrap=True)
        lines = out.splitlines()
        assert lines[0] == "3 failures"
        assert len(lines) == 4  # one record per line
        for instance, line in zip(INSTANCES, lines[1:], strict=True):
            assert line.startswith(f"{instance} {ACCOUNT} ap-southeast-2: outcome failed, ")
            assert line.rstrip().endswith(MESSAGE.strip())
    runs = _render(_runs(), 60, False, soft_wrap=True).splitlines()
    assert runs[1] == f"{RUN_IDS[0]}: status finished, 77 targets, 70 available, 0 to resume"


def test_text_columns_wrap_before_anything_is_cut() -> None:
    # Wide enough for the ids and labels whole: still a table, the message wraps.
    out = _render(_failures(), 120, True)
    assert "┃ instance" in out
    assert len(out.splitlines()) > 3 + 4
    for value in INSTANCES:
        assert len(_lines_with(out, value)) == 1


def test_cells_must_match_columns() -> None:
    with pytest.raises(ValueError, match="2 cells for 6 columns"):
        _failures().add_row("a", "b")
