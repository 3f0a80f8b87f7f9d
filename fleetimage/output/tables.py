"""Tables that never cut an id: a rich table when it fits, else one record per line.

An operator copies run ids into ``fleetimage resume``, account and instance ids into the
console: a table that shrinks them to ``20261129T052213Z-f…`` is useless. :class:`FitTable`
decides when it is rendered, from the console's width and whether it is a terminal:

- on a terminal wide enough, a rich table in which ids, numbers and short labels are never
  wrapped nor cut, and only free-text columns (messages, names) wrap;
- on a terminal too narrow for that, and whenever the output is not a terminal (piped,
  redirected, captured), one record per line, never cut, never wrapped by us (the terminal
  may wrap a long line, but every value is whole and on one line for ``grep``)::

      20261127T161751Z-6034c7: status finished, took 9.4s, 77 targets, 70 available

  The *lead* columns (ids, region) come first, then ``name value`` for text and
  ``value name`` for counts, empty cells left out.

Whether the table fits is checked twice: arithmetic on the columns' minimum widths first,
then the rendered lines themselves (every id whole, nothing cut with ``…``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from rich import box as boxes
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

__all__ = ["Cell", "Column", "FitTable"]

Cell = str | Text
Kind = Literal["id", "label", "number", "text"]

# A free-text column is not worth showing narrower than this (it would fold every word).
MIN_TEXT_WIDTH = 12
_CUT = "…"


@dataclass(frozen=True, slots=True)
class Column:
    """One column. ``kind``: ``id`` (never cut, leads a record line), ``label`` (short text,
    never cut), ``number`` (right-aligned count, never cut) or ``text`` (wraps).
    ``lead``: starts the record line (default: ids). ``named``: the record line shows the
    column's name beside the value (default: yes, except for lead columns)."""

    name: str
    kind: Kind = "label"
    lead: bool | None = None
    named: bool | None = None

    @property
    def leads(self) -> bool:
        return self.kind == "id" if self.lead is None else self.lead

    @property
    def is_named(self) -> bool:
        return (not self.leads) if self.named is None else self.named


@dataclass(slots=True)
class _Row:
    cells: tuple[Text, ...]
    style: str = ""
    end_section: bool = False


@dataclass
class FitTable:
    """A table that becomes records when it cannot show its ids whole (see the module doc)."""

    columns: list[Column]
    title: str | None = None
    box: boxes.Box | None = boxes.HEAVY_HEAD
    rows: list[_Row] = field(default_factory=list)

    def add_row(self, *cells: Cell, style: str = "", end_section: bool = False) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        texts = tuple(c.copy() if isinstance(c, Text) else Text(c) for c in cells)
        self.rows.append(_Row(texts, style, end_section))

    # --- rendering ---------------------------------------------------------------------

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        if console.is_terminal and self._minimum_width() <= width:
            table = self.table()
            lines = console.render_lines(table, options.update(height=None), pad=False)
            if self._intact(["".join(s.text for s in line) for line in lines]):
                yield table
                return
        yield from self.records(console, options)

    def table(self) -> Table:
        """The rich table: ids, labels and numbers whole on one line; text columns fold."""
        table = Table(
            title=self.title,
            title_justify="left",
            box=self.box,
            pad_edge=self.box is not None,
        )
        for col, natural in zip(self.columns, self._natural_widths(), strict=True):
            if col.kind == "text":
                table.add_column(col.name, overflow="fold", min_width=min(natural, MIN_TEXT_WIDTH))
            else:
                table.add_column(
                    # The header may wrap between words; the cells never do.
                    Text(col.name, no_wrap=False, overflow="fold"),
                    justify="right" if col.kind == "number" else "left",
                    no_wrap=True,
                    overflow="ellipsis",
                    min_width=natural,
                )
        for row in self.rows:
            table.add_row(*row.cells, style=row.style or None, end_section=row.end_section)
        return table

    def record_lines(self) -> Iterator[Text]:
        """One :class:`Text` per row: lead values, then the other non-empty cells."""
        for row in self.rows:
            lead = [c for col, c in zip(self.columns, row.cells, strict=True) if col.leads and c]
            rest: list[Text] = []
            for col, cell in zip(self.columns, row.cells, strict=True):
                if col.leads or not cell.plain.strip():
                    continue
                if not col.is_named:
                    rest.append(cell)
                elif col.kind == "number":
                    rest.append(Text.assemble(cell, f" {col.name}"))
                else:
                    rest.append(Text.assemble(f"{col.name} ", cell))
            line = Text(style=row.style)
            line.append_text(Text(" ").join(lead))
            if lead and rest:
                line.append(": ")
            line.append_text(Text(", ").join(rest))
            yield line

    def records(self, console: Console, options: ConsoleOptions) -> RenderResult:
        # print(soft_wrap=True) (the CLI's consoles): each record stays one line, whole; the
        # terminal may wrap it. Otherwise rich wraps between words: ids (no spaces) stay whole.
        soft = options.no_wrap and options.overflow == "ignore"
        if self.title:
            yield Text(self.title)
        for line in self.record_lines():
            if soft:
                yield from line.render(console, end="")
                yield Segment.line()
            else:
                yield line

    # --- fitting -----------------------------------------------------------------------

    def _natural_widths(self) -> list[int]:
        widths = []
        for i, col in enumerate(self.columns):
            longest_word = max((len(w) for w in col.name.split()), default=1)
            cells = max((r.cells[i].cell_len for r in self.rows), default=0)
            widths.append(max(cells, longest_word))
        return widths

    def _minimum_width(self) -> int:
        total = 0
        for col, natural in zip(self.columns, self._natural_widths(), strict=True):
            total += min(natural, MIN_TEXT_WIDTH) if col.kind == "text" else natural
        padding = 2 * len(self.columns) - (0 if self.box is not None else 2)
        borders = len(self.columns) + 1 if self.box is not None else 0
        return total + padding + borders

    def _intact(self, lines: list[str]) -> bool:
        """Every id whole on some line, and no cell cut with an ellipsis."""
        text = "\n".join(lines)
        source_cuts = sum(c.plain.count(_CUT) for r in self.rows for c in r.cells)
        if text.count(_CUT) > source_cuts:
            return False
        ids = [
            c.plain
            for r in self.rows
            for col, c in zip(self.columns, r.cells, strict=True)
            if col.kind == "id" and c.plain
        ]
        return all(any(value in line for line in lines) for value in ids)
