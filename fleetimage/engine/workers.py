"""``--workers N``: one run's lanes spread over N worker processes; this process stays the run.

One process is CPU-bound past about 70 busy lanes (signing, HTTP, parsing). With workers,
this process starts them (engine/worker_process.py) before it even knows the lanes, plans,
deals whole lanes to workers by target count (like shards: a lane's buckets, caps and waiter
are never split) and remains the run's only journal writer, report, progress display and
Ctrl-C. Each worker (engine/worker.py) images its lanes and sends back:

- every event, which is recorded and observed here as if it happened here;
- each write-ahead (``Requested``, ``CopyRequested``), which it awaits: the worker sends the
  request only once this process has committed the row, exactly as in one process (a run
  whose ledger records nothing, the NullLedger, sends them as ordinary events, unawaited);
- its errors and targets, so the error budget is the run's, and its own stop requests.

A stop (Ctrl-C, deadline, error budget, journal failure) is sent to every worker. A worker
that dies is started again on its lanes with their journal rows, as a resume would: a
``requesting`` row is looked up by name before anything is sent again, so nothing is
created twice. Without a journal, or after :data:`MAX_RESTARTS`, its lanes fail instead
(their open targets stay for ``fleetimage resume``). Workers run in their own session, so a
terminal's Ctrl-C reaches only this process; a worker whose parent is gone (its pipe closed)
stops at once, and resume finishes the run.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import anyio
import anyio.abc

from fleetimage.config import FleetConfig
from fleetimage.core.clock import now
from fleetimage.core.copies import CopyRecord
from fleetimage.core.errors import FleetImageError
from fleetimage.core.ledger import NullLedger
from fleetimage.core.models import (
    LaneFailed,
    LaneKey,
    RunStopping,
    TargetRecord,
    WorkerRestarted,
)
from fleetimage.core.shards import balance_lanes
from fleetimage.engine.bus import Bus
from fleetimage.engine.channel import Channel
from fleetimage.engine.plan import Plan
from fleetimage.engine.resume import journal_plan
from fleetimage.engine.runstate import RunState
from fleetimage.engine.stop import Stopped
from fleetimage.engine.worker_process import (
    WORKER_MODULE,
    dismiss_worker,
    pipe_ends,
    start_worker,
)
from fleetimage.journal import Journal

__all__ = ["MAX_RESTARTS", "WORKER_MODULE", "WorkerJob", "resolve_workers", "run_in_workers"]

MAX_RESTARTS = 3  # per worker; a worker that keeps dying is not a passing fault
_EXIT_GRACE_S = 30.0  # a worker that said "done" and does not exit is killed after this


def resolve_workers(value: int | str | None) -> int:
    """``--workers``: a count ≥ 1, or ``auto`` (the CPUs this process may run on)."""
    if value is None:
        return 1
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return max(1, len(os.sched_getaffinity(0)))
        if not text.isdigit():
            raise ValueError(f"workers must be a count (e.g. 2) or 'auto', got {value!r}")
        value = int(text)
    if value < 1:
        raise ValueError(f"workers must be at least 1, got {value}")
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerJob:
    """What one worker images: its share of the plan, with the journal rows of its lanes."""

    index: int
    count: int
    config: dict[str, Any]  # the config's snapshot (FleetConfig.from_snapshot)
    lanes: frozenset[LaneKey]
    plan: Plan | None  # None: the worker discovers its lanes
    run_id: str
    started_at: datetime
    endpoint_url: str | None
    dry_run: bool
    wait: bool
    retry_failed: bool
    adopt: bool
    resume: tuple[TargetRecord, ...] = ()
    copies: tuple[CopyRecord, ...] = ()
    # A restart's look-up of its lanes, made by the parent before any lane was discovered
    # (``execute``'s ``found``): the worker images a lane with none of the run's images from
    # its first page instead of looking the lane up again once it is discovered.
    found: Plan | None = None
    # False: the run's ledger records nothing, so a write-ahead has nothing to wait for and
    # goes with the other events, with no round trip before each request.
    journaled: bool = True


async def run_in_workers(
    count: int,
    *,
    config: FleetConfig,
    run_id: str,
    started_at: datetime,
    lanes: Sequence[LaneKey] | Callable[[], Awaitable[Sequence[LaneKey]]],
    plan: Plan | None,
    state: RunState,
    bus: Bus,
    found: Plan | None = None,
    endpoint_url: str | None,
    dry_run: bool,
    wait: bool,
    retry_failed: bool,
    adopt: bool,
    resume: tuple[TargetRecord, ...],
    copies: tuple[CopyRecord, ...],
) -> None:
    """Image ``lanes`` in ``count`` worker processes; events go to ``bus``, stops to ``state``.

    ``lanes``: the run's lanes, or how to find them (OU listings and STS). The worker processes
    are started first, so their start-up (interpreter, imports, AWS models: ~1 s of CPU each)
    runs while this process finds the lanes, rather than after.

    With a ``plan`` (confirmed, saved or a resume's) each worker images its share of it, the
    lanes dealt by target count; without, the lanes are dealt in turn and each worker
    discovers its own, imaging each lane as soon as it is discovered (as one process does).
    ``found``: a restart's look-up (``execute``'s), each worker given its lanes' share."""
    template = WorkerJob(
        0,
        count,
        config.model_dump(mode="json"),
        frozenset(),
        None,
        run_id,
        started_at,
        endpoint_url,
        dry_run,
        wait,
        retry_failed,
        adopt,
        journaled=not isinstance(bus.ledger, NullLedger),
    )
    started: list[anyio.abc.Process] = []
    workers: list[_Worker] = []

    def tell_all(reason: str, stop_waiting: bool) -> None:
        for worker in workers:
            worker.post(("stop", reason, stop_waiting))

    try:
        for _ in range(count):
            started.append(await start_worker())
        keys = list(lanes) if isinstance(lanes, Sequence) else list(await lanes())
        for job in _deal(template, keys, plan, resume, copies, found):
            workers.append(_Worker(job, config, state, bus, workers, started.pop()))
        # Those no worker took (fewer lanes than workers): with their pipe closed before any
        # job they exit at once, having sent nothing.
        spare, started = started, []
        state.on_stop = tell_all
        async with anyio.create_task_group() as tg:
            for process in spare:
                tg.start_soon(dismiss_worker, process)
            for worker in workers:
                tg.start_soon(worker.supervise)
    finally:
        state.on_stop = None
        # The same if finding or dealing the lanes failed, or if the run was cancelled before
        # a worker took over its process.
        unclaimed = started + [w.process for w in workers if w.process is not None]
        with anyio.CancelScope(shield=True):
            for process in unclaimed:
                await dismiss_worker(process)


