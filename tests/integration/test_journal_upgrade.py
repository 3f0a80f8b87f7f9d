"""Journals survive upgrades: a schema-1 journal (lane failures as instance "*") is upgraded in
place after a backup copy, read-only readers upgrade a private copy, and the run resumes; a
schema-2 journal gains prune's tables (and keeps a first prune's rows, resumable)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from test_engine import fleet_config

from fleetimage import Outcome, image_fleet, parse_config, resume_fleet
from fleetimage.core.clock import now
from fleetimage.journal import SCHEMA_VERSION, Journal, prune
from fleetimage.mock import MockConfig


def _downgrade_to_v1(path: Path, run_id: str) -> None:
    """Rewrite a current journal as schema 1 wrote it (no lanes table, no requests kept, no
    shards; "*" target rows; the run statuses of then)."""
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE copies")  # schema 5
        conn.execute("DROP TABLE lanes")
        conn.execute("ALTER TABLE targets DROP COLUMN spec_json")
        conn.execute("ALTER TABLE runs DROP COLUMN shard_json")
        conn.execute("UPDATE runs SET status = 'finished' WHERE status = 'incomplete'")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        conn.execute(
            "INSERT INTO targets (run_id, account, region, instance_id, state, error_code, "
            "error_message, updated_at) VALUES (?, '444455556666', 'eu-west-1', '*', 'failed', "
            "'AccessDenied', 'AssumeRole failed for the whole lane: denied', '2026-01-01')",
            (run_id,),
        )
    sqlite3.connect(path).close()


async def test_v1_journal_is_upgraded_and_resumed_without_duplicates(
    fleet_mock: Any, tmp_path: Path
) -> None:
    mock = await fleet_mock(
        MockConfig(
            regions=("us-east-1",),
            instances_per_region=30,
            seed=21,
            pending_s=0.3,
            state_mix={"running": 1.0},
        )
    )
    journal = tmp_path / "journal.sqlite3"
    config = parse_config(fleet_config())
    first = await image_fleet(
        config, journal=journal, run_id="before-upgrade", endpoint_url=mock.endpoint_url, wait=False
    )
    assert first.counts["pending"] == 30
    _downgrade_to_v1(journal, "before-upgrade")
    before = journal.read_bytes()

    # A reader (fleetimage runs/status) upgrades a private copy and leaves the file alone.
    async with await Journal.open(journal, read_only=True) as reader:
        failures = await reader.lane_failures("before-upgrade")
        assert [(f.region, f.error_code) for f in failures] == [("eu-west-1", "AccessDenied")]
        assert all(r.instance_id != "*" for r in await reader.targets("before-upgrade"))
    assert journal.read_bytes() == before

    report = await resume_fleet("before-upgrade", journal=journal, endpoint_url=mock.endpoint_url)

    backup = journal.with_name("journal.sqlite3.v1.bak")
    assert backup.exists()
    with sqlite3.connect(backup) as conn:  # the backup is the journal as it was
        assert conn.execute("SELECT value FROM meta").fetchone() == ("1",)
    with sqlite3.connect(journal) as conn:
        assert conn.execute("SELECT value FROM meta").fetchone() == (str(SCHEMA_VERSION),)
        assert conn.execute("SELECT COUNT(*) FROM targets WHERE instance_id = '*'").fetchone() == (
            0,
        )
    assert not mock.duplicates()
    assert mock.count(action="CreateImage", outcome="ok") == 30
    assert [r.outcome for r in report.results] == [Outcome.AVAILABLE] * 30


async def test_a_newer_journal_is_refused_in_one_line(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite3"
    async with await Journal.open(journal):
        pass
    with sqlite3.connect(journal) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    try:
        async with await Journal.open(journal):
            raise AssertionError("a newer journal must be refused")
    except Exception as exc:
        assert "schema version 99" in str(exc) and "upgrade fleetimage" in str(exc)
        assert "\n" not in str(exc)


# The prune tables as the first prune wrote them into schema-2 journals (created on first use).
_V2_PRUNE = """
CREATE TABLE prune_runs (prune_id TEXT PRIMARY KEY, fleet TEXT NOT NULL, run_id TEXT,
    started_at TEXT NOT NULL, finished_at TEXT, status TEXT NOT NULL);
