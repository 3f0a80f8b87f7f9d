"""The journal's copies table (schema version 3): one row per (run, target, destination).

``client_token`` is written by the first event that knows it (CopyPlanned, CopyRequested)
and never changed for the same source image, so every retry and every resume sends the
same token; a new source image (``--retry-failed`` re-created it) brings a new token. Each
event moves a row only from the states its kind lists in
:data:`fleetimage.core.copies.COPY_TRANSITIONS`, as targets do; a known image id is never
cleared.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from fleetimage.core.copies import (
    COPY_TRANSITIONS,
    CopyAvailable,
    CopyCreated,
    CopyFailed,
    CopyKey,
    CopyPlanned,
    CopyRecord,
    CopyRequested,
    CopyState,
    copy_kind,
)
from fleetimage.core.models import Event

__all__ = ["COPIES", "copy_row", "read_copies"]

COPIES = """
CREATE TABLE copies (
    run_id TEXT NOT NULL,
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    state TEXT NOT NULL,
    source_image_id TEXT NOT NULL,
    name TEXT NOT NULL,
    client_token TEXT NOT NULL,
    image_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    error_code TEXT,
    error_message TEXT,
    completed_at TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (run_id, account, region, instance_id, destination)
) WITHOUT ROWID;
"""

_KEY = (
    "run_id = :run_id AND account = :account AND region = :region "
    "AND instance_id = :iid AND destination = :destination"
)
_WRITES = {
    "planned": "source_image_id = :source_image_id, name = :name, "
    "client_token = :client_token, error_code = NULL, error_message = NULL",
    "requested": "source_image_id = :source_image_id, name = :name, "
    "client_token = :client_token, attempts = MAX(attempts, :attempts), "
    "image_id = CASE WHEN copies.source_image_id = :source_image_id THEN image_id END, "
    "error_code = NULL, error_message = NULL, completed_at = NULL",
    "created": "image_id = :image_id, error_code = NULL, error_message = NULL",
    "available": "image_id = :image_id, error_code = NULL, error_message = NULL, "
    "completed_at = :at",
}
_ENDING = (
    "image_id = COALESCE(:image_id, image_id), error_code = :error_code, "
    "error_message = :error_message, completed_at = :at"
)


def _statement(kind: str) -> str:
    sources, _ = COPY_TRANSITIONS[kind]
    states = ", ".join(f"'{s.value}'" for s in sorted(x for x in sources if x is not None))
    writes = f"state = :state, {_WRITES.get(kind, _ENDING)}, updated_at = :at"
    if None not in sources:
        return f"UPDATE copies SET {writes} WHERE {_KEY} AND state IN ({states})"
    return (
        "INSERT INTO copies (run_id, account, region, instance_id, destination, state, "
        "source_image_id, name, client_token, image_id, attempts, error_code, error_message, "
        "completed_at, updated_at) VALUES (:run_id, :account, :region, :iid, :destination, "
        ":state, :source_image_id, :name, :client_token, :image_id, :attempts, :error_code, "
        ":error_message, NULL, :at) ON CONFLICT (run_id, account, region, instance_id, "
        f"destination) DO UPDATE SET {writes} WHERE copies.state IN ({states})"
    )


_SQL = {kind: _statement(kind) for kind in COPY_TRANSITIONS}


def copy_row(event: Event) -> tuple[str, dict[str, Any]] | None:
    """The statement that records a copy event, or None if ``event`` is not one."""
    kind = copy_kind(event)
    if kind is None:
        return None
    assert isinstance(event, CopyPlanned | CopyRequested | CopyCreated | CopyAvailable | CopyFailed)
    row: dict[str, Any] = {
        "run_id": event.run_id,
        "account": event.account,
        "region": event.region,
        "iid": event.instance_id,
        "destination": event.destination,
        "state": COPY_TRANSITIONS[kind][1].value,
        "source_image_id": "",
        "name": "",
        "client_token": "",
        "image_id": None,
        "attempts": 0,
        "error_code": None,
        "error_message": None,
        "at": event.at.isoformat(),
    }
    match event:
        case CopyPlanned():
            row.update(
                source_image_id=event.source_image_id,
                name=event.name,
                client_token=event.client_token,
            )
        case CopyRequested():
            row.update(
                source_image_id=event.source_image_id,
                name=event.name,
                client_token=event.client_token,
                attempts=event.attempt,
            )
        case CopyCreated() | CopyAvailable():
            row["image_id"] = event.image_id
        case CopyFailed():
            row.update(
                image_id=event.image_id,
                error_code=event.error_code,
                error_message=event.error_message,
            )
    return _SQL[kind], row


def read_copies(conn: sqlite3.Connection, run_id: str) -> list[CopyRecord]:
    rows = conn.execute(
        "SELECT account, region, instance_id, destination, state, source_image_id, name, "
        "client_token, image_id, attempts, error_code, error_message FROM copies "
        "WHERE run_id = ? ORDER BY account, region, instance_id, destination",
        (run_id,),
    ).fetchall()
    return [
        CopyRecord(
            CopyKey(r[0], r[1], r[2], r[3]),
            CopyState(r[4]),
            source_image_id=r[5],
            name=r[6],
            client_token=r[7],
            image_id=r[8],
            attempts=r[9],
            error_code=r[10],
            error_message=r[11],
        )
        for r in rows
    ]
