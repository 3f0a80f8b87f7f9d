"""The journal's schema and how each event becomes a row.

Schema (``meta.schema_version`` = :data:`SCHEMA_VERSION`; older journals are upgraded in place
by :data:`MIGRATIONS` after a backup copy, newer ones are refused)::

    runs(run_id PK, started_at, finished_at, status, config_json, notes, shard_json)
    lanes(run_id, account, region, state planned|failed, action, error_code, error_message,
          updated_at, PRIMARY KEY (run_id, account, region))
    copies(run_id, account, region, instance_id, destination, state, source_image_id, name,
           client_token, image_id, attempts, ..., PRIMARY KEY (run_id, account, region,
           instance_id, destination))   -- version 3, see journal/copies.py
    targets(run_id, account, region, instance_id, state, image_name, image_id, attempts,
            error_code, error_message, requested_at, completed_at, spec_json, updated_at,
            PRIMARY KEY (run_id, account, region, instance_id))
    prune_runs(prune_id PK, fleet, run_id, started_at, finished_at, status, config_json)
    prune_items(prune_id, account, region, image_id, name, instance_id, run_id,
                snapshot_ids, state planned|deleting|deleted|kept|failed, detail, updated_at,
                PRIMARY KEY (prune_id, account, region, image_id))

Prune is its own run kind (``prune_runs``); its rows are written by ``journal.prune``.

Times are ISO 8601 text; ``shard_json`` is the shard a sharded run images (``Shard.to_dict()``,
NULL for a whole run), so resume and rediscovery stay inside its lanes; ``spec_json`` is the CreateImage request planned for the target
(``ImageSpec.to_dict()``), so resume images exactly what the run planned.

Event → row: each target event is one statement generated from the state machine's table
(:data:`fleetimage.core.states.TRANSITIONS`): it moves the row only from the states its kind
lists, and otherwise changes nothing. So ``available`` is final, a target that may have an
image (requesting, pending, unknown, timed_out) is never relabelled skipped, not_started or
planned, and a known image_id is never cleared — the journal never forgets an image it has
seen. What each kind writes besides the state: Discovered the name and the request; Requested
the name, ``attempts`` = max(attempts, attempt) and the first ``requested_at``; Created the
image id; Available ``completed_at``; Failed (failed / timed_out / unknown / not_started), and
DryRunChecked when the check did not pass, the error; Skipped the reason. LanePlanned → lane
``planned`` (its discovery is complete); LaneFailed → lane ``failed``. Retried and Throttled
are not recorded.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from fleetimage.core.models import (
    Available,
    Created,
    Discovered,
    DryRunChecked,
    Event,
    Failed,
    LaneFailed,
    LanePlanned,
    Requested,
    Skipped,
)
from fleetimage.core.states import TRANSITIONS, event_kind
from fleetimage.journal.copies import COPIES, copy_row

__all__ = [
    "MIGRATIONS",
    "PRUNE_STATES",
    "RUN_STATUSES",
    "SCHEMA",
    "SCHEMA_VERSION",
    "event_row",
    "timestamp",
]

SCHEMA_VERSION = 5
# finished: nothing left open; incomplete: it ended with targets or lanes open (--no-wait,
# deadline, error budget, an outage); interrupted: stopped or killed; failed: an exception.
RUN_STATUSES = frozenset({"running", "finished", "incomplete", "interrupted", "failed"})
_STATUS_CHECK = ", ".join(f"'{s}'" for s in sorted(RUN_STATUSES))


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

_RUNS = f"""
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL CHECK (status IN ({_STATUS_CHECK})),
    config_json TEXT NOT NULL DEFAULT '{{}}',
    notes TEXT
);
"""

# Version 3's addition to runs (kept apart: migration 1 → 2 copies version 2's runs table).
_SHARD_COLUMN = """
ALTER TABLE runs ADD COLUMN shard_json TEXT;
"""

# Prune's tables: one row per prune, one per image its plan showed (kept ones with why).
# ``deleting`` is committed before DeregisterImage is sent, so resume knows what may be gone.
PRUNE_STATES = ("planned", "deleting", "deleted", "kept", "failed")
_PRUNE_STATE_CHECK = ", ".join(f"'{s}'" for s in PRUNE_STATES)
_PRUNE = f"""
CREATE TABLE prune_runs (
    prune_id TEXT PRIMARY KEY,
    fleet TEXT NOT NULL,
    run_id TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL CHECK (status IN ({_STATUS_CHECK})),
    config_json TEXT NOT NULL DEFAULT '{{}}'
);
CREATE TABLE prune_items (
    prune_id TEXT NOT NULL,
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    image_id TEXT NOT NULL,
    name TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    snapshot_ids TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ({_PRUNE_STATE_CHECK})),
    detail TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL,
    PRIMARY KEY (prune_id, account, region, image_id)
) WITHOUT ROWID;
"""

SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}');
{_RUNS}
{_SHARD_COLUMN}
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
    spec_json TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (run_id, account, region, instance_id)
) WITHOUT ROWID;
{_LANES}
{_PRUNE}
{COPIES}
"""

