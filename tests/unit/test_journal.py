"""The run journal: event → row mapping, resume safety, commit-before-send, failure messages."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fleetimage.core.errors import JournalError
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
    Retried,
    Skipped,
    TargetRecord,
    Throttled,
)
from fleetimage.core.redaction import is_secret_key
from fleetimage.journal import SCHEMA_VERSION, Journal, default_journal_path

RUN = "run-1"
ACCT = "111122223333"
REGION = "eu-west-1"
T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def at(seconds: float = 0) -> datetime:
    return T0 + timedelta(seconds=seconds)


def discovered(iid: str, run: str = RUN) -> Discovered:
    return Discovered(run, ACCT, REGION, iid, at(), image_name=f"img-{iid}", state="running")


def requested(iid: str, attempt: int = 1, t: float = 1) -> Requested:
    return Requested(RUN, ACCT, REGION, iid, at(t), image_name=f"img-{iid}", attempt=attempt)


def created(iid: str) -> Created:
    return Created(
        RUN, ACCT, REGION, iid, at(2), image_id=f"ami-{iid}", image_name=f"img-{iid}", adopted=False
    )


def available(iid: str) -> Available:
    return Available(RUN, ACCT, REGION, iid, at(3), image_id=f"ami-{iid}")


def failed(iid: str, outcome: Outcome = Outcome.FAILED, image_id: str | None = None) -> Failed:
    return Failed(RUN, ACCT, REGION, iid, at(3), outcome, "Boom", "it broke", image_id)


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    j = await Journal.open(tmp_path / "j.sqlite3")
    await j.start_run(RUN, started_at=T0, config_snapshot={"regions": [REGION]})
    yield j
    await j.close()


async def records(j: Journal) -> dict[str, TargetRecord]:
    return {r.instance_id: r for r in await j.targets(RUN)}


async def test_every_lifecycle_maps_to_its_row(journal: Journal) -> None:
    paths: dict[str, list[Event]] = {
        "i-ok": [requested("i-ok"), created("i-ok"), available("i-ok")],
        "i-pending": [requested("i-pending"), created("i-pending")],
        "i-failed": [
            requested("i-failed"),
            created("i-failed"),
            failed("i-failed", image_id="ami-x"),
        ],
        "i-timeout": [
            requested("i-timeout"),
            created("i-timeout"),
            failed("i-timeout", Outcome.TIMED_OUT),
        ],
        "i-notstarted": [failed("i-notstarted", Outcome.NOT_STARTED)],
        "i-skip": [Skipped(RUN, ACCT, REGION, "i-skip", at(1), reason="instance is terminated")],
        "i-dryok": [
            DryRunChecked(RUN, ACCT, REGION, "i-dryok", at(1), True, "DryRunOperation", "ok")
        ],
        "i-drybad": [
            DryRunChecked(
                RUN, ACCT, REGION, "i-drybad", at(1), False, "UnauthorizedOperation", "no"
            )
        ],
        "i-planned": [],
    }
    for iid, events in paths.items():
        d = discovered(iid)
        await journal(
            Discovered(RUN, ACCT, REGION, iid, at(), "", "stopped") if iid == "i-skip" else d
        )
        for e in events:
            await journal(e)
    await journal(
        Retried(RUN, ACCT, REGION, "i-ok", at(1), "CreateImage", 2, "RequestLimitExceeded", 0.5)
    )
    await journal(Throttled(RUN, ACCT, REGION, None, at(1), "CreateImage", 2.5))

    recs = await records(journal)
    assert recs["i-ok"] == TargetRecord(
        ACCT, REGION, "i-ok", JournalState.AVAILABLE, "img-i-ok", "ami-i-ok", 1
    )
    assert recs["i-pending"].state is JournalState.PENDING
    assert recs["i-pending"].image_id == "ami-i-pending"
    assert recs["i-failed"].state is JournalState.FAILED
    assert (recs["i-failed"].error_code, recs["i-failed"].image_id) == ("Boom", "ami-x")
    # Failed without an image id keeps the one Created recorded: an image is never forgotten.
    assert recs["i-timeout"].state is JournalState.TIMED_OUT
    assert recs["i-timeout"].image_id == "ami-i-timeout"
    assert recs["i-notstarted"].state is JournalState.NOT_STARTED
    assert recs["i-skip"].state is JournalState.SKIPPED
    assert recs["i-skip"].error_message == "instance is terminated"
    assert recs["i-skip"].image_name is None  # discovered with "" (no name)
    assert recs["i-dryok"].state is JournalState.DRY_RUN and recs["i-dryok"].error_code is None
    assert recs["i-drybad"].error_code == "UnauthorizedOperation"
    assert recs["i-planned"].state is JournalState.PLANNED
    assert recs["i-planned"].image_name == "img-i-planned"

    summary = await journal.run(RUN)
    assert summary.total == 9
    assert summary.status == "running"
    assert set(summary.counts) == {s.value for s in JournalState}
    assert summary.counts["dry_run"] == 2 and summary.counts["requesting"] == 0


async def test_resume_never_regresses_a_row_that_may_have_an_image(journal: Journal) -> None:
    for iid in ("i-req", "i-pend", "i-avail", "i-fail", "i-ns", "i-skip"):
        await journal(discovered(iid))
    await journal(requested("i-req"))
    await journal(requested("i-pend"))
    await journal(created("i-pend"))
    await journal(available("i-avail"))
    await journal(failed("i-fail"))
    await journal(failed("i-ns", Outcome.NOT_STARTED))
    await journal(Skipped(RUN, ACCT, REGION, "i-skip", at(1), reason="stopped"))

    # The resumed run rediscovers every target.
    for iid in ("i-req", "i-pend", "i-avail", "i-fail", "i-ns", "i-skip"):
        await journal(discovered(iid))
    recs = await records(journal)
    assert recs["i-req"].state is JournalState.REQUESTING
    assert recs["i-pend"].state is JournalState.PENDING
    assert recs["i-avail"].state is JournalState.AVAILABLE
    assert recs["i-fail"].state is JournalState.FAILED
    # Nothing was ever sent for these: back to planned, old error cleared.
    assert recs["i-ns"].state is JournalState.PLANNED and recs["i-ns"].error_code is None
    assert recs["i-skip"].state is JournalState.PLANNED


async def test_available_is_final_and_attempts_only_grow(journal: Journal) -> None:
    await journal(requested("i-1", attempt=3))
    await journal(requested("i-1", attempt=1))  # a resumed engine may count from 1 again
    assert (await records(journal))["i-1"].attempts == 3
    await journal(created("i-1"))
    await journal(available("i-1"))
    await journal(failed("i-1"))
    await journal(requested("i-1", attempt=4))
    rec = (await records(journal))["i-1"]
    assert rec.state is JournalState.AVAILABLE and rec.image_id == "ami-i-1"


async def test_requested_is_committed_when_the_await_returns(journal: Journal) -> None:
    await journal(discovered("i-1"))
    await journal(requested("i-1"))
    # A second connection sees only committed data.
    with sqlite3.connect(journal.path) as other:
        row = other.execute(
            "SELECT state, image_name, attempts FROM targets WHERE instance_id = 'i-1'"
        ).fetchone()
    other.close()
    assert row == ("requesting", "img-i-1", 1)


async def test_lazy_events_are_committed_soon_and_by_flush(journal: Journal) -> None:
    def state() -> str | None:
        other = sqlite3.connect(journal.path)
        try:
            row = other.execute("SELECT state FROM targets WHERE instance_id = 'i-1'").fetchone()
        finally:
            other.close()
        return row[0] if row else None

    await journal(discovered("i-1"))
    for _ in range(200):  # up to 2 s, generous: the linger is 0.05 s
        if state() is not None:
            break
        await asyncio.sleep(0.01)
    assert state() == "planned"
    await journal(available("i-1"))
    await journal.flush()
    assert state() == "available"


async def test_runs_newest_first_and_finish(tmp_path: Path) -> None:
    async with await Journal.open(tmp_path / "j.sqlite3") as j:
        await j.start_run("old", started_at=T0, config_snapshot={})
        await j.start_run("new", started_at=T0 + timedelta(hours=1), config_snapshot={})
        await j.finish_run("old", status="finished", finished_at=T0 + timedelta(minutes=5))
        runs = await j.runs()
        assert [r.run_id for r in runs] == ["new", "old"]
        assert runs[1].status == "finished" and runs[1].finished_at == T0 + timedelta(minutes=5)
        assert runs[0].total == 0
        with pytest.raises(ValueError, match="status"):
            await j.finish_run("old", status="done", finished_at=T0)


async def test_orphaned_running_run_is_marked_interrupted_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    async with await Journal.open(path) as j:
        await j.start_run(RUN, started_at=T0, config_snapshot={"x": 1})
    async with await Journal.open(path) as j:
        assert (await j.run(RUN)).status == "interrupted"
        # Resuming the same id: running again, original start and config kept.
        await j.start_run(RUN, started_at=T0 + timedelta(days=1), config_snapshot={"x": 2})
        summary = await j.run(RUN)
        assert (summary.status, summary.started_at) == ("running", T0)
        assert await j.config_snapshot(RUN) == {"x": 1}


async def test_config_snapshot_is_stored_exactly_as_given(journal: Journal) -> None:
    # Resume rebuilds the run's config from it: a 40-character git SHA in a tag or an
    # external id must come back as it went in, not "<redacted>" (the config schema has no
    # place for credentials; what is *shown* is redacted, not what the program reads back).
    sha = "0123456789abcdef0123456789abcdef01234567"
    snapshot = {
        "image": {"tags": {"GitSha": sha}},
        "targets": [{"filters": {"tag:Commit": [sha]}}],
        "accounts": [{"role_arn": "arn:aws:iam::1:role/x", "external_id": "A" * 40}],
    }
    await journal.start_run("r2", started_at=T0, config_snapshot={**snapshot, "when": T0})
    assert await journal.config_snapshot("r2") == {**snapshot, "when": str(T0)}


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("token", True),
        ("SessionToken", True),
        ("secret_access_key", True),
        ("api-key", True),
        ("max_tokens", False),
        ("burst_tokens", False),
        ("role_session_name", False),
        ("keys", False),
    ],
)
def test_secret_key_detection(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


async def test_unknown_run_id(journal: Journal) -> None:
    message = "unknown run id nope; `fleetimage runs` lists them"
    for call in (
        journal.run("nope"),
        journal.targets("nope"),
        journal.config_snapshot("nope"),
        journal.finish_run("nope", status="finished", finished_at=T0),
    ):
        with pytest.raises(JournalError) as info:
            await call
        assert str(info.value) == message


async def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    path.write_bytes(b"this is not sqlite at all" * 200)
    with pytest.raises(JournalError) as info:
        await Journal.open(path)
    text = str(info.value)
    assert str(path) in text and "not a" in text and "\n" not in text


async def test_foreign_sqlite_database(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(JournalError, match="not a fleetimage journal"):
        await Journal.open(path)


async def test_other_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    async with await Journal.open(path):
        pass
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION + 1,)
        )
    conn.close()
    with pytest.raises(JournalError) as info:
        await Journal.open(path)
    text = str(info.value)
    assert f"schema version {SCHEMA_VERSION + 1}" in text and "upgrade fleetimage" in text
    assert str(path) in text and "\n" not in text


async def test_second_writer_is_refused_with_the_holder_pid(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "j.sqlite3"  # parent dirs are created
    async with await Journal.open(path) as first:
        with pytest.raises(JournalError) as info:
            await Journal.open(path)
        assert f"pid {os.getpid()}" in str(info.value) and str(path) in str(info.value)
        # A reader is welcome while the writer runs.
        await first.start_run(RUN, started_at=T0, config_snapshot={})
        await first(requested("i-1"))
        async with await Journal.open(path, read_only=True) as reader:
            assert [r.state for r in await reader.targets(RUN)] == [JournalState.REQUESTING]
            with pytest.raises(JournalError):
                await reader.start_run("r2", started_at=T0, config_snapshot={})
    async with await Journal.open(path):  # released on close
        pass


async def test_read_only_needs_an_existing_journal(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="no journal at"):
        await Journal.open(tmp_path / "missing.sqlite3", read_only=True)


async def test_closed_journal_refuses_use(tmp_path: Path) -> None:
    j = await Journal.open(tmp_path / "j.sqlite3")
    await j.close()
    await j.close()  # idempotent
    with pytest.raises(JournalError, match="closed"):
        await j(discovered("i-1"))


def test_default_journal_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FLEETIMAGE_JOURNAL", str(tmp_path / "x.db"))
    assert default_journal_path() == tmp_path / "x.db"
    monkeypatch.delenv("FLEETIMAGE_JOURNAL")
    assert default_journal_path().name == "journal.sqlite3"
    assert "fleetimage" in str(default_journal_path())


async def test_many_concurrent_requesters_are_group_committed(journal: Journal) -> None:
    async def lifecycle(i: int) -> None:
        iid = f"i-{i:05d}"
        await journal(discovered(iid))
        await journal(requested(iid))
        await journal(created(iid))
        await journal(available(iid))

    await asyncio.gather(*(lifecycle(i) for i in range(500)))
    await journal.flush()
    summary = await journal.run(RUN)
    assert summary.counts["available"] == 500 == summary.total


_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import UTC, datetime
    from fleetimage.journal import Journal
    from fleetimage.core.models import Available, Created, Discovered, Requested

    async def main() -> None:
        j = await Journal.open(sys.argv[1])
        now = datetime.now(UTC)
        await j.start_run("run-1", started_at=now, config_snapshot={})
        i = 0
        while True:
            iid = f"i-{i:06d}"
            args = ("run-1", "1", "r", iid, now)
            await j(Discovered(*args, image_name="n-" + iid, state="running"))
            await j(Requested(*args, image_name="n-" + iid, attempt=1))
            print(iid, flush=True)  # the engine would now send CreateImage
            await j(Created(*args, image_id="ami-" + iid, image_name="n-" + iid, adopted=False))
            await j(Available(*args, image_id="ami-" + iid))
            i += 1

    asyncio.run(main())
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
async def test_sigkill_mid_stream_leaves_a_readable_journal(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD, str(path), stdout=asyncio.subprocess.PIPE
    )
    assert child.stdout is not None
    sent: list[str] = []
    try:
        async with asyncio.timeout(60):
            while len(sent) < 300:
                line = await child.stdout.readline()
                assert line, "child died early"
                sent.append(line.decode().strip())
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    # The kernel dropped the writer lock with the process; the file must open cleanly.
    async with await Journal.open(path) as j:
        assert (await j.run(RUN)).status == "interrupted"
        recs = {r.instance_id: r for r in await j.targets(RUN)}
    for iid in sent:
        assert recs[iid].state in {
            JournalState.REQUESTING,
            JournalState.PENDING,
            JournalState.AVAILABLE,
        }, iid
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()


async def test_a_run_that_sent_nothing_can_be_discarded_one_that_sent_cannot(
    journal: Journal,
) -> None:
    await journal(discovered("i-1"))
    await journal.discard_run(RUN)
    with pytest.raises(JournalError, match="unknown run id"):
        await journal.run(RUN)

    await journal.start_run("run-2", started_at=T0, config_snapshot={})
    await journal(discovered("i-2", run="run-2"))
    await journal(Requested("run-2", ACCT, REGION, "i-2", at(1), image_name="img-i-2", attempt=1))
    with pytest.raises(JournalError, match="cannot be discarded"):
        await journal.discard_run("run-2")
    assert (await journal.run("run-2")).total == 1
