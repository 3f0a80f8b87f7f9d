"""Journals survive upgrades: a schema-1 journal (lane failures as instance "*") is upgraded in
place after a backup copy, read-only readers upgrade a private copy, and the run resumes."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from test_engine import fleet_config

from fleetimage import Outcome, image_fleet, parse_config, resume_fleet
from fleetimage.core.clock import now
from fleetimage.journal import SCHEMA_VERSION, Journal
from fleetimage.mock import MockConfig


def _downgrade_to_v1(path: Path, run_id: str) -> None:
    """Rewrite a current journal as schema 1 wrote it (no lanes table, no requests kept;
    "*" target rows; the run statuses of then)."""
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE copies")  # schema 3
        conn.execute("DROP TABLE lanes")
        conn.execute("ALTER TABLE targets DROP COLUMN spec_json")
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


async def test_v2_journal_gains_the_copies_table(tmp_path: Path) -> None:
    """2 → 3: a journal from before copies is upgraded in place (after a backup copy)."""
    path = tmp_path / "journal.sqlite3"
    async with await Journal.open(path) as journal:
        await journal.start_run("r1", started_at=now(), config_snapshot={})
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE copies")
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    sqlite3.connect(path).close()
    async with await Journal.open(path) as journal:
        assert await journal.copies("r1") == []
        assert (await journal.run("r1")).run_id == "r1"
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta").fetchone() == (str(SCHEMA_VERSION),)
    assert path.with_name("journal.sqlite3.v2.bak").exists()