def _deal(
    template: WorkerJob,
    lanes: Sequence[LaneKey],
    plan: Plan | None,
    resume: tuple[TargetRecord, ...],
    copies: tuple[CopyRecord, ...],
    found: Plan | None = None,
) -> list[WorkerJob]:
    """Each worker's job: its lanes, with their share of the plan and of the journal's rows."""
    count = template.count
    if plan is not None:
        owner = balance_lanes({k: max(1, len(lp.specs)) for k, lp in plan.lanes.items()}, count)
    else:  # sizes unknown before discovery: by count, each worker a mix of regions
        order = sorted(lanes, key=lambda k: (k.account, k.region))
        owner = {key: n % count for n, key in enumerate(order)}
    jobs: list[WorkerJob] = []
    for index in range(count):
        mine = frozenset(k for k in lanes if owner[k] == index)
        if not mine:
            continue
        share = None
        if plan is not None:
            share = Plan(
                template.run_id,
                template.started_at,
                {k: plan.lanes[k] for k in mine},
                plan.units if index == 0 else [],
            )
        jobs.append(
            dataclasses.replace(
                template,
                index=index,
                lanes=mine,
                plan=share,
                resume=tuple(r for r in resume if LaneKey(r.account, r.region) in mine),
                copies=tuple(
                    c for c in copies if LaneKey(c.key.account, c.key.source_region) in mine
                ),
                found=None
                if found is None
                else Plan(
                    template.run_id,
                    template.started_at,
                    {k: lp for k, lp in found.lanes.items() if k in mine},
                ),
            )
        )
    return jobs


