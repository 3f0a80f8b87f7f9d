"""The one state machine: the journal (SQL generated from it), the report and the progress
display agree with it on random event sequences; and the rules it exists for hold."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

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
)
from fleetimage.core.states import (
    OPEN,
    SENT,
    SETTLED,
    TRANSITIONS,
    UNSENT,
    event_kind,
    outcome_of,
    transition,
)
from fleetimage.journal import Journal
from fleetimage.output.collector import ReportCollector
from fleetimage.output.progress import ProgressTracker

ACCT, REGION = "111122223333", "eu-west-1"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
TARGETS = ("i-a", "i-b", "i-c")
KINDS = (
    "discovered",
    "requested",
    "created",
    "available",
    "failed",
    "timed_out",
    "unknown",
    "not_started",
    "skipped",
    "dry_run_ok",
    "dry_run_bad",
)


def make(run_id: str, kind: str, iid: str, n: int) -> Event:
    at = T0 + timedelta(seconds=n)
    key = (run_id, ACCT, REGION, iid, at)
    outcomes = {
        "failed": Outcome.FAILED,
        "timed_out": Outcome.TIMED_OUT,
        "unknown": Outcome.UNKNOWN,
        "not_started": Outcome.NOT_STARTED,
    }
    match kind:
        case "discovered":
            return Discovered(*key, image_name=f"img-{iid}", state="running")
        case "requested":
            return Requested(*key, image_name=f"img-{iid}", attempt=n % 3 + 1)
        case "created":
            return Created(*key, image_id=f"ami-{iid}-{n}", image_name=f"img-{iid}", adopted=False)
        case "available":
            return Available(*key, image_id=f"ami-{iid}-{n}")
        case "skipped":
            return Skipped(*key, reason="instance is terminated")
        case "dry_run_ok" | "dry_run_bad":
            ok = kind == "dry_run_ok"
            return DryRunChecked(*key, ok=ok, error_code="" if ok else "Nope", error_message="x")
    image = f"ami-{iid}-{n}" if n % 2 else None
    return Failed(*key, outcomes[kind], f"Code{n}", f"message {n}", image)


def model(events: list[Event]) -> dict[str, JournalState]:
    states: dict[str, JournalState] = {}
    for event in events:
        kind = event_kind(event)
        assert kind is not None and event.instance_id is not None
        new = transition(states.get(event.instance_id), kind)
        if new is not None:
            states[event.instance_id] = new
    return states


def sequence(rng: random.Random, run_id: str) -> list[Event]:
    # Mostly the engine's own orders, with stale and out-of-order events mixed in.
    return [
        make(run_id, rng.choice(KINDS), rng.choice(TARGETS), n) for n in range(rng.randint(1, 14))
    ]


def observers(run_id: str, events: list[Event]) -> tuple[ReportCollector, ProgressTracker]:
    collector, tracker = ReportCollector(run_id, T0), ProgressTracker(clock=lambda: 0.0)
    for event in events:
        collector(event)
        tracker(event)
    return collector, tracker


def tracker_states(tracker: ProgressTracker) -> dict[str, JournalState]:
    lane = tracker._lanes.get((ACCT, REGION))
    return dict(lane.states) if lane else {}


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(KINDS), st.sampled_from(TARGETS)), max_size=16))
def test_report_and_progress_follow_the_state_machine(steps: list[tuple[str, str]]) -> None:
    events = [make("r", kind, iid, n) for n, (kind, iid) in enumerate(steps)]
    expected = model(events)
    collector, tracker = observers("r", events)
    report = collector.report(finished_at=T0)
    assert {r.instance_id: r.outcome for r in report.results} == {
        iid: outcome_of(state) for iid, state in expected.items()
    }
    assert tracker_states(tracker) == expected


async def test_the_journal_agrees_on_1000_random_sequences(tmp_path: Path) -> None:
    rng = random.Random(20261129)
    runs: dict[str, list[Event]] = {}
    async with await Journal.open(tmp_path / "journal.sqlite3") as journal:
        for i in range(1000):
            run_id = f"run-{i:04d}"
            runs[run_id] = events = sequence(rng, run_id)
            await journal.start_run(run_id, started_at=T0, config_snapshot={})
            for event in events:
                await journal(event)
        await journal.flush()
        for run_id, events in runs.items():
            rows = {r.instance_id: r for r in await journal.targets(run_id)}
            expected = model(events)
            assert {iid: r.state for iid, r in rows.items()} == expected, (run_id, events)
            collector, _ = observers(run_id, events)
            report = {r.instance_id: r for r in collector.report(finished_at=T0).results}
            for iid, row in rows.items():  # the fields each kind writes agree too
                got = report[iid]
                assert (got.image_id, got.attempts) == (row.image_id, row.attempts), run_id
                if row.error_code is not None or row.error_message is not None:
                    assert (got.error_code, got.error_message) == (
                        row.error_code,
                        row.error_message,
                    )


def test_the_rules_the_table_exists_for() -> None:
    # available is final
    assert all(transition(JournalState.AVAILABLE, kind) is None for kind in TRANSITIONS)
    # a target that may have an image is never relabelled as if nothing had been sent
    for state in SENT:
        for kind in ("discovered", "not_started", "dry_run"):
            assert transition(state, kind) is None, (state, kind)
    # ...nor skipped once an image may exist (only EC2's refusal of a request skips it)
    for state in SENT - {JournalState.REQUESTING}:
        assert transition(state, "skipped") is None, state
    # a created image is never forgotten by the wait's own endings
    assert transition(JournalState.PENDING, "unknown") is JournalState.UNKNOWN
    # sent, never confirmed either way: unknown, open for resume (never failed)
    assert transition(JournalState.REQUESTING, "unknown") is JournalState.UNKNOWN
    # failed is left only by a new request (--retry-failed)
    leaving = {k for k in TRANSITIONS if transition(JournalState.FAILED, k) not in (None,)}
    assert leaving == {"requested", "created", "available", "failed"}
    # the sets partition every state
    states = set(JournalState)
    assert states == SETTLED | OPEN and not SETTLED & OPEN
    assert UNSENT - {None} <= states
    assert {outcome_of(s) for s in OPEN} <= {
        Outcome.NOT_STARTED,
        Outcome.PENDING,
        Outcome.UNKNOWN,
        Outcome.TIMED_OUT,
    }


def test_each_failed_outcome_is_its_own_row() -> None:
    """event_kind is checked directly: the model above shares it with the journal and the
    report, so a wrong row would move all of them alike and go unnoticed."""
    key = ("run-1", ACCT, REGION, "i-a", T0)
    rows = {
        Outcome.FAILED: "failed",
        Outcome.TIMED_OUT: "timed_out",
        Outcome.NOT_STARTED: "not_started",
        Outcome.UNKNOWN: "unknown",
        # any other outcome on a Failed event is an engine bug's report: failed, never lost
        Outcome.PENDING: "failed",
    }
    for outcome, row in rows.items():
        assert event_kind(Failed(*key, outcome, "Code", "message")) == row, outcome
    assert event_kind(Failed("run-1", ACCT, REGION, None, T0, Outcome.FAILED, "C", "m")) is None
