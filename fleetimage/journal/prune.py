"""Prune's journal tables (same SQLite file as runs, written by the Journal's writer thread).

``prune_runs``: one row per prune (its fleet, the run it was limited to, its status).
``prune_items``: one row per image the plan showed: ``kept`` (with why) or
``planned`` → ``deleting`` (committed before DeregisterImage is sent) → ``deleted`` |
``failed`` | ``kept`` (a check right before deletion said no). Resume deletes only
``planned``/``deleting`` rows: nothing the plan did not show, nothing twice.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

from fleetimage.journal.store import Journal

__all__ = ["PRUNE_SCHEMA", "finish_prune", "mark_item", "prune_items", "record_plan"]

PRUNE_SCHEMA = """
CREATE TABLE IF NOT EXISTS prune_runs (
    prune_id TEXT PRIMARY KEY,
    fleet TEXT NOT NULL,
    run_id TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS prune_items (
    prune_id TEXT NOT NULL REFERENCES prune_runs(prune_id),
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    image_id TEXT NOT NULL,
    name TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    snapshot_ids TEXT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL,
    PRIMARY KEY (prune_id, account, region, image_id)
);
"""


def _ensure(conn: sqlite3.Connection) -> None:
    # One statement at a time: executescript would commit the writer's open transaction.
    for statement in PRUNE_SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


Row = tuple[str, str, str, str, str, str, list[str], str, str]


def _now() -> str:
    return datetime.now(UTC).isoformat()


async def record_plan(
    journal: Journal, prune_id: str, fleet: str, run_id: str | None, items: list[Row]
) -> None:
    """The plan, committed before anything is deleted. ``items``: (account, region, image id,
    name, instance id, run id, snapshot ids, state, detail)."""

    def write(conn: sqlite3.Connection) -> None:
        _ensure(conn)
        at = _now()
        conn.execute(
            "INSERT INTO prune_runs VALUES (?, ?, ?, ?, NULL, 'running')",
            (prune_id, fleet, run_id, at),
        )
        conn.executemany(
            "INSERT INTO prune_items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(prune_id, *r[:6], json.dumps(r[6]), r[7], r[8], at) for r in items],
        )

    await journal._call(write)  # the Journal's writer thread


async def mark_item(
    journal: Journal,
    prune_id: str,
    account: str,
    region: str,
    image_id: str,
    state: str,
    detail: str = "",
) -> None:
    """Move one item on; returns once committed (``deleting`` must be durable before sending)."""

    def write(conn: sqlite3.Connection) -> None:
        conn.execute(
            "UPDATE prune_items SET state = ?, detail = ?, updated_at = ? "
            "WHERE prune_id = ? AND account = ? AND region = ? AND image_id = ?",
            (state, detail, _now(), prune_id, account, region, image_id),
        )

    await journal._call(write)


async def finish_prune(journal: Journal, prune_id: str, status: str) -> None:
    def write(conn: sqlite3.Connection) -> None:
        conn.execute(
            "UPDATE prune_runs SET status = ?, finished_at = ? WHERE prune_id = ?",
            (status, _now(), prune_id),
        )

    await journal._call(write)


async def prune_items(journal: Journal, prune_id: str) -> list[tuple[str, str, str, str, str]]:
    """(account, region, image id, state, detail) of every item of ``prune_id``."""

    def read(conn: sqlite3.Connection) -> list[tuple[str, str, str, str, str]]:
        _ensure(conn)
        rows = conn.execute(
            "SELECT account, region, image_id, state, detail FROM prune_items "
            "WHERE prune_id = ? ORDER BY account, region, image_id",
            (prune_id,),
        ).fetchall()
        return [tuple(r) for r in rows]

    return await journal._call(read)
