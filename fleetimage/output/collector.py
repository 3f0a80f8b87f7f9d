"""Folding a run's events into a :class:`~fleetimage.output.report.RunReport`; on resume it is
seeded from the journal's records first.

Targets move by the one state machine (:mod:`fleetimage.core.states`) and keep the same fields
the journal keeps, written by the same rules, so the report and the journal always agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from fleetimage.core.models import (
    Available,
    Created,
    Discovered,
    DryRunChecked,
    Event,
    Failed,
    ImageResult,
    JournalState,
    LaneFailed,
    LaneFailure,
    LanePlanned,
    Requested,
    Skipped,
    TargetRecord,
)
from fleetimage.core.states import event_kind, outcome_of, transition
from fleetimage.output.report import RunReport

__all__ = ["ReportCollector"]


@dataclass(slots=True)  # one per target, for the whole run
class _Target:
    """One target's state and what is known of it (the journal row's columns)."""

    state: JournalState | None = None
    image_name: str | None = None
    image_id: str | None = None
    attempts: int = 0
    error_code: str | None = None
    error_message: str | None = None
    requested_at: datetime | None = None
    completed_at: datetime | None = None

    def apply(self, event: Event) -> None:
        """The event's writes, as the journal's statement for its kind makes them."""
        match event:
            case Discovered():
                self.image_name = event.image_name or None
                self.error_code = self.error_message = self.completed_at = None
            case Requested():
                self.image_name, self.attempts = event.image_name, max(self.attempts, event.attempt)
                self.requested_at = self.requested_at or event.at
                self.error_code = self.error_message = self.completed_at = None
            case Created():
                self.image_id, self.image_name = event.image_id, event.image_name
                self.error_code = self.error_message = None
            case Available():
                self.image_id, self.completed_at = event.image_id, event.at
                self.error_code = self.error_message = None
            case Failed():
                self.image_id = event.image_id or self.image_id
                self.error_code, self.error_message = event.error_code, event.error_message
                self.completed_at = event.at
            case Skipped():
                self.error_code, self.error_message, self.completed_at = (
                    None,
                    event.reason,
                    event.at,
                )
            case DryRunChecked():
                ok = event.ok
                self.error_code = None if ok else event.error_code
                self.error_message = None if ok else event.error_message
                self.completed_at = event.at


# Why a target left open by the run is not done, where the journal recorded no error.
_OPEN_REASONS = {
    JournalState.PLANNED: ("NotStarted", "the run ended before CreateImage was sent"),
    JournalState.NOT_STARTED: ("NotStarted", "the run ended before CreateImage was sent"),
    JournalState.REQUESTING: (
        "NoAnswer",
        "CreateImage was sent but no answer was recorded; resume looks the image up by name",
    ),
}


class ReportCollector:
    """Event subscriber (sync) that builds the :class:`RunReport`."""

    def __init__(
        self, run_id: str, started_at: datetime, *, dry_run: bool = False, shard: str | None = None
    ) -> None:
        self.run_id = run_id
        self.started_at = started_at
        self.dry_run = dry_run
        self.shard = shard  # "I/N" when the run images one shard's lanes
        self._targets: dict[tuple[str, str, str], _Target] = {}
        self._lanes: dict[tuple[str, str], LaneFailure] = {}

    def seed(self, records: Iterable[TargetRecord]) -> None:
        """Resume: start from what the journal knows."""
        for rec in records:
            self._targets[(rec.account, rec.region, rec.instance_id)] = _Target(
                state=rec.state,
                image_name=rec.image_name,
                image_id=rec.image_id,
                attempts=rec.attempts,
                error_code=rec.error_code,
                error_message=rec.error_message,
            )

    def state(self, account: str, region: str, instance_id: str) -> JournalState | None:
        target = self._targets.get((account, region, instance_id))
        return target.state if target is not None else None

    def __call__(self, event: Event) -> None:
        if event.run_id != self.run_id:
            return
        if isinstance(event, LaneFailed):
            self._lanes[(event.account, event.region)] = event.failure()
        elif isinstance(event, LanePlanned):
            self._lanes.pop((event.account, event.region), None)
        kind = event_kind(event)
        if kind is None or event.instance_id is None:
            return
        key = (event.account, event.region, event.instance_id)
        target = self._targets.get(key)
        if target is None:
            target = self._targets[key] = _Target()
        new = transition(target.state, kind)
        if new is None:
            return  # stale, or it would forget something: the journal ignores it too
        target.state = new
        target.apply(event)

    def report(
        self, *, finished_at: datetime, interrupted: bool = False, journal_error: str | None = None
    ) -> RunReport:
        """The report so far: each target's outcome is what its state means."""
        results = [self._result(key, t) for key, t in self._targets.items() if t.state]
        return RunReport(
            run_id=self.run_id,
            started_at=self.started_at,
            finished_at=finished_at,
            results=tuple(results),
            lane_failures=tuple(self._lanes[k] for k in sorted(self._lanes)),
            dry_run=self.dry_run,
            interrupted=interrupted,
            journal_error=journal_error,
            shard=self.shard,
        )

    @staticmethod
    def _result(key: tuple[str, str, str], t: _Target) -> ImageResult:
        assert t.state is not None
        code, message = t.error_code, t.error_message
        if code is None and message is None and t.state in _OPEN_REASONS:
            code, message = _OPEN_REASONS[t.state]
        return ImageResult(
            account=key[0],
            region=key[1],
            instance_id=key[2],
            outcome=outcome_of(t.state),
            image_id=t.image_id,
            image_name=t.image_name,
            error_code=code,
            error_message=message,
            attempts=t.attempts,
            requested_at=t.requested_at,
            completed_at=t.completed_at,
        )
