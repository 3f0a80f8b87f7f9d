"""The run journal: one SQLite row per (run, target), written before CreateImage is sent.

The journal is the engine's :class:`~fleetimage.core.ledger.Ledger` and what makes a crash
harmless: before each CreateImage the engine awaits :meth:`Journal.before_send`, which returns
only once the ``requesting`` row is *committed*; only then is the request sent. Resume looks
every ``requesting`` target up by name before sending again.

Threading. One dedicated writer thread owns the only connection; the event loop never touches
SQLite. Calls are queued to it; the thread drains the queue into one transaction per batch
(group commit). A batch holding something awaited (a ``Requested``, a read, ``flush()``) is
committed at once; a batch of fire-and-forget events lingers up to ``writer.LINGER_S`` for company, so
every event is committed within ~0.05 s. The thread settles the callers' asyncio futures after
the commit, so the await returns only when the row is durable. (asyncio, not trio: aiobotocore
ties the engine to asyncio anyway.)

Durability. WAL mode with ``synchronous=NORMAL``: a commit is in the WAL file (the OS page
cache) before it returns, so a SIGKILL of the process at any moment loses nothing committed and
leaves a readable database; only an OS crash or power loss can drop the last transactions. That
is acceptable because the image *name* is the real idempotency key (a re-sent CreateImage hits
``InvalidAMIName.Duplicate`` and is adopted), the journal is the fast path, and FULL would put
an fsync in front of every CreateImage.

Locking. An imaging writer holds ``fcntl.flock`` on ``<db>.lock`` (with its PID written in it) for its
whole life, so a second live ``fleetimage run`` on the same journal fails at once with a
:class:`~fleetimage.core.errors.JournalError` naming the holder; the kernel drops the lock when the
process dies, so a SIGKILL never leaves a stale lock. Holding it also proves that any run still
marked ``running`` is an orphan of a dead process: opening for writing marks those
``interrupted``. A prune is another run kind with its own lock (``<db>.prune.lock``) and
tables, so it can write while an imaging run holds the journal.
``Journal.open(path, read_only=True)`` takes no lock (WAL readers never block the writer), so
``fleetimage runs`` works while a run is live.

The schema and the event → row rules: :mod:`fleetimage.journal.schema`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, cast

import platformdirs

from fleetimage.core.copies import CopyRecord, CopyRequested
from fleetimage.core.errors import JournalError
from fleetimage.core.models import (
    Event,
    ImageSpec,
    JournalState,
    LaneFailure,
    Requested,
    TargetRecord,
)
from fleetimage.journal.copies import read_copies
from fleetimage.journal.schema import (
    MIGRATIONS,
    RUN_STATUSES,
    SCHEMA,
    SCHEMA_VERSION,
    event_row,
    timestamp,
)
from fleetimage.journal.writer import Op, Writer

__all__ = ["RUN_STATUSES", "SCHEMA_VERSION", "Journal", "RunSummary", "default_journal_path"]

_T = TypeVar("_T")


# --- the public face -----------------------------------------------------------------------


@dataclass(frozen=True)
class RunSummary:
    """One run as the journal knows it; ``counts`` has every JournalState (0 if none)."""

    run_id: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    counts: dict[str, int]
    total: int
    lane_failures: int = 0  # lanes that could not run at all (their targets are unknown)


def default_journal_path() -> Path:
    """``$FLEETIMAGE_JOURNAL`` if set, else the user data dir's ``journal.sqlite3``."""
    override = os.environ.get("FLEETIMAGE_JOURNAL")
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_data_dir("fleetimage")) / "journal.sqlite3"


