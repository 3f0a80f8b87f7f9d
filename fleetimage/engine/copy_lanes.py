"""The copy phase: one lane per (account, destination region), copies as tokens and slots allow.

Each destination lane is a :class:`~fleetimage.engine.lane.Lane` — imaging's own for that
(account, region) when the run images there too (one client, one set of token buckets, one
breaker per (account, region)), else one like it; CopyImage's bucket is 100 burst, 1/s —
plus one batched :class:`~fleetimage.engine.wait.ImageWaiter` and its :class:`CopySlots`
(the concurrent-copy cap and the pause of ``ResourceLimitExceeded``). A copy's source is the
target's image once it is ``available``. Resume: a settled copy is left alone; a copy with
an image id is waited for; one that may have been sent is looked up by name and tags before
CopyImage goes out again (with its journaled token).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import anyio
import anyio.abc
from aiobotocore.session import AioSession
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from fleetimage.aws import clients
from fleetimage.aws.credentials import AccountCredentials, account_session
from fleetimage.config import FleetConfig
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
from fleetimage.engine.breaker import LaneOutage
from fleetimage.engine.bus import Bus, SubscriberError
from fleetimage.engine.copy import (
    CopyLimitReached,
    CopySpec,
    build_copy_spec,
    copy_destinations,
    copy_image,
)
from fleetimage.engine.copy_lanes_support import NOT_STARTED, settle_message
from fleetimage.engine.copy_slots import CopySlots, DestinationStopped
from fleetimage.engine.lane import Lane
from fleetimage.engine.limiter import Limiter
from fleetimage.engine.plan import CONFIRM_SHARE
from fleetimage.engine.runstate import RunState, StopReason
from fleetimage.engine.stop import Stopped
from fleetimage.engine.wait import ImageWaiter

__all__ = ["CopyPhase"]


@dataclass(slots=True)
class _Destination:
    lane: Lane
    slots: CopySlots
    waiter: ImageWaiter
    send: MemoryObjectSendStream[CopySpec]
    receive: MemoryObjectReceiveStream[CopySpec]


class CopyPhase:
    """Copies each image, as it becomes available, into every destination.

    :meth:`offer` hands it an available image (imaging's lanes call it, through
    ``RunState.on_available``; resume offers the images the journal knows available);
    :meth:`close` says no more will come. :meth:`run` copies until then, and until every copy
    it started has settled; a destination's lane is opened on its first copy.
    """

    def __init__(
        self,
        config: FleetConfig,
        state: RunState,
        bus: Bus,
        *,
        run_id: str,
        started_at: datetime,
        prior: Mapping[CopyKey, CopyRecord],
    ) -> None:
        self.config, self.state, self.bus, self.run_id = config, state, bus, run_id
        self.started_at, self.prior = started_at, prior
        self._send, self._receive = anyio.create_memory_object_stream[tuple[ImageSpec, str]](
            math.inf
        )
        self._imaging: dict[LaneKey, Lane] = {}  # imaging's lanes, shared (share_lane)
        # account -> its credentials (None: the caller's own, as the base session has them)
        self._credentials: dict[str, AccountCredentials | None] = {}
        self._sessions: dict[str, AioSession] = {}
        self._session: AioSession | None = None
        self._lanes: dict[LaneKey, _Destination | None] = {}  # opened on their first copy

    def offer(self, spec: ImageSpec, image_id: str) -> None:
        """``spec``'s image is available: copy it. Never blocks (the buffer is unbounded)."""
        # The phase may be gone (the run is failing): imaging must not fail for it.
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._send.send_nowait((spec, image_id))

    def close(self) -> None:
        """No more images will be offered (imaging is over)."""
        self._send.close()

    def share_lane(self, lane: Lane) -> None:
        """An imaging lane: copies into its (account, region) go through it (its client,
        buckets and breaker), so the region's DescribeImages budget has one pacer; and a new
        destination lane of its account signs with its account's one credentials object."""
        self._imaging.setdefault(lane.key, lane)
        self._credentials.setdefault(lane.key.account, lane.credentials)

    async def run(
        self, *, session: AioSession, endpoint_url: str | None, stack: contextlib.AsyncExitStack
    ) -> None:
        self._session = session
        with self._receive:
            async with anyio.create_task_group() as tg:
                try:
                    async for spec, image_id in self._receive:
                        await self._route(tg, spec, image_id, endpoint_url, stack)
                finally:
                    for dest in self._lanes.values():
                        if dest is not None:
                            dest.send.close()

    async def _route(
        self,
        tg: anyio.abc.TaskGroup,
        spec: ImageSpec,
        image_id: str,
        endpoint_url: str | None,
        stack: contextlib.AsyncExitStack,
    ) -> None:
        for destination in copy_destinations(self.config, spec.target.region):
            copy = build_copy_spec(
                self.config, spec, image_id, destination, self.run_id, self.started_at
            )
            record = self.prior.get(copy.key)
            if record is not None and record.source_image_id == image_id and record.client_token:
                # The journaled request wins, as for targets: the same token, the same name.
                copy = dataclasses.replace(
                    copy, token=record.client_token, name=record.name or copy.name
                )
            if self._settled(copy):
                continue
            if copy.key not in self.prior:
                await self.bus.emit(
                    CopyPlanned(
                        self.run_id, *_fields(copy), copy.source_image_id, copy.name, copy.token
                    )
                )
            key = LaneKey(copy.key.account, destination)
            if key not in self._lanes:
                dest = self._lanes[key] = await self._open(key, endpoint_url, stack)
                if dest is not None:
                    tg.start_soon(self._run_lane, dest)
            dest = self._lanes[key]
            if dest is None:
                await self._fail(
                    copy,
                    Outcome.NOT_STARTED,
                    "AccountUnavailable",
                    "the destination lane could not be opened (the account's credentials "
                    "failed at planning); resume once they work",
                    count=False,
                )
            else:
                dest.send.send_nowait(copy)

    def _settled(self, spec: CopySpec) -> bool:
        record = self.prior.get(spec.key)
        if record is None or record.source_image_id != spec.source_image_id:
            return False  # never tried, or its source was re-created (a new token)
        # A failed copy is not sent again with its token (EC2 would answer the failed image);
        # --retry-failed re-creates failed *sources*, whose copies then get new tokens.
        return record.state in (CopyState.AVAILABLE, CopyState.FAILED)

    async def _open(
        self, key: LaneKey, endpoint_url: str | None, stack: contextlib.AsyncExitStack
    ) -> _Destination | None:
        """The destination's lane: imaging's own for that (account, region) if there is one,
        else a new one signing with the account's credentials; None when the account has no
        working lane (its credentials failed at planning)."""
        lane = self._imaging.get(key)
        if lane is None:
            if key.account not in self._credentials or self._session is None:
                return None
            credentials = self._credentials[key.account]
            session = self._sessions.get(key.account)
            if session is None:
                session = self._sessions[key.account] = (
                    account_session(self._session, credentials)
                    if credentials is not None
                    else self._session
                )
            config = self.config
            cfg = clients.client_config(
                max_pool_connections=16, request_timeout_s=config.retry.request_timeout_s
            )
            client = await stack.enter_async_context(
                clients.ec2_client(
                    session, region=key.region, endpoint_url=endpoint_url, config=cfg
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
                config.wall_retry,
                run_id=self.run_id,
                bus=self.bus,
                stopper=self.state.stopper,
                credentials=credentials,
            )
        wait = self.config.wall_wait
        waiter = ImageWaiter(
            lane,
            poll_interval_s=wait.poll_interval_s,
            timeout_s=wait.timeout_s,
            not_found_grace_s=wait.not_found_grace_s,
        )
        self.state.waiters.append(waiter)
        slots = CopySlots(
            key.region,
            self.config.copy_.max_concurrent_per_region,
            self.config.wall_retry.max_outage_s,
        )
        send, receive = anyio.create_memory_object_stream[CopySpec](math.inf)
        return _Destination(lane, slots, waiter, send, receive)

    async def _run_lane(self, dest: _Destination) -> None:
        with dest.receive, dest.send:
            await self._run_lane_work(dest)

    async def _run_lane_work(self, dest: _Destination) -> None:
        async with anyio.create_task_group() as lane_tg:
            lane_tg.start_soon(dest.waiter.run)
            async with anyio.create_task_group() as work:
                await self._feed(dest, work)
            lane_tg.cancel_scope.cancel()

    async def _feed(self, dest: _Destination, work: anyio.abc.TaskGroup) -> None:
        waiting: CopySpec | None = None  # taken from the queue, not started yet
        with anyio.CancelScope() as scope:  # a stop cancels it (RunState.request_stop)
            self.state.feeders.append(scope)
            async for spec in dest.receive:
                if self.state.stopping() or dest.lane.breaker.stopped or dest.slots.stopped:
                    await self._unstarted(dest, spec)
                    continue
                waiting = spec  # until it has a slot: a stop may come meanwhile
                try:
                    await dest.slots.acquire()
                except DestinationStopped:
                    waiting = None
                    await self._unstarted(dest, spec)
                    continue
                waiting = None
                record = self.prior.get(spec.key)
                known = record is not None and record.source_image_id == spec.source_image_id
                if known and record is not None and record.image_id is not None:
                    # It exists: only the wait is left.
                    work.start_soon(self._wait, dest, spec, record.image_id)
                    continue
                maybe_sent = known and record is not None and record.state in _MAYBE_SENT
                work.start_soon(self._copy, dest, spec, maybe_sent)
        # Stopped: what was waiting for a slot, what is queued and what still comes never starts.
        if waiting is not None:
            await self._unstarted(dest, waiting)
        async for spec in dest.receive:
            await self._unstarted(dest, spec)

    async def _unstarted(self, dest: _Destination, spec: CopySpec) -> None:
        if dest.slots.stopped is not None:
            stop = dest.slots.stopped
            await self._fail(spec, Outcome.NOT_STARTED, stop.CODE, stop.message, count=False)
        elif (outage := dest.lane.breaker.stopped) is not None and not self.state.stopping():
            await self._fail(spec, Outcome.NOT_STARTED, outage.code, outage.message, count=False)
        else:
            await self._not_started(spec, self.state.stop_reason or StopReason.INTERRUPTED)

    async def _copy(self, dest: _Destination, spec: CopySpec, maybe_sent: bool) -> None:
        held, refused = True, False
        try:
            while True:
                try:
                    created = await copy_image(dest.lane, spec, lookup_first=maybe_sent)
                    dest.slots.accepted()
                    break
                except CopyLimitReached as limit:
                    held, refused = False, True  # answered, nothing applied
                    dest.slots.on_limit(limit.error.message)
                    await dest.slots.acquire()  # paused until one of ours settles (bounded)
                    held, refused = True, False
            await self.bus.emit(
                CopyCreated(self.run_id, *_fields(spec), created.image_id, created.adopted)
            )
            await self._wait(dest, spec, created.image_id, holding=False)
            dest.slots.release(settled=True)
            held = False
        except DestinationStopped as stop:
            await self._fail(
                spec, Outcome.NOT_STARTED, stop.CODE, stop.message, count=False, refused=refused
            )
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
        refused: bool = False,
    ) -> None:
        await self.bus.emit(
            CopyFailed(self.run_id, *_fields(spec), outcome, code, message, image_id, refused)
        )
        if count:
            self.state.record_error()


_MAYBE_SENT = frozenset({CopyState.REQUESTING, CopyState.UNKNOWN})


def _fields(spec: CopySpec) -> tuple[str, str, str, datetime, str]:
    k = spec.key
    return k.account, k.source_region, k.instance_id, now(), k.destination
