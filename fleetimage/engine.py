"""The engine: lanes side by side, targets inside a lane as tokens and caps allow.

One target's failure never cancels the fleet. Three things stop *new* CreateImage calls
(never the ones in flight): the error budget, the deadline and a graceful stop request
(Ctrl-C). What never started is reported ``not_started`` with the reason.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import anyio
from aiobotocore.session import AioSession

from fleetimage import clients
from fleetimage.config import ErrorBudget, FleetConfig
from fleetimage.create import check_dry_run, create_image
from fleetimage.errors import AwsError, FleetImageError
from fleetimage.lane import now
from fleetimage.models import (
    Available,
    Created,
    Discovered,
    DryRunChecked,
    Event,
    Failed,
    ImageSpec,
    JournalState,
    Outcome,
    Skipped,
    TargetRecord,
)
from fleetimage.naming import new_run_id
from fleetimage.plan import LANE_WIDE, LanePlan, Plan, build_spec, open_lanes
from fleetimage.report import ReportCollector, RunReport
from fleetimage.waiter import ImageState, ImageWaiter

__all__ = ["StopReason", "Subscriber", "SubscriberError", "image_fleet"]

Subscriber = Callable[[Event], Awaitable[None] | None]


class SubscriberError(FleetImageError):
    """A subscriber (e.g. the journal) failed: the run stops, since it can no longer record."""


class StopReason:
    INTERRUPTED = "Interrupted"
    DEADLINE = "DeadlineReached"
    ERROR_BUDGET = "ErrorBudgetExceeded"


class _Bus:
    def __init__(self, subscribers: Sequence[Subscriber]) -> None:
        self.subscribers = list(subscribers)

    async def emit(self, event: Event) -> None:
        # Awaited in order: the journal must have committed `requesting` before the send.
        for subscriber in self.subscribers:
            try:
                result = subscriber(event)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                raise SubscriberError(f"event subscriber {subscriber!r} failed: {exc}") from exc


@dataclass(slots=True)
class _RunState:
    budget: ErrorBudget
    total: int
    errors: int = 0
    stop_reason: str | None = None
    feeders: list[anyio.CancelScope] = field(default_factory=list)
    waiters: list[ImageWaiter] = field(default_factory=list)

    def request_stop(self, reason: str, *, stop_waiting: bool) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        for scope in self.feeders:
            scope.cancel()
        if stop_waiting:
            for waiter in self.waiters:
                waiter.release_all(ImageState("released", reason))

    def stopping(self) -> bool:
        return self.stop_reason is not None

    def record_error(self) -> None:
        self.errors += 1
        if self.budget.exceeded(self.errors, self.total):
            self.request_stop(StopReason.ERROR_BUDGET, stop_waiting=False)


def _event_fields(spec: ImageSpec) -> tuple[str, str, str]:
    t = spec.target
    return t.account, t.region, t.instance_id


class _LaneRun:
    """Images one lane's targets: a feeder under the caps, a task per target, one waiter."""

    def __init__(
        self,
        lp: LanePlan,
        config: FleetConfig,
        state: _RunState,
        bus: _Bus,
        *,
        run_id: str,
        dry_run: bool,
        wait: bool,
        prior: dict[tuple[str, str, str], TargetRecord],
    ) -> None:
        assert lp.lane is not None
        self.lp, self.lane, self.config, self.state, self.bus = lp, lp.lane, config, state, bus
        self.run_id, self.dry_run, self.wait, self.prior = run_id, dry_run, wait, prior
        self.in_flight = anyio.Semaphore(config.concurrency.max_in_flight_per_region)
        self.pending = anyio.Semaphore(config.concurrency.max_pending_images_per_region)
        self.waiter = ImageWaiter(
            self.lane,
            poll_interval_s=config.wait.poll_interval_s,
            timeout_s=config.wait.timeout_s,
            not_found_grace_s=config.wait.not_found_grace_s,
        )
        state.waiters.append(self.waiter)

    async def run(self) -> None:
        async with anyio.create_task_group() as lane_tg:
            if self.wait and not self.dry_run:
                lane_tg.start_soon(self.waiter.run)
            async with anyio.create_task_group() as work:
                await self._feed(work)
            lane_tg.cancel_scope.cancel()  # the waiter has nothing left to wait for

    async def _feed(self, work: anyio.abc.TaskGroup) -> None:
        specs = self.lp.specs
        started = 0
        with anyio.CancelScope() as scope:
            self.state.feeders.append(scope)
            for spec in specs:
                if self.state.stopping():
                    break
                record = self.prior.get(_event_fields(spec))
                if record is not None and record.state in _SETTLED:
                    started += 1
                    continue
                await self.pending.acquire()
                try:
                    await self.in_flight.acquire()
                except BaseException:
                    self.pending.release()
                    raise
                if self.state.stopping():  # the stop came while we waited for a cap
                    self.in_flight.release()
                    self.pending.release()
                    break
                work.start_soon(self._target, spec, record)
                started += 1
        reason = self.state.stop_reason or StopReason.INTERRUPTED
        for spec in specs[started:]:
            record = self.prior.get(_event_fields(spec))
            if record is not None and record.state in _SETTLED:
                continue
            await self._fail(spec, Outcome.NOT_STARTED, reason, _NOT_STARTED[reason], count=False)

    async def _target(self, spec: ImageSpec, record: TargetRecord | None) -> None:
        try:
            if self.dry_run:
                try:
                    ok, code, message = await check_dry_run(self.lane, spec)
                finally:
                    self.in_flight.release()
                await self.bus.emit(
                    DryRunChecked(self.run_id, *_event_fields(spec), now(), ok, code, message)
                )
                return
            image_id = record.image_id if record is not None else None
            if image_id is None:
                try:
                    created = await create_image(
                        self.lane,
                        spec,
                        lookup_first=record is not None and record.state is JournalState.REQUESTING,
                        grace_s=self.config.wait.not_found_grace_s,
                    )
                except AwsError as error:
                    await self._fail(spec, Outcome.FAILED, error.code, error.message)
                    return
                finally:
                    self.in_flight.release()
                image_id = created.image_id
                await self.bus.emit(
                    Created(
                        self.run_id,
                        *_event_fields(spec),
                        now(),
                        image_id,
                        spec.name,
                        created.adopted,
                    )
                )
            else:
                self.in_flight.release()  # resume: the image exists, only the wait is left
            if self.wait:
                await self._settle(spec, image_id, await self.waiter.wait(image_id))
        except SubscriberError:
            raise
        except Exception as exc:  # a bug must cost one target, not the fleet
            await self._fail(spec, Outcome.FAILED, "InternalError", f"{type(exc).__name__}: {exc}")
        finally:
            self.pending.release()

    async def _settle(self, spec: ImageSpec, image_id: str, result: ImageState) -> None:
        if result.available:
            await self.bus.emit(Available(self.run_id, *_event_fields(spec), now(), image_id))
        elif result.state == "released":
            if result.code == StopReason.DEADLINE:
                await self._fail(
                    spec,
                    Outcome.TIMED_OUT,
                    StopReason.DEADLINE,
                    "deadline reached while the image was pending; it may still become available",
                    image_id=image_id,
                    count=False,
                )
            # Interrupted: the image stays pending in the journal; resume waits for it.
        elif result.state == "timed_out":
            await self._fail(
                spec, Outcome.TIMED_OUT, result.code, result.message, image_id=image_id
            )
        else:
            code = result.code or f"Image{result.state.capitalize()}"
            message = result.message or f"image entered state {result.state}"
            await self._fail(spec, Outcome.FAILED, code, message, image_id=image_id)

    async def _fail(
        self,
        spec: ImageSpec,
        outcome: Outcome,
        code: str,
        message: str,
        *,
        image_id: str | None = None,
        count: bool = True,
    ) -> None:
        await self.bus.emit(
            Failed(self.run_id, *_event_fields(spec), now(), outcome, code, message, image_id)
        )
        if count:
            self.state.record_error()


