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
from fleetimage.core.models import DryRunChecked, Event, JournalState, TargetRecord, Throttled
from fleetimage.core.states import SENT, event_kind, transition

S = JournalState

__all__ = ["ProgressRow", "ProgressTracker", "show_progress"]

_RATE_WINDOW_S = 5.0
# Counted as failed in the display: not done, and not going to be without a resume.
_NOT_OK = frozenset({S.FAILED, S.TIMED_OUT, S.NOT_STARTED, S.UNKNOWN})
_DONE = frozenset({S.AVAILABLE, S.FAILED, S.TIMED_OUT, S.NOT_STARTED, S.SKIPPED, S.DRY_RUN})


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
    states: dict[str, JournalState] = field(default_factory=dict)  # instance id -> state
    sent: set[str] = field(default_factory=set)
    throttled: int = 0
    requests: deque[float] = field(default_factory=deque)
    failed_checks: set[str] = field(default_factory=set)  # dry runs that would not succeed


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
            lane.states[rec.instance_id] = rec.state
            if rec.state in SENT or rec.image_id:
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
        target, kind = event.instance_id, event_kind(event)
        if target is None or kind is None:
            return
        new = transition(lane.states.get(target), kind)
        if new is None:
            return  # the one state machine says this event changes nothing
        lane.states[target] = new
        if kind == "requested":
            lane.requests.append(self._clock())
        if kind in ("requested", "created"):
            lane.sent.add(target)
        if isinstance(event, DryRunChecked) and not event.ok:
            lane.failed_checks.add(target)

    def rows(self) -> list[ProgressRow]:
        """One row per lane, sorted by (account, region)."""
        now = self._clock()
        window = max(min(_RATE_WINDOW_S, now - self.started), 0.5)
        rows = []
        for (account, region), lane in sorted(self._lanes.items()):
            while lane.requests and lane.requests[0] < now - _RATE_WINDOW_S:
                lane.requests.popleft()
            counts = Counter(lane.states.values())
            not_ok = sum(counts[s] for s in _NOT_OK) + len(lane.failed_checks)
            rows.append(
                ProgressRow(
                    account=account,
                    region=region,
                    targets=len(lane.states),
                    requested=len(lane.sent),
                    pending=counts[S.PENDING],
                    available=counts[S.AVAILABLE],
                    failed=not_ok,
                    skipped=counts[S.SKIPPED],
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
