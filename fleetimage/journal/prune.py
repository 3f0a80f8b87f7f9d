"""Prune's rows in the journal (same SQLite file as imaging runs; tables in ``schema``).

``prune_runs``: one row per prune (its fleet, the run it was limited to, its status, the
config it ran with, so ``fleetimage resume`` can finish it). ``prune_items``: one row per
image the plan showed: ``kept`` (with why) or ``planned`` → ``deleting`` (committed before
DeregisterImage is sent) → ``deleted`` | ``failed`` | ``kept`` (a check right before deletion
said no). Resume deletes only ``planned``/``deleting`` rows: nothing the plan did not show,
nothing twice.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fleetimage.journal.store import Journal

__all__ = [
    "OPEN_ITEM_STATES",
    "PruneItemRecord",
    "PruneRunRecord",
    "finish_prune",
    "mark_item",
    "prune_items",
    "prune_run",
    "prune_runs",
    "read_items",
    "record_plan",
    "restart_prune",
]

OPEN_ITEM_STATES = ("planned", "deleting")  # what resume still has to settle


@dataclass(frozen=True, slots=True)
class PruneRunRecord:
    prune_id: str
    fleet: str
    run_id: str | None
    started_at: datetime
    finished_at: datetime | None
    status: str
    config: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PruneItemRecord:
    account: str
    region: str
    image_id: str
    name: str
    instance_id: str
    run_id: str
    snapshot_ids: tuple[str, ...]
    state: str
    detail: str


Row = tuple[str, str, str, str, str, str, list[str], str, str]


def _now() -> str:
    return datetime.now(UTC).isoformat()


async def record_plan(
    journal: Journal,
    prune_id: str,
    fleet: str,
    run_id: str | None,
    items: list[Row],
    *,
    config_snapshot: dict[str, Any] | None = None,
) -> None:
    """The plan, committed before anything is deleted. ``items``: (account, region, image id,
    name, instance id, run id, snapshot ids, state, detail)."""
    config_json = json.dumps(config_snapshot or {}, sort_keys=True, default=str)

    def write(conn: sqlite3.Connection) -> None:
        at = _now()
        conn.execute(
            "INSERT INTO prune_runs (prune_id, fleet, run_id, started_at, status, config_json) "
            "VALUES (?, ?, ?, ?, 'running', ?)",
            (prune_id, fleet, run_id, at, config_json),
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


async def restart_prune(journal: Journal, prune_id: str) -> None:
    """Mark a prune running again (resume); its start and plan stay."""
    await journal._call(
        lambda conn: conn.execute(
            "UPDATE prune_runs SET status = 'running', finished_at = NULL WHERE prune_id = ?",
            (prune_id,),
        )
    )


def _run_record(row: tuple[Any, ...]) -> PruneRunRecord:
    pid, fleet, run_id, started, finished, status, config = row
    return PruneRunRecord(
        pid,
        fleet,
        run_id,
        datetime.fromisoformat(started),
        datetime.fromisoformat(finished) if finished else None,
        status,
        json.loads(config or "{}"),
    )


_RUN_COLUMNS = "prune_id, fleet, run_id, started_at, finished_at, status, config_json"


async def prune_run(journal: Journal, prune_id: str) -> PruneRunRecord | None:
    """The prune ``prune_id``, or None if the journal has no prune of that id."""

    def read(conn: sqlite3.Connection) -> PruneRunRecord | None:
        row = conn.execute(
            f"SELECT {_RUN_COLUMNS} FROM prune_runs WHERE prune_id = ?", (prune_id,)
        ).fetchone()
        return _run_record(row) if row else None

    return await journal._call(read)


async def prune_runs(journal: Journal) -> list[PruneRunRecord]:
    """Every prune, newest first."""

    def read(conn: sqlite3.Connection) -> list[PruneRunRecord]:
        rows = conn.execute(
            f"SELECT {_RUN_COLUMNS} FROM prune_runs ORDER BY started_at DESC, prune_id DESC"
        ).fetchall()
        return [_run_record(r) for r in rows]

    return await journal._call(read)


async def read_items(journal: Journal, prune_id: str) -> list[PruneItemRecord]:
    """Every item of ``prune_id`` as journaled, sorted by (account, region, image id)."""

    def read(conn: sqlite3.Connection) -> list[PruneItemRecord]:
        rows = conn.execute(
            "SELECT account, region, image_id, name, instance_id, run_id, snapshot_ids, "
            "state, detail FROM prune_items WHERE prune_id = ? "
            "ORDER BY account, region, image_id",
            (prune_id,),
        ).fetchall()
        return [
            PruneItemRecord(a, r, i, n, inst, run, tuple(json.loads(snaps)), state, detail)
            for a, r, i, n, inst, run, snaps, state, detail in rows
        ]

    return await journal._call(read)


async def prune_items(journal: Journal, prune_id: str) -> list[tuple[str, str, str, str, str]]:
    """(account, region, image id, state, detail) of every item of ``prune_id``."""
    return [
        (r.account, r.region, r.image_id, r.state, r.detail)
        for r in await read_items(journal, prune_id)
    ]
