"""Copies in the journal and the report: the same state machine, the same fields, the token
written before the request leaves."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from fleetimage.core.clock import now
from fleetimage.core.copies import (
    CopyAvailable,
    CopyCreated,
    CopyEvent,
    CopyFailed,
    CopyPlanned,
    CopyRequested,
    CopyState,
)
from fleetimage.core.models import Outcome
from fleetimage.journal import Journal
from fleetimage.output.copy_report import CopyCollector, copy_from_dict, copy_to_dict

RUN = "r1"


def key(iid: str) -> tuple[str, str, str, datetime, str]:
    return ("111111111111", "us-east-1", iid, now(), "eu-west-1")


def planned(iid: str, src: str = "ami-1") -> CopyPlanned:
    return CopyPlanned(RUN, *key(iid), src, f"n-{iid}", f"tok-{iid}-{src}")


def requested(iid: str, attempt: int = 1, src: str = "ami-1") -> CopyRequested:
    return CopyRequested(RUN, *key(iid), src, f"n-{iid}", f"tok-{iid}-{src}", attempt)


def failed(iid: str, outcome: Outcome, code: str, *, refused: bool = False) -> CopyFailed:
    return CopyFailed(RUN, *key(iid), outcome, code, "why", None, refused)


async def test_journal_and_report_follow_the_copy_state_machine(tmp_path: Path) -> None:
    events: list[CopyEvent] = [
        # i-1: the whole way, with a stale not_started after the request (ignored).
        planned("i-1"),
        requested("i-1"),
        failed("i-1", Outcome.NOT_STARTED, "Interrupted"),
        CopyCreated(RUN, *key("i-1"), "ami-c1", False),
        CopyAvailable(RUN, *key("i-1"), "ami-c1"),
        failed("i-1", Outcome.FAILED, "Late"),  # available is final
        # i-2: sent, then the run stopped: it stays requesting (resume looks it up).
        planned("i-2"),
        requested("i-2", 2),
        failed("i-2", Outcome.NOT_STARTED, "Interrupted"),
        # i-3: refused with ResourceLimitExceeded, destination stopped: unsent again.
        planned("i-3"),
        requested("i-3"),
        failed("i-3", Outcome.NOT_STARTED, "CopyLimitExceeded", refused=True),
        # i-4: never sent.
        planned("i-4"),
        failed("i-4", Outcome.NOT_STARTED, "DeadlineReached"),
    ]
    collector = CopyCollector(RUN)
    async with await Journal.open(tmp_path / "j.sqlite3") as journal:
        await journal.start_run(RUN, started_at=now(), config_snapshot={})
        for event in events:
            await journal(event)
            collector(event)
        await journal.flush()
        rows = {r.key.instance_id: r for r in await journal.copies(RUN)}
    assert {i: r.state for i, r in rows.items()} == {
        "i-1": CopyState.AVAILABLE,
        "i-2": CopyState.REQUESTING,
        "i-3": CopyState.NOT_STARTED,
        "i-4": CopyState.NOT_STARTED,
    }
    assert rows["i-1"].image_id == "ami-c1" and rows["i-2"].attempts == 2
    assert rows["i-2"].client_token == "tok-i-2-ami-1"  # written before the send
    assert rows["i-3"].error_code == "CopyLimitExceeded"
    results = {c.instance_id: c for c in collector.results()}
    assert {i: c.outcome for i, c in results.items()} == {
        "i-1": Outcome.AVAILABLE,
        "i-2": Outcome.UNKNOWN,
        "i-3": Outcome.NOT_STARTED,
        "i-4": Outcome.NOT_STARTED,
    }
    assert results["i-2"].error_code == "NoAnswer"
    for copy in results.values():
        assert copy_from_dict(copy_to_dict(copy)) == copy

    # Resume seeds the report from the journal: the same states.
    seeded = CopyCollector(RUN)
    seeded.seed(rows.values())
    assert {c.instance_id: c.outcome for c in seeded.results()} == {
        i: c.outcome for i, c in results.items()
    }
