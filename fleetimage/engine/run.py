"""The engine: lanes side by side, targets inside a lane as tokens and caps allow.

Each lane starts imaging as soon as its own discovery is done: a slow region or a large
DescribeInstances answer elsewhere never keeps a lane's token bucket idle. One target's
failure never cancels the fleet. Three things stop *new* CreateImage calls (never the ones
in flight): the error budget, the deadline and a graceful stop request (Ctrl-C). What never
started is reported ``not_started`` with the reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Sequence
from datetime import datetime

import anyio
from aiobotocore.session import AioSession

from fleetimage.aws import clients
from fleetimage.config import ErrorBudget, FleetConfig
from fleetimage.core.clock import now
from fleetimage.core.copies import CopyRecord
from fleetimage.core.ledger import Ledger
from fleetimage.core.models import (
    Created,
    ImageSpec,
    JournalState,
    LaneKey,
    RunStopping,
    TargetRecord,
)
from fleetimage.core.naming import new_run_id
from fleetimage.core.shards import Shard
from fleetimage.engine.announce import announce_lane, announce_specs
from fleetimage.engine.bus import Bus, Subscriber, SubscriberError
from fleetimage.engine.copy_lanes import CopyPhase
from fleetimage.engine.lanerun import LaneRun
from fleetimage.engine.plan import LanePlan, Plan, lane_keys, open_lanes
from fleetimage.engine.restart import adopted_records
from fleetimage.engine.resume import complete_from_journal
from fleetimage.engine.runstate import RunState, StopReason
from fleetimage.engine.workers import run_in_workers
from fleetimage.output.collector import ReportCollector
from fleetimage.output.copy_report import CopyCollector
from fleetimage.output.report import RunReport

__all__ = ["StopReason", "Subscriber", "SubscriberError", "execute"]


async def execute(
    config: FleetConfig,
    *,
    ledger: Ledger | None = None,
    endpoint_url: str | None = None,
    on_event: Subscriber | Sequence[Subscriber] | None = None,
    dry_run: bool = False,
    wait: bool | None = None,
    deadline: datetime | None = None,
    max_errors: ErrorBudget | None = None,
    run_id: str | None = None,
    started_at: datetime | None = None,
    resume: Sequence[TargetRecord] = (),
    stop: anyio.Event | None = None,
    session: AioSession | None = None,
    plan: Plan | None = None,
    retry_failed: bool = False,
    shard: Shard | None = None,
    adopt: bool = False,
    found: Plan | None = None,
    copies: Sequence[CopyRecord] = (),
    workers: int = 1,
    state: RunState | None = None,
) -> RunReport:
    """Image every target of ``config``; returns one result per target.

    ``ledger``: where the run is recorded (write-ahead before each CreateImage); the public
    :func:`~fleetimage.engine.api.image_fleet` passes the journal.
    ``stop``: set it to stop gracefully (no new images; in-flight calls settle; pending
    images stay pending for ``resume``). ``resume``: the journal's records of an earlier
    run with the same ``run_id`` and ``started_at``: settled targets are kept, ``requesting``
    ones are looked up by name before anything is sent, pending ones are waited for.
    ``plan``: a :func:`~fleetimage.engine.plan.plan_fleet` result to image exactly (no second
    discovery); its run id and start time are the run's. ``retry_failed``: resumed targets
    whose image failed are imaged again under a new name (see :mod:`.recreate`).
    ``shard``: image only its lanes (the report records it). ``adopt``: the run starts again
    without its journal; images its earlier start created (found by planning, or here for a
    lane planned again) are waited for, never created again (see :mod:`.adopt`). ``found``:
    ``adopt``'s look-up made first (``plan_fleet(discover=False)``), so lanes without images of
    the run are imaged from their first discovery page (here or in the workers).
    ``copies``: the journal's copy records of this run (resume), see :mod:`.copy_lanes`.
    ``workers``: image the lanes in that many processes, this one staying the run (planned
    here first, see :mod:`.workers`). ``state``: a worker's, linked to its parent.
    """
    if plan is not None:  # its names were rendered with its run id and start time
        run_id, started_at = plan.run_id, plan.started_at
    started_at = started_at or now()
    run_id = run_id or new_run_id(started_at)
    wait = config.wait.enabled if wait is None else wait
    subscribers: list[Subscriber] = []
    if on_event is not None:
        subscribers.extend(on_event if isinstance(on_event, Sequence) else [on_event])
    collector = ReportCollector(
        run_id, started_at, dry_run=dry_run, shard=None if shard is None else shard.label
    )
    prior = {(r.account, r.region, r.instance_id): r for r in resume}
    collector.seed(prior.values())
    copy_collector = CopyCollector(run_id)
    copy_collector.seed(copies)
    state = state or RunState(max_errors or config.max_errors, total=0)
    bus = Bus(
        [collector, copy_collector, *subscribers],
        ledger,
        # Created images are still waited for (their states kept in memory, in the report).
        on_ledger_failure=lambda _: state.request_stop(StopReason.JOURNAL, stop_waiting=False),
    )

    async with contextlib.AsyncExitStack() as stack, anyio.create_task_group() as tg:
        watchers = anyio.CancelScope()
        tg.start_soon(_watch_stop, watchers, state, stop, deadline)
        announcer = anyio.CancelScope()

        async def announce_stop() -> None:
            # Observers (notifications) hear why new work stopped, once, as it happens.
            with announcer:
                await state.stopper.requested.wait()
            if not announcer.cancelled_caught and state.stop_reason is not None:
                assert run_id is not None
                await bus.emit(
                    RunStopping(
                        run_id, "", "", None, now(), state.stop_reason, state.errors, state.total
                    )
                )

        tg.start_soon(announce_stop)
        session = session or clients.new_session()
        if workers > 1:
            # Found only once the workers are starting (their start-up overlaps the STS calls),
            # unless planning or a restart's look-up has found them already.
            known_lanes = plan if plan is not None else found
            keys = (
                list(known_lanes.lanes)
                if known_lanes is not None
                else functools.partial(
                    lane_keys,
                    config,
                    session=session,
                    endpoint_url=endpoint_url,
                    owns=None if shard is None else shard.owns,
                )
            )
            await run_in_workers(
                workers,
                config=config,
                run_id=run_id,
                started_at=started_at,
                lanes=keys,
                plan=plan,
                state=state,
                bus=bus,
                found=found,
                endpoint_url=endpoint_url,
                dry_run=dry_run,
                wait=wait,
                retry_failed=retry_failed,
                adopt=adopt and not dry_run,
                resume=tuple(resume),
                copies=tuple(copies),
            )
            watchers.cancel()
            announcer.cancel()
            return _report(collector, copy_collector, state, bus)
        phase: CopyPhase | None = None
        # Copies start from available images: with --no-wait there are none yet (resume
        # copies them), and a dry run sends nothing.
        if config.copy_.enabled and wait and not dry_run:
            phase = CopyPhase(
                config,
                state,
                bus,
                run_id=run_id,
                started_at=started_at,
                prior={r.key: r for r in copies},
            )
            state.on_available = phase.offer  # each image as it becomes available

        # A lane the journal knows nothing of is imaged from its first discovery page, while
        # its next pages are asked for; one it knows (resume) is completed from the journal
        # once its discovery is.
        known = {(account, region) for account, region, _ in prior}
        streams: dict[LaneKey, LaneRun] = {}

        def lane_run(lp: LanePlan, *, streamed: bool = False) -> LaneRun:
            assert run_id is not None
            return LaneRun(
                lp,
                config,
                state,
                bus,
                run_id=run_id,
                dry_run=dry_run,
                wait=wait,
                prior=prior,
                retry_failed=retry_failed,
                streamed=streamed,
            )

        async def lane_page(lp: LanePlan, specs: list[ImageSpec]) -> bool:
            assert run_id is not None
            if lp.lane is None or (lp.key.account, lp.key.region) in known:
                return False
            run = streams.get(lp.key)
            if run is None:
                run = streams[lp.key] = lane_run(lp, streamed=True)
                if phase is not None:  # copies into this region go through this lane
                    phase.share_lane(lp.lane)
                lanes.start_soon(run.run)
            await announce_specs(bus, run_id, specs)
            state.add_targets(len(specs))
            run.extend(specs)
            return True

        async def lane_ready(lp: LanePlan) -> None:
            assert run_id is not None and started_at is not None
            streamed = streams.pop(lp.key, None)
            if streamed is not None:
                try:
                    await announce_lane(lp, bus, run_id, prior, streamed=True)
                finally:
                    streamed.close()
                return
            adopted = adopted_records(lp) if lp.error is None else {}
            prior.update(adopted)
            complete_from_journal(lp, prior, config, run_id, started_at)
            if phase is not None:
                if lp.lane is not None:  # copies into this region go through this lane
                    phase.share_lane(lp.lane)
                for spec in lp.specs:  # resume: what the journal knows available is copied
                    rec = prior.get(
                        (spec.target.account, spec.target.region, spec.target.instance_id)
                    )
                    if rec is not None and rec.state is JournalState.AVAILABLE and rec.image_id:
                        phase.offer(spec, rec.image_id)
            await announce_lane(lp, bus, run_id, prior)
            for rec in adopted.values():  # recorded as created before any wait or send
                assert rec.image_id is not None
                await bus.emit(
                    Created(
                        run_id,
                        rec.account,
                        rec.region,
                        rec.instance_id,
                        now(),
                        rec.image_id,
                        rec.image_name or "",
                        adopted=True,
                    )
                )
            state.add_targets(len(lp.specs))
            if lp.lane is not None and lp.specs:
                lanes.start_soon(lane_run(lp).run)

        async with anyio.create_task_group() as copying:
            if phase is not None:
                copying.start_soon(
                    functools.partial(
                        phase.run, session=session, endpoint_url=endpoint_url, stack=stack
                    )
                )
            try:
                async with anyio.create_task_group() as lanes:
                    await open_lanes(
                        config,
                        session=session,
                        endpoint_url=endpoint_url,
                        run_id=run_id,
                        started_at=started_at,
                        bus=bus,
                        stopper=state.stopper,
                        stack=stack,
                        planned=plan,
                        on_lane_ready=lane_ready,
                        on_lane_page=lane_page,
                        owns=None if shard is None else shard.owns,
                        adopt=adopt and not dry_run,
                        found=found,
                    )
                    state.discovery_done()
            finally:
                if phase is not None:
                    phase.close()  # imaging is over: the copies of what it made finish
        watchers.cancel()
        announcer.cancel()
    return _report(collector, copy_collector, state, bus)


def _report(
    collector: ReportCollector, copy_collector: CopyCollector, state: RunState, bus: Bus
) -> RunReport:
    report = collector.report(
        finished_at=now(),
        interrupted=state.interrupted,
        journal_error=None if bus.ledger_error is None else str(bus.ledger_error),
    )
    return dataclasses.replace(report, copies=copy_collector.results())


async def _watch_stop(
    scope: anyio.CancelScope, state: RunState, stop: anyio.Event | None, deadline: datetime | None
) -> None:
    async def on_stop() -> None:
        assert stop is not None
        await stop.wait()
        state.interrupted = True
        state.request_stop(StopReason.INTERRUPTED, stop_waiting=True)

    async def on_deadline() -> None:
        assert deadline is not None
        await anyio.sleep(max(0.0, (deadline - now()).total_seconds()))
        state.request_stop(StopReason.DEADLINE, stop_waiting=True)

    with scope:
        async with anyio.create_task_group() as tg:
            if stop is not None:
                tg.start_soon(on_stop)
            if deadline is not None:
                tg.start_soon(on_deadline)
