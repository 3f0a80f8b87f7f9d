"""Live progress: an event subscriber that counts, and a display that shows the counts.

:class:`ProgressTracker` is a synchronous event subscriber: it only updates counters (never
blocks, never prints), so it costs the engine nothing. :func:`show_progress` renders it
periodically, as a rich live table when stderr is a terminal and as plain lines otherwise
(CI logs, ``2> file``).

Per (account, region) and overall it shows: a bar (targets done of all), targets, requested
(CreateImage sent or about to be, at least once), pending (created, not yet available),
available, failed (failed, timed out or not started), skipped, throttled
(RequestLimitExceeded answers), the CreateImage request rate and the completion rate over
the last few seconds, and an ETA (:mod:`fleetimage.output.eta`: the CreateImage bucket's
bound when ``limits`` is given, the observed rates, the observed pending time).
"""

from __future__ import annotations

import statistics
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import anyio
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from fleetimage.core.durations import format_duration
from fleetimage.core.models import DryRunChecked, Event, JournalState, TargetRecord, Throttled
from fleetimage.core.states import SENT, event_kind, transition
from fleetimage.output.copy_progress import CopyProgress
from fleetimage.output.eta import LaneClock, lane_eta
from fleetimage.output.lane_rows import bar, lane_lines, lane_table

S = JournalState

__all__ = ["Display", "ProgressRow", "ProgressTracker", "show_progress"]


class Display(Protocol):
    """What :func:`show_progress` renders (imaging's tracker, prune's)."""

    def table(self, title: str = "") -> RenderableType: ...

    def lines(self) -> list[str]: ...


_RATE_WINDOW_S = 5.0
_PENDING_SAMPLES = 200  # the median pending time is taken over this many recent images
# config.limits_for: region -> {action: (burst, rate_per_s)}
Limits = Callable[[str], Mapping[str, tuple[float, float]]]
# Counted as failed in the display: not done, and not going to be without a resume.
_NOT_OK = frozenset({S.FAILED, S.TIMED_OUT, S.NOT_STARTED, S.UNKNOWN})
_DONE = frozenset({S.AVAILABLE, S.FAILED, S.TIMED_OUT, S.NOT_STARTED, S.SKIPPED, S.DRY_RUN})
_ENDS = frozenset({"available", "failed", "timed_out", "unknown", "not_started"})


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
    done_per_s: float = 0.0
    eta_s: float | None = None  # None: not known yet (no image completed)
    sending_s: float | None = None  # the part of the ETA that sending takes

    @property
    def eta(self) -> str:
        """``1m 20s``, ``< 1s``, ``≥ 12s + pending`` / ``≥ pending time`` (no image has
        completed yet, so the pending time is unknown), ``?`` (nothing to go on yet)."""
        if self.eta_s is not None:
            return "< 1s" if self.eta_s < 1 else format_duration(round(self.eta_s))
        if self.sending_s is not None and self.sending_s >= 1:
            return f"≥ {format_duration(round(self.sending_s))} + pending"
        if self.sending_s is not None:
            return "≥ pending time"
        return "?"


@dataclass(slots=True)
class _Lane:
    states: dict[str, JournalState] = field(default_factory=dict)  # instance id -> state
    sent: set[str] = field(default_factory=set)
    throttled: int = 0
    requests: deque[float] = field(default_factory=deque)
    failed_checks: set[str] = field(default_factory=set)  # dry runs that would not succeed
    completions: deque[float] = field(default_factory=deque)
    created_at: dict[str, float] = field(default_factory=dict)  # instance id -> when
    pending_times: deque[float] = field(default_factory=lambda: deque(maxlen=_PENDING_SAMPLES))
    youngest: float | None = None  # when the latest image was created