class Journal:
    """The run journal, a :class:`~fleetimage.core.ledger.Ledger`. ``await Journal.open(path)``."""

    def __init__(self, writer: Writer) -> None:
        self._writer = writer
        self._closed = False

    @property
    def path(self) -> Path:
        return self._writer.path

    @classmethod
    async def open(
        cls, path: str | os.PathLike[str], *, read_only: bool = False, kind: str = "run"
    ) -> Journal:
        """Open (creating if needed) the journal; JournalError if corrupt, foreign or locked.

        ``read_only`` takes no writer lock and never writes: for listing runs while a run is live.
        ``kind``: ``"run"`` (imaging) or ``"prune"``; one writer of each kind at a time, so a
        prune can write while an imaging run holds the journal (see ``journal.writer``).
        """
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # expanduser happens in the writer thread's _connect: no file system work on the loop.
        writer = Writer(
            Path(path),
            read_only=read_only,
            ready=ready,
            schema=SCHEMA,
            version=SCHEMA_VERSION,
            migrations=MIGRATIONS,
            kind=kind,
        )
        writer.start()
        try:
            await ready
        except BaseException:
            writer.put(asyncio.get_running_loop().create_future())  # stop it if it got going
            raise
        return cls(writer)

    async def __aenter__(self) -> Journal:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Commit everything queued, close the connection and release the writer lock."""
        if self._closed:
            return
        self._closed = True
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._writer.put(done)
        await done
        self._writer.join()  # already past its last statement: returns at once
        self._raise_if_failed()

    async def flush(self) -> None:
        """Return once every event handed over so far is committed."""
        await self._call(lambda conn: None)

    async def before_send(self, event: Requested | CopyRequested) -> None:
        """The ledger's write-ahead: returns once the ``requesting`` row is committed."""
        row = event_row(event)
        if row is not None:
            sql, params = row
            await self._call(lambda conn: conn.execute(sql, params))

    def record(self, event: Event) -> None:
        """The ledger's other writes: queued, group-committed within ~0.05 s."""
        row = event_row(event)
        if row is not None:
            sql, params = row
            self._check_open()
            self._writer.put(Op(lambda conn: conn.execute(sql, params), None))

    async def __call__(self, event: Event) -> None:
        """Record ``event`` as the engine would (write-ahead for Requested); for tools and tests."""
        if isinstance(event, Requested | CopyRequested):
            await self.before_send(event)
        else:
            self.record(event)

    async def start_run(
        self,
        run_id: str,
        *,
        started_at: datetime,
        config_snapshot: dict[str, Any],
        shard: dict[str, Any] | None = None,
    ) -> None:
        """Record a run as running. On resume (same id) the original start, config and shard
        stay. ``shard``: the shard a sharded run images (``Shard.to_dict()``)."""
        # As it is: the config has no place for credentials, and resume must read it back
        # exactly (redacting secret-shaped values would turn a git SHA tag into <redacted>).
        config_json = json.dumps(config_snapshot, sort_keys=True, default=str)
        shard_json = None if shard is None else json.dumps(shard, sort_keys=True)
        await self._call(
            lambda conn: conn.execute(
                "INSERT INTO runs (run_id, started_at, status, config_json, shard_json) "
                "VALUES (?, ?, 'running', ?, ?) ON CONFLICT (run_id) DO UPDATE SET "
                "status = 'running', finished_at = NULL",
                (run_id, timestamp(started_at), config_json, shard_json),
            )
        )

    async def shard(self, run_id: str) -> dict[str, Any] | None:
        """The shard run ``run_id`` images (as given to :meth:`start_run`), None if all."""

        def read(conn: sqlite3.Connection) -> dict[str, Any] | None:
            found = conn.execute("SELECT shard_json FROM runs WHERE run_id = ?", (run_id,))
            row = found.fetchone()
            if row is None:
                raise _unknown_run(run_id)
            return None if row[0] is None else cast(dict[str, Any], json.loads(row[0]))

        return await self._call(read)

    async def finish_run(self, run_id: str, *, status: str, finished_at: datetime) -> None:
        if status not in RUN_STATUSES:
            raise ValueError(f"run status must be one of {sorted(RUN_STATUSES)}, not {status!r}")

        def write(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "UPDATE runs SET status = ?, finished_at = ? WHERE run_id = ?",
                (status, timestamp(finished_at), run_id),
            )
            if cur.rowcount == 0:
                raise _unknown_run(run_id)

        await self._call(write)

    async def discard_run(self, run_id: str) -> None:
        """Forget a run that never sent anything (declined, or nothing to image).

        Refuses (JournalError) once any target was requested: that run must stay resumable.
        """

        def write(conn: sqlite3.Connection) -> None:
            sent = conn.execute(
                "SELECT COUNT(*) FROM targets WHERE run_id = ? AND (attempts > 0 OR image_id IS NOT NULL)",
                (run_id,),
            ).fetchone()[0]
            if sent:
                raise JournalError(
                    f"run {run_id} has sent CreateImage calls; it cannot be discarded"
                )
            conn.execute("DELETE FROM targets WHERE run_id = ?", (run_id,))
            # a run imaged as discovery found (nothing, in the end) has marked its lanes
            conn.execute("DELETE FROM lanes WHERE run_id = ?", (run_id,))
            conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))

        await self._call(write)

    async def runs(self) -> list[RunSummary]:
        """Every run, newest first, with its targets counted per state."""
        return await self._call(lambda conn: _read_runs(conn, None))

    async def has_run(self, run_id: str) -> bool:
        return bool(await self._call(lambda conn: _read_runs(conn, run_id)))

    async def run(self, run_id: str) -> RunSummary:
        found = await self._call(lambda conn: _read_runs(conn, run_id))
        if not found:
            raise _unknown_run(run_id)
        return found[0]

    async def copies(self, run_id: str) -> list[CopyRecord]:
        """The run's copies (schema version 3), what a resume of them starts from."""
        return await self._call(lambda conn: read_copies(conn, run_id))

    async def targets(self, run_id: str) -> list[TargetRecord]:
        """The run's targets, sorted by (account, region, instance_id)."""
        return await self._call(lambda conn: _read_targets(conn, run_id))

    async def config_snapshot(self, run_id: str) -> dict[str, Any]:
        def read(conn: sqlite3.Connection) -> dict[str, Any]:
            row = conn.execute("SELECT config_json FROM runs WHERE run_id = ?", (run_id,))
            found = row.fetchone()
            if found is None:
                raise _unknown_run(run_id)
            return cast(dict[str, Any], json.loads(found[0]))

        return await self._call(read)

    async def planned_lanes(self, run_id: str) -> set[tuple[str, str]]:
        """The (account, region) lanes of ``run_id`` whose discovery completed."""
        rows = await self._call(
            lambda conn: conn.execute(
                "SELECT account, region FROM lanes WHERE run_id = ? AND state = 'planned'",
                (run_id,),
            ).fetchall()
        )
        return {(a, r) for a, r in rows}

    async def lane_failures(self, run_id: str) -> list[LaneFailure]:
        """The lanes of ``run_id`` that could not run, as last recorded."""

        def read(conn: sqlite3.Connection) -> list[LaneFailure]:
            rows = conn.execute(
                "SELECT account, region, action, error_code, error_message FROM lanes "
                "WHERE run_id = ? AND state = 'failed' ORDER BY account, region",
                (run_id,),
            )
            return [
                LaneFailure(a, r, act or "", code or "", msg or "") for a, r, act, code, msg in rows
            ]

        return await self._call(read)

    # --- plumbing ---

    def _check_open(self) -> None:
        if self._closed:
            raise JournalError(f"journal {self.path} is closed")
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        # A lazily committed event that failed (disk full, I/O error) surfaces on the next call,
        # at the latest before the next CreateImage: the engine must not outrun its journal.
        if self._writer.failure is not None:
            raise self._writer.failure

    async def _call(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        self._check_open()
        fut: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._writer.put(Op(fn, fut))
        return await fut


def _unknown_run(run_id: str) -> JournalError:
    return JournalError(f"unknown run id {run_id}; `fleetimage runs` lists them")


def _read_runs(conn: sqlite3.Connection, run_id: str | None) -> list[RunSummary]:
    where, args = ("WHERE run_id = ?", (run_id,)) if run_id is not None else ("", ())
    rows = conn.execute(
        f"SELECT run_id, started_at, finished_at, status, rowid FROM runs {where}", args
    ).fetchall()
    counts: dict[str, dict[str, int]] = {}
    for rid, state, n in conn.execute(
        f"SELECT run_id, state, COUNT(*) FROM targets {where} GROUP BY run_id, state", args
    ):
        counts.setdefault(rid, {})[state] = n
    failed_lanes = dict(
        conn.execute(
            "SELECT run_id, COUNT(*) FROM lanes WHERE state = 'failed' "
            + ("AND run_id = ? " if run_id is not None else "")
            + "GROUP BY run_id",
            args,
        ).fetchall()
    )
    summaries = []
    for rid, started, finished, status, rowid in rows:
        per_state = {s.value: counts.get(rid, {}).get(s.value, 0) for s in JournalState}
        started_at = datetime.fromisoformat(started)
        summary = RunSummary(
            run_id=rid,
            started_at=started_at,
            finished_at=datetime.fromisoformat(finished) if finished else None,
            status=status,
            counts=per_state,
            total=sum(counts.get(rid, {}).values()),
            lane_failures=failed_lanes.get(rid, 0),
        )
        summaries.append((started_at.timestamp(), rowid, summary))
    summaries.sort(key=lambda t: (t[0], t[1]), reverse=True)
    return [s for _, _, s in summaries]


def _read_targets(conn: sqlite3.Connection, run_id: str) -> list[TargetRecord]:
    if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
        raise _unknown_run(run_id)
    rows = conn.execute(
        "SELECT account, region, instance_id, state, image_name, image_id, attempts, "
        "error_code, error_message, spec_json FROM targets WHERE run_id = ? "
        "ORDER BY account, region, instance_id",
        (run_id,),
    )
    return [
        TargetRecord(
            account=a,
            region=r,
            instance_id=i,
            state=JournalState(s),
            image_name=name,
            image_id=image_id,
            attempts=attempts,
            error_code=code,
            error_message=message,
            spec=ImageSpec.from_dict(json.loads(spec)) if spec else None,
        )
        for a, r, i, s, name, image_id, attempts, code, message, spec in rows
    ]
