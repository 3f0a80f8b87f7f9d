"""The copy phase: one lane per (account, destination region), copies as tokens and slots allow.

Each destination lane is a :class:`~fleetimage.engine.lane.Lane` like imaging's — its own
client, its token buckets (CopyImage: 100 burst, 1/s), its breaker, its retries — plus one
batched :class:`~fleetimage.engine.wait.ImageWaiter` and its :class:`CopySlots` (the
concurrent-copy cap and the pause of ``ResourceLimitExceeded``). A copy's source is the
target's image once it is ``available``. Resume: a settled copy is left alone; a copy with
an image id is waited for; one that may have been sent is looked up by name and tags before
CopyImage goes out again (with its journaled token).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import anyio
import anyio.abc
from aiobotocore.session import AioSession

from fleetimage.aws import clients
from fleetimage.config import AccountSpec, FleetConfig
from fleetimage.core.clock import now
from fleetimage.core.copies import (
    CopyAvailable,
    CopyCreated,
    CopyFailed,
    CopyKey,
    CopyPlanned,
    CopyRecord,
    CopyState,
)
from fleetimage.core.errors import AwsError, CredentialsExpired, ErrorKind
from fleetimage.core.models import ImageSpec, LaneKey, Outcome
from fleetimage.engine.accounts import Access, resolve_account
from fleetimage.engine.breaker import LaneOutage
from fleetimage.engine.bus import Bus, SubscriberError
from fleetimage.engine.copy import CopyLimitReached, CopySpec, build_copy_spec, copy_image
from fleetimage.engine.copy_lanes_support import NOT_STARTED, settle_message
from fleetimage.engine.copy_slots import CopySlots, DestinationStopped
from fleetimage.engine.lane import Lane
from fleetimage.engine.lanerun import RunState, StopReason
from fleetimage.engine.limiter import Limiter
from fleetimage.engine.plan import CONFIRM_SHARE
from fleetimage.engine.stop import Stopped
from fleetimage.engine.wait import ImageWaiter

__all__ = ["CopyPhase", "plan_copies"]

Source = tuple[ImageSpec, str]  # a target's request and its available image


def plan_copies(
    config: FleetConfig, sources: Iterable[Source], run_id: str, started_at: datetime
) -> list[CopySpec]:
    """Every (source image, destination) the config asks for; never into the source's region."""
    specs: list[CopySpec] = []
    for spec, image_id in sources:
        for destination in config.copy_.regions:
            if destination != spec.target.region:
                specs.append(
                    build_copy_spec(config, spec, image_id, destination, run_id, started_at)
                )
    return specs


@dataclass(slots=True)
class _Destination:
    lane: Lane
    slots: CopySlots
    waiter: ImageWaiter
    specs: list[CopySpec] = field(default_factory=list)