_SETTLED = frozenset(
    {JournalState.AVAILABLE, JournalState.FAILED, JournalState.SKIPPED, JournalState.DRY_RUN}
)
_NOT_STARTED = {
    StopReason.INTERRUPTED: "the run was interrupted before this target started; resume it",
    StopReason.DEADLINE: "the deadline passed before this target started",
    StopReason.ERROR_BUDGET: "max_errors was exceeded; no new images were started",
}


async def _announce(plan: Plan, bus: _Bus, prior: dict[tuple[str, str, str], TargetRecord]) -> None:
    """Discovered/Skipped/Failed events for what planning found, before any CreateImage."""
    run_id = plan.run_id
    for lp in plan.lanes.values():
        key = lp.key
        if lp.error is not None:
            await bus.emit(
                Discovered(run_id, key.account, key.region, LANE_WIDE, now(), "", "unknown")
            )
            await bus.emit(
                Failed(
                    run_id,
                    key.account,
                    key.region,
                    LANE_WIDE,
                    now(),
                    Outcome.FAILED,
                    lp.error.code,
                    f"{lp.error.action} failed for the whole lane: {lp.error.message}",
                )
            )
            continue
        for spec in lp.specs:
            await bus.emit(
                Discovered(run_id, *_event_fields(spec), now(), spec.name, spec.target.state)
            )
        for target, reason in lp.skipped:
            await bus.emit(
                Discovered(
                    run_id, key.account, key.region, target.instance_id, now(), "", target.state
                )
            )
            await bus.emit(
                Skipped(run_id, key.account, key.region, target.instance_id, now(), reason)
            )
        for spec, other in lp.collisions:
            await bus.emit(
                Discovered(run_id, *_event_fields(spec), now(), spec.name, spec.target.state)
            )
            await bus.emit(
                Failed(
                    run_id,
                    *_event_fields(spec),
                    now(),
                    Outcome.FAILED,
                    "NameCollision",
                    f"the name template renders {spec.name!r} for this instance and for {other}; "
                    "add {instance_id} where tags cannot run into it",
                )
            )
        for instance_id in lp.missing:
            if (key.account, key.region, instance_id) in prior:
                continue
            await bus.emit(
                Discovered(run_id, key.account, key.region, instance_id, now(), "", "unknown")
            )
            await bus.emit(
                Failed(
                    run_id,
                    key.account,
                    key.region,
                    instance_id,
                    now(),
                    Outcome.FAILED,
                    "InvalidInstanceID.NotFound",
                    "no such instance in this account and region",
                )
            )


