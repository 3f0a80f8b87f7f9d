"""Live progress: an event subscriber that counts, and a display that shows the counts.

:class:`ProgressTracker` is a synchronous event subscriber: it only updates counters (never
blocks, never prints), so it costs the engine nothing. :func:`show_progress` renders it
periodically, as a rich live table when stderr is a terminal and as plain lines otherwise
(CI logs, ``2> file``).

Per (account, region) it shows: targets, requested (CreateImage sent or about to be, at least
once), pending (created, not yet available), available, failed (failed, timed out or not
started), skipped, throttled (RequestLimitExceeded answers) and the CreateImage request rate
over the last few seconds.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import anyio
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from fleetimage.core.durations import format_duration
from fleetimage.core.models import (
    Available,
    Created,
    Discovered,
    DryRunChecked,
    Event,
    Failed,
    JournalState,
    Outcome,
    Requested,
    Skipped,
    TargetRecord,
    Throttled,
)

__all__ = ["ProgressRow", "ProgressTracker", "show_progress"]

_RATE_WINDOW_S = 5.0
_UNSENT = frozenset({None, "planned", "not_started", "skipped", "dry_run"})
_FAILED = {Outcome.TIMED_OUT: "timed_out", Outcome.NOT_STARTED: "not_started"}
_DONE = frozenset({"available", "failed", "timed_out", "not_started", "skipped", "dry_run"})


@dataclass(slots=True)
class ProgressRow:
    """The counts of one lane (or of all lanes: ``region == "all"``)."""

    account: str
    region: str
    targets: int = 0
    requested: int = 0
    pending: int = 0
    available: int = 0
    failed: int = 0
    skipped: int = 0
    done: int = 0
    throttled: int = 0
    rate_per_s: float = 0.0


@dataclass(slots=True)
class _Lane:
    states: dict[str, str] = field(default_factory=dict)  # instance id -> state
    sent: set[str] = field(default_factory=set)
    throttled: int = 0
    requests: deque[float] = field(default_factory=deque)


class ProgressTracker:
    """Counts a run's events per lane. Call it with events; read :meth:`rows`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lanes: dict[tuple[str, str], _Lane] = {}
        self.started = clock()

    def seed(self, records: Iterable[TargetRecord]) -> None:
        """Resume: start from the journal's view of each target."""
        for rec in records:
            lane = self._lane(rec.account, rec.region)
            lane.states[rec.instance_id] = rec.state.value
            if rec.state in (JournalState.REQUESTING, JournalState.PENDING) or rec.image_id:
                lane.sent.add(rec.instance_id)

    def _lane(self, account: str, region: str) -> _Lane:
        lane = self._lanes.get((account, region))
        if lane is None:
            lane = self._lanes[(account, region)] = _Lane()
        return lane

    def __call__(self, event: Event) -> None:
        lane = self._lane(event.account, event.region)
        if isinstance(event, Throttled):
            lane.throttled += 1
            return
        target = event.instance_id
        if target is None:
            return
        current = lane.states.get(target)
        if current == "available":
            return  # final
        match event:
            case Discovered():
                if current in _UNSENT:
                    lane.states[target] = "planned"
            case Requested():
                lane.states[target] = "requesting"
                lane.sent.add(target)
                lane.requests.append(self._clock())
            case Created():
                lane.states[target] = "pending"
                lane.sent.add(target)
            case Available():
                lane.states[target] = "available"
            case Failed():
                lane.states[target] = _FAILED.get(event.outcome, "failed")
            case Skipped():
                lane.states[target] = "skipped"
            case DryRunChecked():
                lane.states[target] = "dry_run" if event.ok else "failed"

    def rows(self) -> list[ProgressRow]:
        """One row per lane, sorted by (account, region)."""
        now = self._clock()
        window = max(min(_RATE_WINDOW_S, now - self.started), 0.5)
        rows = []
        for (account, region), lane in sorted(self._lanes.items()):
            while lane.requests and lane.requests[0] < now - _RATE_WINDOW_S:
                lane.requests.popleft()
            counts = Counter(lane.states.values())
            rows.append(
                ProgressRow(
                    account=account,
                    region=region,
                    targets=len(lane.states),
                    requested=len(lane.sent),
                    pending=counts["pending"],
                    available=counts["available"],
                    failed=counts["failed"] + counts["timed_out"] + counts["not_started"],
                    skipped=counts["skipped"],
                    done=sum(n for state, n in counts.items() if state in _DONE),
                    throttled=lane.throttled,
                    rate_per_s=len(lane.requests) / window,
                )
            )
        return rows

    def total(self, rows: list[ProgressRow] | None = None) -> ProgressRow:
        rows = self.rows() if rows is None else rows
        total = ProgressRow(account="", region="all")
        for row in rows:
            for name in ("targets", "requested", "pending", "available", "failed", "skipped"):
                setattr(total, name, getattr(total, name) + getattr(row, name))
            total.done += row.done
            total.throttled += row.throttled
            total.rate_per_s += row.rate_per_s
        return total

    def elapsed(self) -> float:
        return self._clock() - self.started

    # --- rendering ---

    def _label(self, row: ProgressRow, accounts: int) -> str:
        return f"{row.account}/{row.region}" if accounts > 1 and row.account else row.region

    def table(self, title: str = "") -> RenderableType:
        rows = self.rows()
        total = self.total(rows)
        accounts = len({r.account for r in rows})
        head = Text(
            f"{title}{format_duration(self.elapsed())} elapsed, "
            f"{total.done}/{total.targets} targets done"
        )
        table = Table(box=None, pad_edge=False)
        table.add_column("region")
        for name in _COLUMNS:
            table.add_column(name, justify="right")
        for row in [*rows, total]:
            style = "bold" if row is total else ""
            table.add_row(
                Text(self._label(row, accounts), style=style),
                *(Text(value, style=style) for value in _cells(row)),
            )
        return Group(head, table)

    def lines(self) -> list[str]:
        rows = self.rows()
        accounts = len({r.account for r in rows})
        stamp = f"[{format_duration(self.elapsed()):>8}]"
        out = []
        for row in [*rows, self.total(rows)] if len(rows) > 1 else rows:
            cells = ", ".join(f"{v} {n}" for n, v in zip(_COLUMNS, _cells(row), strict=True))
            out.append(f"{stamp} {self._label(row, accounts)}: {cells}")
        return out