class _Worker:
    """One worker process's life: started, fed, listened to, and started again if it dies."""

    def __init__(
        self,
        job: WorkerJob,
        config: FleetConfig,
        state: RunState,
        bus: Bus,
        all_: list[_Worker],
        process: anyio.abc.Process | None = None,
    ) -> None:
        self.job, self.config, self.state, self.bus, self.all = job, config, state, bus, all_
        self.process = process  # started ahead, for its first job; a restart starts its own
        self.channel: Channel | None = None
        self.targets = 0  # what this worker added to the run's total (taken back on restart)
        self.discovered = False

    def post(self, message: Any) -> None:
        if self.channel is not None:
            self.channel.post(message)

    async def supervise(self) -> None:
        job = self.job
        for restart in range(MAX_RESTARTS + 1):
            returncode = await self._run(job)
            if returncode is None:
                return  # it finished its lanes
            journal = self.bus.ledger if isinstance(self.bus.ledger, Journal) else None
            what = f"worker {job.index} exited with code {returncode}"
            if journal is None or restart == MAX_RESTARTS or self.state.stopping():
                await self._lanes_failed(what)
                return
            job = await self._restarted(job, journal)
            await self.bus.emit(
                WorkerRestarted(
                    job.run_id,
                    "",
                    "",
                    None,
                    now(),
                    job.index,
                    returncode,
                    len(job.lanes),
                    restart + 1,
                    MAX_RESTARTS,
                )
            )

    async def _restarted(self, job: WorkerJob, journal: Journal) -> WorkerJob:
        """The job again as a resume of its lanes: what the journal knows of them, and the
        lanes whose discovery completed planned from it (the others are discovered again)."""
        await journal.flush()  # every event it sent before dying is in the journal
        mine = job.lanes
        rows = [
            r for r in await journal.targets(job.run_id) if LaneKey(r.account, r.region) in mine
        ]
        copies = [
            c
            for c in await journal.copies(job.run_id)
            if LaneKey(c.key.account, c.key.source_region) in mine
        ]
        planned = [
            (a, r) for a, r in await journal.planned_lanes(job.run_id) if LaneKey(a, r) in mine
        ]
        plan = journal_plan(job.run_id, job.started_at, rows, planned, self.config)
        self.state.total -= self.targets  # the new worker counts its lanes again
        self.targets, self.discovered = 0, False
        # Its look-up is stale once the worker may have created images: looked up again.
        return dataclasses.replace(
            job, plan=plan, resume=tuple(rows), copies=tuple(copies), found=None
        )

    async def _lanes_failed(self, what: str) -> None:
        message = f"{what}; its open targets are left for `fleetimage resume`"
        for key in sorted(self.job.lanes, key=lambda k: (k.account, k.region)):
            await self.bus.emit(
                LaneFailed(
                    self.job.run_id,
                    key.account,
                    key.region,
                    None,
                    now(),
                    "Worker",
                    "WorkerExited",
                    message,
                )
            )
        self._discovered()

    async def _run(self, job: WorkerJob) -> int | None:
        """Run one worker process to its end: None when it finished, else its exit code."""
        finished = False
        process, self.process = self.process or await start_worker(), None
        async with process:
            channel = Channel(*pipe_ends(process))
            self.channel = channel
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(channel.pump)
                    channel.post(job)
                    if self.state.stop_reason is not None:
                        channel.post(("stop", self.state.stop_reason, True))
                    async for message in channel.messages():
                        if message[0] == "done":
                            finished = True
                        else:
                            await self._handle(message, tg)
                    tg.cancel_scope.cancel()
            finally:
                self.channel = None
            with anyio.move_on_after(_EXIT_GRACE_S if finished else 5.0) as waited:
                returncode = await process.wait()
            if waited.cancel_called:
                process.kill()
                returncode = await process.wait()
        return None if finished else returncode

    async def _handle(self, message: tuple[Any, ...], tg: anyio.abc.TaskGroup) -> None:
        kind = message[0]
        if kind == "event":
            if not isinstance(message[1], RunStopping):  # the run announces its own stop
                await self.bus.emit(message[1])
        elif kind == "send":
            tg.start_soon(self._write_ahead, message[1], message[2])
        elif kind == "count":
            _, errors, targets, discovered = message
            if targets:
                self.targets += targets
                self.state.total += targets
            if discovered:
                self._discovered()
            if errors:
                self.state.record_error(errors)
        elif kind == "stop":
            self.state.request_stop(message[1], stop_waiting=message[2])
        elif kind == "error":
            raise message[1]
        else:
            raise FleetImageError(f"worker {self.job.index} sent an unknown message {kind!r}")

    async def _write_ahead(self, seq: int, event: Any) -> None:
        try:
            await self.bus.before_send(event)
            self.post(("ack", seq, None))
        except Stopped as exc:  # the journal failed: nothing may be sent
            self.post(("ack", seq, exc.reason))

    def _discovered(self) -> None:
        self.discovered = True
        if all(w.discovered for w in self.all):
            self.state.discovery_done()
