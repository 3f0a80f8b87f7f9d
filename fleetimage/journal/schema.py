"""The journal's schema and how each event becomes a row.

Schema (``meta.schema_version`` = :data:`SCHEMA_VERSION`; older journals are upgraded in place
by :data:`MIGRATIONS` after a backup copy, newer ones are refused)::

    runs(run_id PK, started_at, finished_at, status, config_json, notes)
    lanes(run_id, account, region, state planned|failed, action, error_code, error_message,
          updated_at, PRIMARY KEY (run_id, account, region))
    targets(run_id, account, region, instance_id, state, image_name, image_id, attempts,
            error_code, error_message, requested_at, completed_at, updated_at,
            PRIMARY KEY (run_id, account, region, instance_id))

Times are ISO 8601 text. Event → row (every write is an upsert, so resume is safe):

- Discovered → ``planned``; on an existing row only if nothing was ever sent for it
  (planned, not_started, skipped, dry_run): a resumed run never regresses requesting,
  pending, available, failed or timed_out.
- Requested → ``requesting``, ``attempts`` = max(attempts, attempt), first ``requested_at`` kept.
- Created → ``pending`` + image_id.  Available → ``available`` + completed_at.
- Failed → its outcome (failed / timed_out / not_started) + error; image_id kept if not given.
- Skipped → ``skipped``, error_message = reason.  DryRunChecked → ``dry_run``; the error is
  recorded only when the check did *not* pass, so "dry_run without error_code" means ok.
- LanePlanned → lane ``planned`` (its discovery is complete); LaneFailed → lane ``failed``.
- Retried / Throttled → nothing: ``Requested.attempt`` already counts CreateImage attempts.

Two invariants hold across all of them: ``available`` is final, and a known image_id is never
cleared — the journal can never forget an image it has seen.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fleetimage.core.models import (
    Available,
    Created,
    Discovered,
    DryRunChecked,
    Event,
    Failed,
    JournalState,
    LaneFailed,
    LanePlanned,
    Outcome,
    Requested,
    Skipped,
)

__all__ = ["MIGRATIONS", "RUN_STATUSES", "SCHEMA", "SCHEMA_VERSION", "event_row", "timestamp"]

SCHEMA_VERSION = 2
RUN_STATUSES = frozenset({"running", "finished", "interrupted", "failed"})


# One row per lane that planned (discovery complete) or failed as a whole.
_LANES = """
CREATE TABLE lanes (
    run_id TEXT NOT NULL,
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('planned', 'failed')),
    action TEXT,
    error_code TEXT,
    error_message TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (run_id, account, region)
) WITHOUT ROWID;
"""

SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}');
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'interrupted', 'failed')),
    config_json TEXT NOT NULL DEFAULT '{{}}',
    notes TEXT
);
CREATE TABLE targets (
    run_id TEXT NOT NULL,
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    state TEXT NOT NULL,
    image_name TEXT,
    image_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    error_code TEXT,
    error_message TEXT,
    requested_at TEXT,
    completed_at TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (run_id, account, region, instance_id)
) WITHOUT ROWID;
{_LANES}
"""

# Upgrades, from version N to N + 1, run in one transaction after a backup copy of the file.
MIGRATIONS: dict[int, str] = {
    # 1 → 2: lane-wide failures leave the targets table (they were rows with instance "*").
    1: _LANES
    + """
INSERT INTO lanes (run_id, account, region, state, action, error_code, error_message, updated_at)
    SELECT run_id, account, region, 'failed', '', COALESCE(error_code, ''),
        COALESCE(error_message, ''), updated_at
    FROM targets WHERE instance_id = '*';
DELETE FROM targets WHERE instance_id = '*';
""",
}

# --- event → SQL ---------------------------------------------------------------------------