# Upgrades, from version N to N + 1, run in one transaction after a backup copy of the file.
MIGRATIONS: dict[int, str] = {
    # 1 → 2: lane-wide failures leave the targets table (they were rows with instance "*");
    # each target keeps its CreateImage request, so resume images exactly what was planned.
    1: _LANES
    + """
INSERT INTO lanes (run_id, account, region, state, action, error_code, error_message, updated_at)
    SELECT run_id, account, region, 'failed', '', COALESCE(error_code, ''),
        COALESCE(error_message, ''), updated_at
    FROM targets WHERE instance_id = '*';
DELETE FROM targets WHERE instance_id = '*';
ALTER TABLE targets ADD COLUMN spec_json TEXT;
ALTER TABLE runs RENAME TO runs_v1;
"""
    + _RUNS
    + """
INSERT INTO runs SELECT * FROM runs_v1;
DROP TABLE runs_v1;
""",
    # 2 → 3: a sharded run records its shard (resume stays inside the shard's lanes).
    2: _SHARD_COLUMN,
    # 3 → 4: prune becomes a run kind of its own, resumable (its config is kept). Journals that
    # an earlier prune wrote to already hold its two tables (created on first use, without the
    # config): they are copied over; a status that is not a run status becomes interrupted.
    3: """
CREATE TABLE IF NOT EXISTS prune_runs (prune_id TEXT PRIMARY KEY, fleet TEXT NOT NULL,
    run_id TEXT, started_at TEXT NOT NULL, finished_at TEXT, status TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS prune_items (prune_id TEXT NOT NULL, account TEXT NOT NULL,
    region TEXT NOT NULL, image_id TEXT NOT NULL, name TEXT NOT NULL,
    instance_id TEXT NOT NULL, run_id TEXT NOT NULL, snapshot_ids TEXT NOT NULL,
    state TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '', updated_at TEXT NOT NULL,
    PRIMARY KEY (prune_id, account, region, image_id));
ALTER TABLE prune_items RENAME TO prune_items_v2;
ALTER TABLE prune_runs RENAME TO prune_runs_v2;
"""
    + _PRUNE
    + f"""
INSERT INTO prune_runs (prune_id, fleet, run_id, started_at, finished_at, status)
    SELECT prune_id, fleet, run_id, started_at, finished_at,
        CASE WHEN status IN ({_STATUS_CHECK}) THEN status ELSE 'interrupted' END
    FROM prune_runs_v2;
INSERT INTO prune_items SELECT prune_id, account, region, image_id, name, instance_id, run_id,
    snapshot_ids, CASE WHEN state IN ({_PRUNE_STATE_CHECK}) THEN state ELSE 'failed' END,
    detail, updated_at FROM prune_items_v2;
DROP TABLE prune_items_v2;
DROP TABLE prune_runs_v2;
""",
    # 4 → 5: cross-region copies, one row per (run, target, destination) (journal/copies.py).
    4: COPIES,
}

# --- event → SQL ---------------------------------------------------------------------------
# Generated from the one state machine (core.states.TRANSITIONS): a row moves only from the
# states its event's row of the table lists; otherwise the statement changes nothing.

