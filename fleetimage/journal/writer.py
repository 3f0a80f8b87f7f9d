"""The journal's writer thread: owns the only SQLite connection, group-commits queued ops.

See :mod:`fleetimage.journal` for why (durability, locking, group commit); this module is
the mechanism: a thread, a queue of ops with optional asyncio futures settled after COMMIT,
and an advisory lock file per run kind that makes a second live writer of that kind fail fast.

Run kinds. An imaging run holds ``<db>.lock``, a prune ``<db>.prune.lock``: one of each may
write to the same journal at once (their tables are disjoint; SQLite serialises their short
transactions, and a writer waits up to :data:`BUSY_TIMEOUT_MS` for the other's commit).
Creating or upgrading the schema happens under a third lock, ``<db>.setup.lock``, held only
while the connection is set up, so two processes never create or migrate it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from fleetimage.core.errors import JournalError

__all__ = ["BUSY_TIMEOUT_MS", "KINDS", "LINGER_S", "MAX_BATCH", "Op", "Writer", "journal_error"]

LINGER_S = 0.05  # how long an un-awaited batch waits for company before committing
MAX_BATCH = 5000
# Another kind's writer (a prune next to an imaging run) holds the database for one group
# commit, milliseconds; waiting is right. Bounded: a stuck foreign process is reported.
BUSY_TIMEOUT_MS = 15000
SETUP_WAIT_S = 30.0  # for another process creating or upgrading the schema
# The lock file (suffix) of each run kind, and the runs table it marks interrupted on open.
KINDS = {"run": (".lock", "runs"), "prune": (".prune.lock", "prune_runs")}


@dataclass(slots=True)
class Op:
    fn: Callable[[sqlite3.Connection], object]
    fut: asyncio.Future[Any] | None  # None: fire and forget (committed by the next batch)


def _settle(fut: asyncio.Future[Any], result: object, exc: BaseException | None) -> None:
    if fut.done():  # the caller was cancelled; nobody is listening
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


def _deliver(fut: asyncio.Future[Any], result: object, exc: BaseException | None) -> None:
    with contextlib.suppress(RuntimeError):  # loop already closed: nobody is listening
        fut.get_loop().call_soon_threadsafe(_settle, fut, result, exc)


class _FileLock:
    """An exclusive advisory lock on ``<db><suffix>`` holding the owner's PID (POSIX only)."""

    def __init__(self, db_path: Path, suffix: str = ".lock", what: str = "a run") -> None:
        self._db_path = db_path
        self._path = db_path.with_name(db_path.name + suffix)
        self._what = what
        self._fd: int | None = None

    def acquire(self, wait_s: float = 0.0) -> None:
        """Take the lock; if another process holds it, wait up to ``wait_s``, then fail."""
        if sys.platform == "win32":  # no flock: SQLite's own BEGIN IMMEDIATE lock still applies
            return
        import fcntl

        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:  # in the writer thread, never on the loop
                    time.sleep(0.05)
                    continue
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            who = f"pid {holder}" if holder.isdigit() else "pid unknown"
            raise JournalError(
                f"journal {self._db_path} is in use by another fleetimage process "
                f"({self._what}, {who}); "
                "wait for it to finish or pass another --journal path"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


class Writer(threading.Thread):
    """Owns the connection; runs queued ops in group-committed transactions."""

    def __init__(
        self,
        path: Path,
        *,
        read_only: bool,
        ready: asyncio.Future[None],
        schema: str,
        version: int,
        migrations: Mapping[int, str] = MappingProxyType({}),
        kind: str = "run",
    ) -> None:
        super().__init__(name=f"fleetimage-journal:{path.name}", daemon=True)
        self.path = path
        self.schema = schema  # SQL that creates the tables and records `version` in meta
        self.version = version
        self.migrations = migrations  # {N: SQL that upgrades version N to N + 1}
        self.read_only = read_only
        self.kind = kind  # "run" or "prune": which lock it holds, which runs it owns
        self.failure: BaseException | None = None  # sticky: a lost commit poisons the journal
        self._ready = ready
        self._queue: queue.SimpleQueue[Op | asyncio.Future[None]] = queue.SimpleQueue()
        self._lock = _FileLock(path)

    def put(self, item: Op | asyncio.Future[None]) -> None:
        """Queue an op; a bare future is the stop request, settled once the thread is done."""
        self._queue.put(item)

    def run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            self._lock.release()
            _deliver(self._ready, None, exc)
            return
        _deliver(self._ready, None, None)
        stop: asyncio.Future[None] | None = None
        try:
            while stop is None:
                batch, stop = self._next_batch()
                if batch:
                    self._run_batch(conn, batch)
        except BaseException as exc:  # a bug, not an SQLite error: never leave callers hanging
            self.failure = self.failure or JournalError(f"journal {self.path}: writer died: {exc}")
            raise
        finally:
            conn.close()
            self._lock.release()
            self._release_waiters(stop)

    def _release_waiters(self, stop: asyncio.Future[None] | None) -> None:
        gone = self.failure or JournalError(f"journal {self.path} is closed")
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, Op):
                if item.fut is not None:
                    _deliver(item.fut, None, gone)
            else:
                _deliver(item, None, None)
        if stop is not None:
            _deliver(stop, None, None)

    def _next_batch(self) -> tuple[list[Op], asyncio.Future[None] | None]:
        first = self._queue.get()
        if not isinstance(first, Op):
            return [], first
        batch = [first]
        urgent = first.fut is not None
        deadline = time.monotonic() + LINGER_S
        while len(batch) < MAX_BATCH:
            try:
                if urgent:  # someone waits: take what is queued now, no lingering
                    item = self._queue.get_nowait()
                else:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if not isinstance(item, Op):
                return batch, item
            batch.append(item)
            urgent = urgent or item.fut is not None
        return batch, None

    def _run_batch(self, conn: sqlite3.Connection, batch: list[Op]) -> None:
        outcomes: list[tuple[object, BaseException | None]] = []
        try:
            conn.execute("BEGIN" if self.read_only else "BEGIN IMMEDIATE")
            for op in batch:
                try:
                    outcomes.append((op.fn(conn), None))
                except Exception as exc:  # one bad op must not lose the batch
                    err = journal_error(self.path, exc)
                    if op.fut is None and self.failure is None:
                        self.failure = err
                    outcomes.append((None, err))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            err = journal_error(self.path, exc)
            self.failure = self.failure or err
            outcomes = [(None, err)] * len(batch)
        for op, (result, error) in zip(batch, outcomes, strict=True):
            if op.fut is not None:
                _deliver(op.fut, result, error)

    def _connect(self) -> sqlite3.Connection:
        self.path = self.path.expanduser()
        suffix, owned = KINDS[self.kind]
        self._lock = _FileLock(self.path, suffix, f"a {self.kind}")
        setup = _FileLock(self.path, ".setup.lock", "setting it up")
        if self.read_only:
            if not self.path.exists():
                raise JournalError(f"no journal at {self.path} yet: nothing has run with it")
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._lock.acquire()
                setup.acquire(SETUP_WAIT_S)
            except OSError as exc:
                self._lock.release()
                raise JournalError(
                    f"cannot use {self.path} as a journal ({exc.strerror or exc}); "
                    "pass another --journal path"
                ) from exc
            except JournalError:
                self._lock.release()
                raise
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(self.path, isolation_level=None)  # we issue BEGIN/COMMIT
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            # Check the schema *before* any PRAGMA that writes (journal_mode=WAL rewrites the
            # file header): a file that is not ours must be left exactly as it was.
            if tables or self.read_only:
                found = self._check_schema(conn, tables)
                if found < self.version:
                    conn = self._upgrade(conn, found)
            if not self.read_only:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")  # see fleetimage.journal
            if not tables and not self.read_only:
                conn.executescript(f"BEGIN IMMEDIATE; {self.schema} COMMIT;")
            if self.read_only:
                conn.execute("PRAGMA query_only = ON")
            else:
                # We hold this kind's writer lock, so no live process owns a run of this kind
                # marked running (the other kind's runs are not ours to judge).
                conn.execute(f"UPDATE {owned} SET status = 'interrupted' WHERE status = 'running'")
        except BaseException as exc:
            if conn is not None:
                conn.close()
            raise journal_error(self.path, exc) from exc
        finally:
            setup.release()
        return conn

    def _upgrade(self, conn: sqlite3.Connection, found: int) -> sqlite3.Connection:
        """Bring an older journal to this schema: in place after a backup copy, or, read-only,
        in a private in-memory copy (the file is not touched)."""
        if self.read_only:
            target = sqlite3.connect(":memory:", isolation_level=None)
            conn.backup(target)
            conn.close()
        else:
            backup = self.path.with_name(f"{self.path.name}.v{found}.bak")
            with contextlib.closing(sqlite3.connect(backup)) as copy:
                conn.backup(copy)
            target = conn
        script = "".join(self.migrations[v] for v in range(found, self.version))
        target.executescript(
            f"BEGIN IMMEDIATE; {script} UPDATE meta SET value = '{self.version}' "
            "WHERE key = 'schema_version'; COMMIT;"
        )
        return target

    def _check_schema(self, conn: sqlite3.Connection, tables: set[str]) -> int:
        """The journal's schema version, if this code reads it (now or after upgrading)."""
        if "meta" not in tables:
            raise JournalError(
                f"{self.path} is an SQLite database but not a fleetimage journal; "
                "pass another --journal path"
            )
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row and str(row[0]).isdigit() else None
        if version == self.version or (
            version is not None
            and version < self.version
            and all(v in self.migrations for v in range(version, self.version))
        ):
            return version
        fix = (
            "upgrade fleetimage to read it"
            if version is not None and version > self.version
            else "move it aside to start a new journal"
        )
        raise JournalError(
            f"journal {self.path} has schema version {version}, but this fleetimage reads "
            f"version {self.version}; {fix}, or pass another --journal path"
        )


def journal_error(path: Path, exc: BaseException) -> BaseException:
    if isinstance(exc, JournalError) or not isinstance(exc, sqlite3.Error):
        return exc
    text = str(exc)
    if "not a database" in text or "malformed" in text:
        return JournalError(
            f"{path} is not a readable fleetimage journal ({text}); "
            "move it aside or pass another --journal path"
        )
    if "locked" in text or "busy" in text:
        return JournalError(
            f"journal {path} is locked by another process ({text}); "
            "wait for it to finish or pass another --journal path"
        )
    return JournalError(f"journal {path}: {text}")
