"""Prune's live progress, in the style of imaging's (:mod:`fleetimage.output.progress`).

:class:`PruneProgress` only counts: it is told each settled item (``on_item``) and the lanes'
events (``Throttled``), and never blocks. Per (account, region) and overall it shows: a bar
(settled of planned), to delete, deleted, kept at deletion (a re-check said no), failed,
throttled answers, deletions per second over the last few seconds, and an ETA: what is left
at the observed rate, or, before any deletion, at the DeregisterImage bucket's bound (its burst
at once, then its rate) when ``limits`` is given. Render it with
:func:`~fleetimage.output.progress.show_progress`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from rich.console import Group, RenderableType
from rich.text import Text

from fleetimage.core.durations import format_duration
from fleetimage.core.models import Event, Throttled
from fleetimage.output.lane_rows import bar, lane_lines, lane_table
from fleetimage.output.prune_report import PruneItem

__all__ = ["PruneProgress", "PruneRow"]

_RATE_WINDOW_S = 5.0
Limits = Callable[[str], Mapping[str, tuple[float, float]]]
_COLUMNS = ("to delete", "deleted", "kept", "failed", "throttled", "deleted/s")


@dataclass(slots=True)
class PruneRow:
    account: str
    region: str
    planned: int = 0
    deleted: int = 0
    kept: int = 0
    failed: int = 0
    throttled: int = 0
    rate_per_s: float = 0.0
    eta_s: float | None = None
    recent: deque[float] = field(default_factory=deque)

    @property
    def done(self) -> int:
        return self.deleted + self.kept + self.failed

    @property
    def eta(self) -> str:
        if self.eta_s is None:
            return "?"
        return "< 1s" if self.eta_s < 1 else format_duration(round(self.eta_s))


class PruneProgress:
    """Counts a prune's settled items per lane; ``on_item`` and ``__call__`` are its inputs."""

    def __init__(self, limits: Limits | None = None, clock: Callable[[], float] = time.monotonic):
        self.limits = limits
        self._clock = clock
        self._started = clock()
        self._rows: dict[tuple[str, str], PruneRow] = {}

    def _row(self, account: str, region: str) -> PruneRow:
        key = (account, region)
        if key not in self._rows:
            self._rows[key] = PruneRow(account, region)
        return self._rows[key]

    def seed(self, items: Iterable[PruneItem]) -> None:
        """The plan: every item still to be deleted (``planned``)."""
        for item in items:
            if item.outcome == "planned":
                self._row(item.account, item.region).planned += 1

    def on_item(self, item: PruneItem) -> None:
        row = self._row(item.account, item.region)
        if item.outcome == "deleted":
            row.deleted += 1
            row.recent.append(self._clock())
        elif item.outcome == "kept":
            row.kept += 1
        elif item.outcome == "failed":
            row.failed += 1

    def __call__(self, event: Event) -> None:
        if isinstance(event, Throttled):
            self._row(event.account, event.region).throttled += 1

    def elapsed(self) -> float:
        return self._clock() - self._started

    def rows(self) -> list[PruneRow]:
        now = self._clock()
        window = min(_RATE_WINDOW_S, max(now - self._started, 1e-3))
        out = []
        for key in sorted(self._rows):
            row = self._rows[key]
            while row.recent and row.recent[0] < now - _RATE_WINDOW_S:
                row.recent.popleft()
            row.rate_per_s = len(row.recent) / window
            left = max(row.planned - row.done, 0)
            if left == 0:
                row.eta_s = 0.0
            elif row.rate_per_s > 0:
                row.eta_s = left / row.rate_per_s
            elif self.limits is not None:
                burst, rate = self.limits(row.region).get("DeregisterImage", (0.0, 0.0))
                row.eta_s = max(left - burst, 0) / rate if rate > 0 else None
            else:
                row.eta_s = None
            out.append(row)
        return out

    def total(self, rows: list[PruneRow]) -> PruneRow:
        total = PruneRow("", "all")
        for row in rows:
            total.planned += row.planned
            total.deleted += row.deleted
            total.kept += row.kept
            total.failed += row.failed
            total.throttled += row.throttled
            total.rate_per_s += row.rate_per_s
        etas = [r.eta_s for r in rows]
        total.eta_s = None if None in etas else max((e or 0.0 for e in etas), default=0.0)
        return total

    def table(self, title: str = "") -> RenderableType:
        rows = self.rows()
        total = self.total(rows)
        head = Text(
            f"{title}{format_duration(self.elapsed())} elapsed, "
            f"{total.done}/{total.planned} settled, ETA {total.eta}"
        )
        return Group(head, lane_table(rows, total, _COLUMNS, _cells, lambda r: (r.done, r.planned)))

    def lines(self) -> list[str]:
        rows = self.rows()
        stamp = f"[{format_duration(self.elapsed()):>8}]"
        return lane_lines(rows, self.total(rows), _COLUMNS, _cells, _bar, stamp)


def _cells(row: PruneRow) -> tuple[str, ...]:
    return (
        str(row.planned),
        str(row.deleted),
        str(row.kept),
        str(row.failed),
        str(row.throttled),
        f"{row.rate_per_s:.1f}",
    )


def _bar(row: PruneRow) -> str:
    return bar(row.done, row.planned, empty=1.0)  # nothing planned: nothing left