def _pin_names(
    plan: Plan, config: FleetConfig, prior: dict[tuple[str, str, str], TargetRecord]
) -> None:
    """Resume: a journaled name wins over a re-rendered one (tags may have changed since)."""
    for lp in plan.lanes.values():
        lp.specs = [
            build_spec(config, s.target, plan.run_id, plan.started_at, name=rec.image_name)
            if (rec := prior.get(_event_fields(s))) is not None
            and rec.image_name
            and rec.image_name != s.name
            else s
            for s in lp.specs
        ]


async def image_fleet(
    config: FleetConfig,
    *,
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
) -> RunReport:
    """Image every target of ``config``; returns one result per target.

    ``stop``: set it to stop gracefully (no new images; in-flight calls settle; pending
    images stay pending for ``resume``). ``resume``: the journal's records of an earlier
    run with the same ``run_id`` and ``started_at``: settled targets are kept, ``requesting``
    ones are looked up by name before anything is sent, pending ones are waited for.
    ``plan``: a :func:`~fleetimage.plan.plan_fleet` result to image exactly (no second
    discovery); its run id and start time are the run's.
    """
    if plan is not None:  # its names were rendered with its run id and start time
        run_id, started_at = plan.run_id, plan.started_at
    started_at = started_at or now()
    run_id = run_id or new_run_id(started_at)
    wait = config.wait.enabled if wait is None else wait
    subscribers: list[Subscriber] = []
    if on_event is not None:
        subscribers.extend(on_event if isinstance(on_event, Sequence) else [on_event])
    collector = ReportCollector(run_id, started_at, dry_run=dry_run)
    prior = {(r.account, r.region, r.instance_id): r for r in resume if r.instance_id != LANE_WIDE}
    collector.seed(prior.values())
    bus = _Bus([collector, *subscribers])
    state = _RunState(max_errors or config.max_errors, total=0)

    async with contextlib.AsyncExitStack() as stack:
        plan = await open_lanes(
            config,
            session=session or clients.new_session(),
            endpoint_url=endpoint_url,
            run_id=run_id,
            started_at=started_at,
            emit=bus.emit,
            stack=stack,
            planned=plan,
        )
        _pin_names(plan, config, prior)
        await _announce(plan, bus, prior)
        state.total = len(plan.specs)
        async with anyio.create_task_group() as tg:
            watchers = anyio.CancelScope()
            tg.start_soon(_watch_stop, watchers, state, stop, deadline)
            async with anyio.create_task_group() as lanes:
                for lp in plan.lanes.values():
                    if lp.lane is not None and lp.specs:
                        lanes.start_soon(
                            _LaneRun(
                                lp,
                                config,
                                state,
                                bus,
                                run_id=run_id,
                                dry_run=dry_run,
                                wait=wait,
                                prior=prior,
                            ).run
                        )
            watchers.cancel()
    return collector.report(
        finished_at=now(), interrupted=state.stop_reason == StopReason.INTERRUPTED
    )


async def _watch_stop(
    scope: anyio.CancelScope, state: _RunState, stop: anyio.Event | None, deadline: datetime | None
) -> None:
    async def on_stop() -> None:
        assert stop is not None
        await stop.wait()
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