CREATE TABLE prune_items (prune_id TEXT NOT NULL, account TEXT NOT NULL, region TEXT NOT NULL,
    image_id TEXT NOT NULL, name TEXT NOT NULL, instance_id TEXT NOT NULL, run_id TEXT NOT NULL,
    snapshot_ids TEXT NOT NULL, state TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL, PRIMARY KEY (prune_id, account, region, image_id));
INSERT INTO prune_runs VALUES ('p-old', 'blue', NULL, '2026-01-01T00:00:00+00:00', NULL,
    'running');
INSERT INTO prune_items VALUES ('p-old', '123456789012', 'us-east-1', 'ami-0aaa', 'n', 'i-1',
    'r-1', '["snap-1"]', 'deleting', '', '2026-01-01T00:00:00+00:00');
"""


def _downgrade_to_v2(path: Path, *, with_prune: bool) -> None:
    """Rewrite a current journal as schema 2 had it: no shards, no copies, no prune tables or
    the first prune's."""
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE runs DROP COLUMN shard_json")
        conn.execute("DROP TABLE prune_items")
        conn.execute("DROP TABLE prune_runs")
        conn.execute("DROP TABLE copies")
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
        if with_prune:
            conn.executescript(_V2_PRUNE)
    sqlite3.connect(path).close()


async def test_v2_journal_gains_the_prune_tables_after_a_backup(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite3"
    async with await Journal.open(journal) as fresh:
        await fresh.start_run("r-1", started_at=datetime.now(UTC), config_snapshot={})
    _downgrade_to_v2(journal, with_prune=False)
    async with await Journal.open(journal, kind="prune") as upgraded:
        assert await prune.prune_run(upgraded, "p-new") is None
        await prune.record_plan(
            upgraded,
            "p-new",
            "blue",
            None,
            [("1", "us-east-1", "ami-1", "n", "i-1", "r-1", ["snap-1"], "planned", "")],
            config_snapshot={"name": "blue"},
        )
        record = await prune.prune_run(upgraded, "p-new")
        assert record is not None and record.config == {"name": "blue"}
        assert [r.run_id for r in await upgraded.runs()] == ["r-1"]
    with sqlite3.connect(journal.with_name("journal.sqlite3.v2.bak")) as conn:
        assert conn.execute("SELECT value FROM meta").fetchone() == ("2",)
    with sqlite3.connect(journal) as conn:
        assert conn.execute("SELECT value FROM meta").fetchone() == (str(SCHEMA_VERSION),)


async def test_v2_journal_with_a_first_prune_keeps_it_resumable(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite3"
    async with await Journal.open(journal):
        pass
    _downgrade_to_v2(journal, with_prune=True)
    before = journal.read_bytes()
    async with await Journal.open(journal, read_only=True) as reader:  # a private copy
        assert (await prune.prune_run(reader, "p-old")) is not None
    assert journal.read_bytes() == before
    async with await Journal.open(journal, kind="prune") as upgraded:
        record = await prune.prune_run(upgraded, "p-old")
        # opening for prune marks a prune left running by a dead process interrupted
        assert record is not None and record.status == "interrupted" and record.config == {}
        [item] = await prune.read_items(upgraded, "p-old")
        assert (item.image_id, item.state, item.snapshot_ids) == (
            "ami-0aaa",
            "deleting",
            ("snap-1",),
        )
    with sqlite3.connect(journal) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert not {"prune_runs_v2", "prune_items_v2"} & tables


async def test_v2_journal_gains_the_copies_table(tmp_path: Path) -> None:
    """A journal from before copies is upgraded in place (after a backup copy)."""
    path = tmp_path / "journal.sqlite3"
    async with await Journal.open(path) as journal:
        await journal.start_run("r1", started_at=now(), config_snapshot={})
    _downgrade_to_v2(path, with_prune=False)
    async with await Journal.open(path) as journal:
        assert await journal.copies("r1") == []
        assert (await journal.run("r1")).run_id == "r1"
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta").fetchone() == (str(SCHEMA_VERSION),)
    assert path.with_name("journal.sqlite3.v2.bak").exists()