_COLUMNS = (
    "state, image_name, image_id, attempts, error_code, error_message, requested_at, "
    "completed_at, spec_json, updated_at"
)
_VALUES = (
    ":state, :image_name, :image_id, :attempts, :error_code, :error_message, :requested_at, "
    ":completed_at, :spec_json, :updated_at"
)
# What each kind of event writes besides the state (``:name`` is the event's value).
_WRITES = {
    "discovered": "image_name = :image_name, spec_json = COALESCE(:spec_json, spec_json), "
    "error_code = NULL, error_message = NULL, completed_at = NULL",
    "requested": "image_name = :image_name, attempts = MAX(attempts, :attempts), "
    "requested_at = COALESCE(requested_at, :requested_at), error_code = NULL, "
    "error_message = NULL, completed_at = NULL",
    "created": "image_id = :image_id, image_name = :image_name, error_code = NULL, "
    "error_message = NULL",
    "available": "image_id = :image_id, error_code = NULL, error_message = NULL, "
    "completed_at = :completed_at",
    "skipped": "error_code = NULL, error_message = :error_message, completed_at = :completed_at",
}
# failed, timed_out, unknown, not_started and dry_run: an error (or none), never forgetting an id
_ENDING = (
    "image_id = COALESCE(:image_id, image_id), error_code = :error_code, "
    "error_message = :error_message, completed_at = :completed_at"
)


def _statement(kind: str) -> str:
    sources, _ = TRANSITIONS[kind]
    states = ", ".join(f"'{s.value}'" for s in sorted(x for x in sources if x is not None))
    writes = f"state = :state, {_WRITES.get(kind, _ENDING)}, updated_at = :updated_at"
    key = "run_id = :run_id AND account = :account AND region = :region AND instance_id = :iid"
    if None not in sources:  # never creates a row: an update of a known target, if it fits
        return f"UPDATE targets SET {writes} WHERE {key} AND state IN ({states})"
    # In an upsert's SET, a bare column is the stored row's value (SQLite's rule).
    return (
        f"INSERT INTO targets (run_id, account, region, instance_id, {_COLUMNS}) "
        f"VALUES (:run_id, :account, :region, :iid, {_VALUES}) "
        f"ON CONFLICT (run_id, account, region, instance_id) DO UPDATE SET {writes} "
        f"WHERE targets.state IN ({states})"
    )


_SQL = {kind: _statement(kind) for kind in TRANSITIONS}


def timestamp(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


_LANE_UPSERT = """
INSERT INTO lanes (run_id, account, region, state, action, error_code, error_message, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (run_id, account, region) DO UPDATE SET state = excluded.state,
    action = excluded.action, error_code = excluded.error_code,
    error_message = excluded.error_message, updated_at = excluded.updated_at
"""


def event_row(event: Event) -> tuple[str, dict[str, Any] | tuple[Any, ...]] | None:
    """The statement that records ``event``, or None if the journal does not record it."""
    lane = (event.run_id, event.account, event.region)
    if isinstance(event, LaneFailed):
        why = (event.action, event.error_code, event.error_message)
        return _LANE_UPSERT, (*lane, "failed", *why, timestamp(event.at))
    if isinstance(event, LanePlanned):
        return _LANE_UPSERT, (*lane, "planned", None, None, None, timestamp(event.at))
    copy = copy_row(event)
    if copy is not None:
        return copy
    kind = event_kind(event)
    if kind is None:
        return None
    at = timestamp(event.at)
    row: dict[str, Any] = {
        "run_id": event.run_id,
        "account": event.account,
        "region": event.region,
        "iid": event.instance_id,
        "state": TRANSITIONS[kind][1].value,
        "image_name": None,
        "image_id": None,
        "attempts": 0,
        "error_code": None,
        "error_message": None,
        "requested_at": None,
        "completed_at": None,
        "spec_json": None,
        "updated_at": at,
    }
    match event:
        case Discovered():
            # "" means "no name" (e.g. a target discovered only to be skipped).
            row["image_name"] = event.image_name or None
            if event.spec is not None:
                row["spec_json"] = json.dumps(event.spec.to_dict(), sort_keys=True)
        case Requested():
            row.update(image_name=event.image_name, attempts=event.attempt, requested_at=at)
        case Created():
            row.update(image_name=event.image_name, image_id=event.image_id)
        case Available():
            row.update(image_id=event.image_id, completed_at=at)
        case Failed():
            row.update(image_id=event.image_id, completed_at=at)
            row.update(error_code=event.error_code, error_message=event.error_message)
        case Skipped():
            row.update(error_message=event.reason, completed_at=at)
        case DryRunChecked():
            row["completed_at"] = at
            if not event.ok:  # "dry_run without error_code" means the check passed
                row.update(error_code=event.error_code, error_message=event.error_message)
    return _SQL[kind], row