class CopyPhase:
    """Copies the run's available images into every destination; one task group per lane."""

    def __init__(
        self,
        config: FleetConfig,
        state: RunState,
        bus: Bus,
        *,
        run_id: str,
        prior: Mapping[CopyKey, CopyRecord],
    ) -> None:
        self.config, self.state, self.bus, self.run_id = config, state, bus, run_id
        self.prior = prior

    async def run(
        self,
        specs: Sequence[CopySpec],
        *,
        session: AioSession,
        endpoint_url: str | None,
        stack: contextlib.AsyncExitStack,
    ) -> None:
        todo = [s for s in specs if not self._settled(s)]
        for spec in todo:
            if spec.key not in self.prior:
                await self.bus.emit(
                    CopyPlanned(
                        self.run_id, *_fields(spec), spec.source_image_id, spec.name, spec.token
                    )
                )
        if not todo or self.state.stopping():
            for spec in todo:
                await self._not_started(spec, self.state.stop_reason or StopReason.INTERRUPTED)
            return
        lanes = await self._open(todo, session, endpoint_url, stack)
        async with anyio.create_task_group() as tg:
            for dest in lanes.values():
                if dest is not None:
                    tg.start_soon(self._run_lane, dest)
            for key, dest in lanes.items():
                if dest is None:  # its account could not be reached
                    for spec in todo:
                        if (spec.key.account, spec.key.destination) == (key.account, key.region):
                            await self._fail(
                                spec,
                                Outcome.NOT_STARTED,
                                "AccountUnavailable",
                                "the destination's account could not be reached",
                            )

    def _settled(self, spec: CopySpec) -> bool:
        record = self.prior.get(spec.key)
        if record is None or record.source_image_id != spec.source_image_id:
            return False  # never tried, or its source was re-created (a new token)
        # A failed copy is not sent again with its token (EC2 would answer the failed image);
        # --retry-failed re-creates failed *sources*, whose copies then get new tokens.
        return record.state in (CopyState.AVAILABLE, CopyState.FAILED)

    async def _open(
        self,
        specs: list[CopySpec],
        session: AioSession,
        endpoint_url: str | None,
        stack: contextlib.AsyncExitStack,
    ) -> dict[LaneKey, _Destination | None]:
        config = self.config
        access: dict[str, Access] = {}
        selectors: list[AccountSpec | None] = []
        for target in config.targets:
            selectors.extend(a for a in (target.accounts or (None,)) if a not in selectors)
        first = config.targets[0].regions[0]
        for selector in selectors:
            acc = await resolve_account(
                session, selector, region=first, endpoint_url=endpoint_url, config=config
            )
            access[acc.account or "self"] = acc
        cfg = clients.client_config(
            max_pool_connections=min(config.copy_.max_concurrent_per_region, 64) + 8,
            request_timeout_s=config.retry.request_timeout_s,
        )
        wall_retry = config.wall_retry
        lanes: dict[LaneKey, _Destination | None] = {}
        for spec in specs:
            key = LaneKey(spec.key.account, spec.key.destination)
            if key not in lanes:
                found = access.get(key.account)
                if found is None or found.session is None:
                    lanes[key] = None
                    continue
                client = await stack.enter_async_context(
                    clients.ec2_client(
                        found.session, region=key.region, endpoint_url=endpoint_url, config=cfg
                    )
                )
                limiter = Limiter.from_limits(
                    config.limits_for(key.region),
                    confirm_share=CONFIRM_SHARE,
                    **config.bucket_options(),
                )
                lane = Lane(
                    key,
                    client,
                    limiter,
                    wall_retry,
                    run_id=self.run_id,
                    bus=self.bus,
                    stopper=self.state.stopper,
                    credentials=found.credentials,
                )
                wait = config.wall_wait
                waiter = ImageWaiter(
                    lane,
                    poll_interval_s=wait.poll_interval_s,
                    timeout_s=wait.timeout_s,
                    not_found_grace_s=wait.not_found_grace_s,
                )
                self.state.waiters.append(waiter)
                slots = CopySlots(
                    key.region, config.copy_.max_concurrent_per_region, wall_retry.max_outage_s
                )
                lanes[key] = _Destination(lane, slots, waiter)
            dest = lanes[key]
            if dest is not None:
                dest.specs.append(spec)
        return lanes

    async def _run_lane(self, dest: _Destination) -> None:
        async with anyio.create_task_group() as lane_tg:
            lane_tg.start_soon(dest.waiter.run)
            async with anyio.create_task_group() as work:
                await self._feed(dest, work)
            lane_tg.cancel_scope.cancel()

    async def _feed(self, dest: _Destination, work: anyio.abc.TaskGroup) -> None:
        started = 0
        with anyio.CancelScope() as scope:
            self.state.feeders.append(scope)
            for spec in dest.specs:
                if self.state.stopping() or dest.lane.breaker.stopped or dest.slots.stopped:
                    break
                record = self.prior.get(spec.key)
                known = record is not None and record.source_image_id == spec.source_image_id
                if known and record is not None and record.image_id is not None:
                    try:  # it exists: only the wait is left
                        await dest.slots.acquire()
                    except DestinationStopped:
                        break
                    work.start_soon(self._wait, dest, spec, record.image_id)
                    started += 1
                    continue
                try:
                    await dest.slots.acquire()
                except DestinationStopped:
                    break
                maybe_sent = known and record is not None and record.state in _MAYBE_SENT
                work.start_soon(self._copy, dest, spec, maybe_sent)
                started += 1
        for spec in dest.specs[started:]:
            if dest.slots.stopped is not None:
                await self._fail(
                    spec,
                    Outcome.NOT_STARTED,
                    DestinationStopped.CODE,
                    dest.slots.stopped.message,
                    count=False,
                )
            elif (outage := dest.lane.breaker.stopped) is not None and not self.state.stopping():
                await self._fail(
                    spec, Outcome.NOT_STARTED, outage.code, outage.message, count=False
                )
            else:
                await self._not_started(spec, self.state.stop_reason or StopReason.INTERRUPTED)

    async def _copy(self, dest: _Destination, spec: CopySpec, maybe_sent: bool) -> None:
        held = True
        try:
            while True:
                try:
                    created = await copy_image(dest.lane, spec, lookup_first=maybe_sent)
                    break
                except CopyLimitReached as limit:
                    held = False
                    dest.slots.on_limit(limit.error.message)
                    await dest.slots.acquire()  # paused until one of ours settles (bounded)
                    held = True
            await self.bus.emit(
                CopyCreated(self.run_id, *_fields(spec), created.image_id, created.adopted)
            )
            await self._wait(dest, spec, created.image_id, holding=False)
            dest.slots.release(settled=True)
            held = False
        except DestinationStopped as stop:
            await self._fail(spec, Outcome.NOT_STARTED, stop.CODE, stop.message, count=False)
        except LaneOutage as outage:
            outcome = Outcome.UNKNOWN if maybe_sent else Outcome.NOT_STARTED
            await self._fail(spec, outcome, outage.code, outage.message, count=False)
        except Stopped as stop:
            await self._not_started(spec, stop.reason)
        except CredentialsExpired as error:
            await self._fail(spec, Outcome.NOT_STARTED, error.code, error.message, count=False)
        except AwsError as error:
            fatal = error.kind in (ErrorKind.FATAL, ErrorKind.DUPLICATE_NAME, ErrorKind.QUOTA)
            await self._fail(
                spec, Outcome.FAILED if fatal else Outcome.UNKNOWN, error.code, error.message
            )
        except SubscriberError:
            raise
        except Exception as exc:  # a bug must cost one copy, not the fleet
            await self._fail(spec, Outcome.FAILED, "InternalError", f"{type(exc).__name__}: {exc}")
        finally:
            if held:
                dest.slots.release(settled=False)

    async def _wait(
        self, dest: _Destination, spec: CopySpec, image_id: str, *, holding: bool = True
    ) -> None:
        """Wait for a copy to settle and record how; ``holding``: release its slot after."""
        try:
            result = await dest.waiter.wait(image_id)
            if result.available:
                await self.bus.emit(CopyAvailable(self.run_id, *_fields(spec), image_id))
                return
            settled = settle_message(result)
            if settled is None:  # interrupted: it stays pending, resume waits for it
                return
            outcome, code, message, counts = settled
            await self._fail(spec, outcome, code, message, image_id=image_id, count=counts)
        finally:
            if holding:
                dest.slots.release(settled=True)

    async def _not_started(self, spec: CopySpec, reason: str) -> None:
        message = NOT_STARTED.get(reason, "the run stopped before this copy started")
        await self._fail(spec, Outcome.NOT_STARTED, reason, message, count=False)

    async def _fail(
        self,
        spec: CopySpec,
        outcome: Outcome,
        code: str,
        message: str,
        *,
        image_id: str | None = None,
        count: bool = True,
    ) -> None:
        await self.bus.emit(
            CopyFailed(self.run_id, *_fields(spec), outcome, code, message, image_id)
        )
        if count:
            self.state.record_error()


_MAYBE_SENT = frozenset({CopyState.REQUESTING, CopyState.UNKNOWN})


def _fields(spec: CopySpec) -> tuple[str, str, str, datetime, str]:
    k = spec.key
    return k.account, k.source_region, k.instance_id, now(), k.destination