_COLUMNS = (
    "targets",
    "requested",
    "pending",
    "available",
    "failed",
    "skipped",
    "throttled",
    "create/s",
)


def _cells(row: ProgressRow) -> tuple[str, ...]:
    return (
        str(row.targets),
        str(row.requested),
        str(row.pending),
        str(row.available),
        str(row.failed),
        str(row.skipped),
        str(row.throttled),
        f"{row.rate_per_s:.1f}",
    )


async def show_progress(
    tracker: ProgressTracker,
    console: Console,
    *,
    live: bool,
    interval_s: float = 10.0,
    title: str = "",
) -> None:
    """Render ``tracker`` until cancelled; the last state is shown once more on the way out."""
    if live:
        await _show_live(tracker, console, title)
    else:
        await _show_lines(tracker, console, interval_s)


async def _show_live(tracker: ProgressTracker, console: Console, title: str) -> None:
    with Live(
        tracker.table(title),
        console=console,
        refresh_per_second=4,
        redirect_stdout=False,
        redirect_stderr=True,
    ) as display:
        try:
            while True:
                await anyio.sleep(0.25)
                display.update(tracker.table(title))
        finally:
            display.update(tracker.table(title))


async def _show_lines(tracker: ProgressTracker, console: Console, interval_s: float) -> None:
    try:
        while True:
            await anyio.sleep(interval_s)
            _print_lines(console, tracker)
    finally:
        _print_lines(console, tracker)


def _print_lines(console: Console, tracker: ProgressTracker) -> None:
    for line in tracker.lines():
        console.print(line, markup=False, highlight=False, soft_wrap=True)