class ProgressTracker:
    """Counts a run's events per lane. Call it with events; read :meth:`rows`."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, *, limits: Limits | None = None
    ) -> None:
        """``limits``: the config's ``limits_for`` (the CreateImage bucket bounds the ETA);
        without it the ETA rests on the observed rates alone."""
        self._clock = clock
        self.limits = limits  # settable: resume learns its config from the journal
        self._lanes: dict[tuple[str, str], _Lane] = {}
        self.started = clock()
        self.copies = CopyProgress()  # cross-region copies, one line per destination

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
        self.copies(event)
        if not event.region:
            return  # about the whole run (RunStopping), not a lane
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
        if kind == "created":
            lane.created_at[target] = lane.youngest = self._clock()
        if kind in _ENDS:
            self._completed(lane, target)
        if isinstance(event, DryRunChecked) and not event.ok:
            lane.failed_checks.add(target)

    def _completed(self, lane: _Lane, target: str) -> None:
        now = self._clock()
        lane.completions.append(now)
        created = lane.created_at.pop(target, None)
        if created is not None:
            lane.pending_times.append(now - created)

    def _pending_s(self, lane: _Lane) -> float | None:
        """The lane's median pending time; the fleet's while the lane has seen none."""
        samples = lane.pending_times or [t for ln in self._lanes.values() for t in ln.pending_times]
        return statistics.median(samples) if samples else None

    def rows(self) -> list[ProgressRow]:
        """One row per lane, sorted by (account, region)."""
        now = self._clock()
        elapsed = now - self.started
        window = max(min(_RATE_WINDOW_S, elapsed), 0.5)
        rows = []
        for (account, region), lane in sorted(self._lanes.items()):
            for times in (lane.requests, lane.completions):
                while times and times[0] < now - _RATE_WINDOW_S:
                    times.popleft()
            counts = Counter(lane.states.values())
            row = ProgressRow(
                account=account,
                region=region,
                targets=len(lane.states),
                requested=len(lane.sent),
                pending=counts[S.PENDING],
                available=counts[S.AVAILABLE],
                failed=sum(counts[s] for s in _NOT_OK) + len(lane.failed_checks),
                skipped=counts[S.SKIPPED],
                done=sum(n for state, n in counts.items() if state in _DONE),
                throttled=lane.throttled,
                rate_per_s=len(lane.requests) / window,
                done_per_s=len(lane.completions) / window,
            )
            bucket = self.limits(region).get("CreateImage") if self.limits else None
            row.eta_s, row.sending_s = lane_eta(
                LaneClock(
                    unsent=counts[S.PLANNED],
                    pending=counts[S.PENDING] + counts[S.REQUESTING],
                    sent=len(lane.sent),
                    elapsed_s=elapsed,
                    create_rate=row.rate_per_s,
                    done_rate=row.done_per_s,
                    bucket=bucket,
                    pending_s=self._pending_s(lane),
                    youngest_age_s=None if lane.youngest is None else now - lane.youngest,
                )
            )
            rows.append(row)
        return rows

    def eta(self) -> float | None:
        """Seconds until every lane is done (the slowest lane's); None: not known yet."""
        return self.total().eta_s

    def total(self, rows: list[ProgressRow] | None = None) -> ProgressRow:
        rows = self.rows() if rows is None else rows
        total = ProgressRow(account="", region="all")
        for row in rows:
            for name in ("targets", "requested", "pending", "available", "failed", "skipped"):
                setattr(total, name, getattr(total, name) + getattr(row, name))
            total.done += row.done
            total.throttled += row.throttled
            total.rate_per_s += row.rate_per_s
            total.done_per_s += row.done_per_s
        # Lanes run side by side: the slowest decides; one unknown lane makes it unknown.
        etas = [row.eta_s for row in rows]
        total.eta_s = None if None in etas else max((e for e in etas if e is not None), default=0.0)
        sending = [row.sending_s for row in rows]
        total.sending_s = (
            None if None in sending else max((s for s in sending if s is not None), default=0.0)
        )
        return total

    def elapsed(self) -> float:
        return self._clock() - self.started

    # --- rendering ---

    def table(self, title: str = "") -> RenderableType:
        rows = self.rows()
        total = self.total(rows)
        head = Text(
            f"{title}{format_duration(self.elapsed())} elapsed, "
            f"{total.done}/{total.targets} targets done, ETA {total.eta}"
        )
        table = lane_table(rows, total, _COLUMNS, _cells, lambda r: (r.done, r.targets))
        return Group(head, table, *(Text(line) for line in self.copies.lines()))

    def lines(self) -> list[str]:
        rows = self.rows()
        stamp = f"[{format_duration(self.elapsed()):>8}]"
        out = lane_lines(rows, self.total(rows), _COLUMNS, _cells, _bar, stamp)
        return out + [f"{stamp} {line}" for line in self.copies.lines()]


_COLUMNS = (
    "targets",
    "requested",
    "pending",
    "available",
    "failed",
    "skipped",
    "throttled",
    "create/s",
    "done/s",
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
        f"{row.done_per_s:.1f}",
    )


def _bar(row: ProgressRow) -> str:
    return bar(row.done, row.targets, empty=0.0)  # targets done of all


async def show_progress(
    tracker: Display,
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


async def _show_live(tracker: Display, console: Console, title: str) -> None:
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


async def _show_lines(tracker: Display, console: Console, interval_s: float) -> None:
    try:
        while True:
            await anyio.sleep(interval_s)
            _print_lines(console, tracker)
    finally:
        _print_lines(console, tracker)


def _print_lines(console: Console, tracker: Display) -> None:
    for line in tracker.lines():
        console.print(line, markup=False, highlight=False, soft_wrap=True)
