"""Folding a run's events into a :class:`~fleetimage.output.report.RunReport`; on resume it is
seeded from the journal's records first."""

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
    Outcome,
    Requested,
    Skipped,
    TargetRecord,
)
from fleetimage.output.report import BAD_OUTCOMES, RunReport

__all__ = ["ReportCollector"]


@dataclass
class _Progress:
    """One target's state while the run goes on; ``outcome`` is None until it is terminal."""

    image_name: str | None = None
    image_id: str | None = None
    requested: bool = False
    attempts: int = 0
    outcome: Outcome | None = None
    error_code: str | None = None
    error_message: str | None = None
    requested_at: datetime | None = None
    completed_at: datetime | None = None

    def end(
        self, outcome: Outcome, at: datetime, code: str | None = None, msg: str | None = None
    ) -> None:
        self.outcome, self.completed_at = outcome, at
        self.error_code, self.error_message = code, msg


# Journal states that resume seeds as already decided; the rest are still in flight.
_SEEDED_OUTCOMES = {
    JournalState.AVAILABLE: Outcome.AVAILABLE,
    JournalState.FAILED: Outcome.FAILED,
    JournalState.TIMED_OUT: Outcome.TIMED_OUT,
    JournalState.NOT_STARTED: Outcome.NOT_STARTED,
    JournalState.SKIPPED: Outcome.SKIPPED,
    JournalState.DRY_RUN: Outcome.DRY_RUN,
}
# Journal states in which CreateImage may have been sent (a failure may come from AWS).
_MAYBE_SENT = frozenset(
    {
        JournalState.REQUESTING,
        JournalState.PENDING,
        JournalState.AVAILABLE,
        JournalState.FAILED,
        JournalState.TIMED_OUT,
    }
)
# Outcomes a rediscovered target may leave: nothing was ever sent for it.
_UNSENT = frozenset({Outcome.NOT_STARTED, Outcome.SKIPPED, Outcome.DRY_RUN})


class ReportCollector:
    """Event subscriber (sync) that builds the :class:`RunReport`. Mirrors the journal's rules."""

    def __init__(self, run_id: str, started_at: datetime, *, dry_run: bool = False) -> None:
        self.run_id = run_id
        self.started_at = started_at
        self.dry_run = dry_run
        self._targets: dict[tuple[str, str, str], _Progress] = {}
        self._lanes: dict[tuple[str, str], LaneFailure] = {}

    def seed(self, records: Iterable[TargetRecord]) -> None:
        """Resume: start from what the journal knows."""
        for rec in records:
            p = self._targets.setdefault((rec.account, rec.region, rec.instance_id), _Progress())
            p.image_name, p.image_id, p.attempts = rec.image_name, rec.image_id, rec.attempts
            p.requested = rec.state in _MAYBE_SENT
            p.outcome = _SEEDED_OUTCOMES.get(rec.state)
            p.error_code, p.error_message = rec.error_code, rec.error_message

    def __call__(self, event: Event) -> None:
        if event.run_id != self.run_id:
            return
        if isinstance(event, LaneFailed | LanePlanned):
            if isinstance(event, LaneFailed):
                self._lanes[(event.account, event.region)] = event.failure()
            else:
                self._lanes.pop((event.account, event.region), None)
            return
        if event.instance_id is None:
            return
        key = (event.account, event.region, event.instance_id)
        p = self._targets.get(key)
        if p is None:
            p = self._targets[key] = _Progress()
        if p.outcome is Outcome.AVAILABLE:  # final, like in the journal
            return
        match event:
            case Discovered():
                if p.outcome in _UNSENT:
                    p.outcome = p.error_code = p.error_message = p.completed_at = None
                p.image_name = p.image_name or event.image_name or None  # "": no name
            case Requested():
                p.outcome = p.error_code = p.error_message = p.completed_at = None
                p.requested, p.image_name = True, event.image_name
                p.attempts = max(p.attempts, event.attempt)
                p.requested_at = p.requested_at or event.at
            case Created():
                p.outcome = p.error_code = p.error_message = None
                p.requested, p.image_id, p.image_name = True, event.image_id, event.image_name
            case Available():
                p.image_id = event.image_id
                p.end(Outcome.AVAILABLE, event.at)
            case Failed():
                p.image_id = event.image_id or p.image_id
                outcome = event.outcome if event.outcome in BAD_OUTCOMES else Outcome.FAILED
                p.end(outcome, event.at, event.error_code, event.error_message)
            case Skipped():
                p.end(Outcome.SKIPPED, event.at, None, event.reason)
            case DryRunChecked():
                if event.ok:
                    p.end(Outcome.DRY_RUN, event.at)
                else:
                    p.end(Outcome.DRY_RUN, event.at, event.error_code, event.error_message)

    def report(self, *, finished_at: datetime, interrupted: bool = False) -> RunReport:
        """The report so far; targets without a terminal event are pending or not_started."""
        results = [self._result(key, p) for key, p in self._targets.items()]
        return RunReport(
            run_id=self.run_id,
            started_at=self.started_at,
            finished_at=finished_at,
            results=tuple(results),
            lane_failures=tuple(self._lanes[k] for k in sorted(self._lanes)),
            dry_run=self.dry_run,
            interrupted=interrupted,
        )

    @staticmethod
    def _result(key: tuple[str, str, str], p: _Progress) -> ImageResult:
        outcome, code, msg = p.outcome, p.error_code, p.error_message
        if outcome is None:
            if p.image_id is not None:
                outcome, code, msg = Outcome.PENDING, None, None
            elif p.requested:
                # The image may exist; resume looks it up by name before sending again.
                outcome, code = Outcome.NOT_STARTED, "NotStarted"
                msg = "CreateImage was sent but no answer was recorded; resume checks by name"
            else:
                outcome, code = Outcome.NOT_STARTED, "NotStarted"
                msg = "the run ended before CreateImage was sent"
        return ImageResult(
            account=key[0],
            region=key[1],
            instance_id=key[2],
            outcome=outcome,
            image_id=p.image_id,
            image_name=p.image_name,
            error_code=code,
            error_message=msg,
            attempts=p.attempts,
            requested_at=p.requested_at,
            completed_at=p.completed_at,
        )