_INSERT = """
INSERT INTO targets (run_id, account, region, instance_id, state, image_name, image_id,
    attempts, error_code, error_message, requested_at, completed_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (run_id, account, region, instance_id) DO UPDATE SET
"""
_NOT_FINAL = "WHERE targets.state <> 'available'"
_SQL: dict[type[Event], str] = {
    Discovered: _INSERT
    + """state = 'planned', image_name = excluded.image_name, error_code = NULL,
    error_message = NULL, completed_at = NULL, updated_at = excluded.updated_at
    WHERE targets.state IN ('planned', 'not_started', 'skipped', 'dry_run')""",
    Requested: _INSERT
    + """state = 'requesting', image_name = excluded.image_name,
    attempts = MAX(targets.attempts, excluded.attempts),
    requested_at = COALESCE(targets.requested_at, excluded.requested_at),
    error_code = NULL, error_message = NULL, completed_at = NULL,
    updated_at = excluded.updated_at """
    + _NOT_FINAL,
    Created: _INSERT
    + """state = 'pending', image_id = excluded.image_id, image_name = excluded.image_name,
    error_code = NULL, error_message = NULL, updated_at = excluded.updated_at """
    + _NOT_FINAL,
    Available: _INSERT
    + """state = 'available', image_id = excluded.image_id, error_code = NULL,
    error_message = NULL, completed_at = excluded.completed_at,
    updated_at = excluded.updated_at""",
    Failed: _INSERT
    + """state = excluded.state, image_id = COALESCE(excluded.image_id, targets.image_id),
    error_code = excluded.error_code, error_message = excluded.error_message,
    completed_at = excluded.completed_at, updated_at = excluded.updated_at """
    + _NOT_FINAL,
    Skipped: _INSERT
    + """state = 'skipped', error_code = NULL, error_message = excluded.error_message,
    completed_at = excluded.completed_at, updated_at = excluded.updated_at """
    + _NOT_FINAL,
    DryRunChecked: _INSERT
    + """state = 'dry_run', error_code = excluded.error_code,
    error_message = excluded.error_message, completed_at = excluded.completed_at,
    updated_at = excluded.updated_at """
    + _NOT_FINAL,
}
_FAILED_STATES = {
    Outcome.FAILED: JournalState.FAILED,
    Outcome.TIMED_OUT: JournalState.TIMED_OUT,
    Outcome.NOT_STARTED: JournalState.NOT_STARTED,
}


def timestamp(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


_LANE_UPSERT = """
INSERT INTO lanes (run_id, account, region, state, action, error_code, error_message, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (run_id, account, region) DO UPDATE SET state = excluded.state,
    action = excluded.action, error_code = excluded.error_code,
    error_message = excluded.error_message, updated_at = excluded.updated_at
"""


def event_row(event: Event) -> tuple[str, tuple[Any, ...]] | None:
    """The upsert for ``event``, or None if the journal does not record it."""
    lane = (event.run_id, event.account, event.region)
    if isinstance(event, LaneFailed):
        why = (event.action, event.error_code, event.error_message)
        return _LANE_UPSERT, (*lane, "failed", *why, timestamp(event.at))
    if isinstance(event, LanePlanned):
        return _LANE_UPSERT, (*lane, "planned", None, None, None, timestamp(event.at))
    sql = _SQL.get(type(event))
    if sql is None or event.instance_id is None:
        return None
    # Columns: state, image_name, image_id, attempts, error_code, error_message,
    # requested_at, completed_at.
    at = timestamp(event.at)
    cols: tuple[Any, ...]
    err: tuple[str | None, str | None]
    match event:
        case Discovered():
            # "" means "no name" (e.g. a target discovered only to be skipped).
            cols = ("planned", event.image_name or None, None, 0, None, None, None, None)
        case Requested():
            cols = ("requesting", event.image_name, None, event.attempt, None, None, at, None)
        case Created():
            cols = ("pending", event.image_name, event.image_id, 0, None, None, None, None)
        case Available():
            cols = ("available", None, event.image_id, 0, None, None, None, at)
        case Failed():
            state = _FAILED_STATES.get(event.outcome, JournalState.FAILED).value
            err = (event.error_code, event.error_message)
            cols = (state, None, event.image_id, 0, *err, None, at)
        case Skipped():
            cols = ("skipped", None, None, 0, None, event.reason, None, at)
        case DryRunChecked():
            err = (None, None) if event.ok else (event.error_code, event.error_message)
            cols = ("dry_run", None, None, 0, *err, None, at)
        case _:  # pragma: no cover - _SQL and this match list the same types
            return None
    key = (event.run_id, event.account, event.region, event.instance_id)
    return sql, (*key, *cols, at)
