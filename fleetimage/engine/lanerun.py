"""One lane's imaging: a feeder under the lane's caps, a task per target, one waiter."""

from __future__ import annotations

import re

import anyio
import anyio.abc

from fleetimage.config import FleetConfig
from fleetimage.core.clock import now
from fleetimage.core.errors import AwsError, CredentialsExpired, ErrorKind
from fleetimage.core.models import (
    Available,
    Created,
    DryRunChecked,
    Failed,
    ImageSpec,
    JournalState,
    Outcome,
    Skipped,
    TargetRecord,
)
from fleetimage.core.states import SETTLED
from fleetimage.engine.announce import event_fields
from fleetimage.engine.breaker import LaneOutage
from fleetimage.engine.bus import Bus, SubscriberError
from fleetimage.engine.create import check_dry_run, create_image
from fleetimage.engine.plan import LanePlan
from fleetimage.engine.recreate import discard_failed_image, with_retry_name
from fleetimage.engine.runstate import RunState, StopReason
from fleetimage.engine.stop import Stopped
from fleetimage.engine.wait import ImageState, ImageWaiter

__all__ = ["LaneRun"]


class LaneRun:
    """Images one lane's targets: a feeder under the caps, a task per target, one waiter."""

    def __init__(
        self,
        lp: LanePlan,
        config: FleetConfig,
        state: RunState,
        bus: Bus,
        *,
        run_id: str,
        dry_run: bool,
        wait: bool,
        prior: dict[tuple[str, str, str], TargetRecord],
        retry_failed: bool = False,
        streamed: bool = False,
    ) -> None:
        """``streamed``: the lane's specs come page by page as it is discovered
        (:meth:`extend`), until :meth:`close`; else they are ``lp.specs``, all known."""
        assert lp.lane is not None
        self.retry_failed = retry_failed
        self.lane, self.config, self.state, self.bus = lp.lane, config, state, bus
        self.specs: list[ImageSpec] = [] if streamed else list(lp.specs)
        self._more = anyio.Event()
        self._closed = anyio.Event()
        if not streamed:
            self._closed.set()
        self.run_id, self.dry_run, self.wait, self.prior = run_id, dry_run, wait, prior
        self.in_flight = anyio.Semaphore(config.concurrency.max_in_flight_per_region)
        self.pending = anyio.Semaphore(config.concurrency.max_pending_images_per_region)
        w = config.wall_wait
        self.waiter = ImageWaiter(
            self.lane,
            **w.model_dump(exclude={"enabled"}),
            on_credentials_expired=self._credentials_expired,
            among_last_lanes=state.among_last_lanes,
            poll_budget=state.poll_budget,
        )
        state.waiters.append(self.waiter)
        state.lane_started()
        self._feeding = anyio.CancelScope()

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as lane_tg:
                if self.wait and not self.dry_run:
                    lane_tg.start_soon(self.waiter.run)
                async with anyio.create_task_group() as work:
                    await self._feed(work)
                lane_tg.cancel_scope.cancel()  # the waiter has nothing left to wait for
        finally:
            self.state.lane_finished()

    def extend(self, specs: list[ImageSpec]) -> None:
        """More of a streamed lane's specs (journaled as discovered already)."""
        self.specs.extend(specs)
        self._more.set()

    def close(self) -> None:
        """A streamed lane's discovery has ended: no more specs come."""
        self._closed.set()
        self._more.set()

    async def _feed(self, work: anyio.abc.TaskGroup) -> None:
        specs = self.specs
        started = 0
        with self._feeding as scope:
            self.state.feeders.append(scope)
            while True:
                if started == len(specs):
                    if self._closed.is_set():
                        break
                    await self._more.wait()  # bounded: the lane's discovery ends, or a stop
                    self._more = anyio.Event()
                    continue
                spec = specs[started]
                if self.state.stopping() or self.lane.breaker.stopped:
                    break
                record = self.prior.get(event_fields(spec))
                if record is not None and self._settled(record):
                    started += 1
                    continue
                await self.pending.acquire()
                try:
                    await self.in_flight.acquire()
                except BaseException:
                    self.pending.release()
                    raise
                if self.state.stopping() or self.lane.breaker.stopped:  # came while we waited
                    self.in_flight.release()
                    self.pending.release()
                    break
                work.start_soon(self._target, spec, record)
                started += 1
        reason = self.state.stop_reason or StopReason.INTERRUPTED
        outage = None if self.state.stopping() else self.lane.breaker.stopped  # breaker hook
        code, why = (outage.code, outage.message) if outage else (reason, _NOT_STARTED[reason])
        # A streamed lane's later pages still come: its discovery ends soon after a stop or an
        # outage (its calls end too), and what it journaled must not be left without a word.
        await self._closed.wait()
        for spec in specs[started:]:
            record = self.prior.get(event_fields(spec))
            if record is not None and self._settled(record):
                continue
            await self._fail(spec, Outcome.NOT_STARTED, code, why, count=False)

    def _credentials_expired(self, error: CredentialsExpired) -> None:
        if error.own:  # every account depends on them: no new work anywhere
            self.state.request_stop(StopReason.CREDENTIALS, stop_waiting=True)

    def _settled(self, record: TargetRecord) -> bool:
        retry = self.retry_failed and record.state is JournalState.FAILED
        return record.state in SETTLED and not retry

    async def _target(self, spec: ImageSpec, record: TargetRecord | None) -> None:
        try:
            if self.dry_run:
                try:
                    ok, code, message = await check_dry_run(self.lane, spec)
                finally:
                    self.in_flight.release()
                await self.bus.emit(
                    DryRunChecked(self.run_id, *event_fields(spec), now(), ok, code, message)
                )
                return
            retry = record is not None and record.state is JournalState.FAILED  # --retry-failed
            image_id = record.image_id if record is not None and not retry else None
            if image_id is None:
                try:
                    if retry and record is not None:
                        if record.image_id is not None:  # ours only; with its snapshots
                            await discard_failed_image(
                                self.lane, record.image_id, instance_id=spec.target.instance_id
                            )
                        spec, record = with_retry_name(spec, record.image_name), None
                    created = await create_image(
                        self.lane,
                        spec,
                        # it may exist: look it up by name before anything is sent again
                        lookup_first=record is not None and record.state in _MAYBE_SENT,
                        grace_s=self.config.wall_wait.not_found_grace_s,
                    )
                except LaneOutage as outage:  # breaker hook: the lane stopped, starts no more;
                    self._feeding.cancel()  # not this target's failure (unknown if it was sent)
                    outcome = Outcome.UNKNOWN if outage.requested else Outcome.NOT_STARTED
                    await self._fail(spec, outcome, outage.code, outage.message, count=False)
                    return
                except Stopped as stop:
                    # Nothing of this target is in flight. Never sent: not started; sent
                    # before (this run or the last): it stays open, resume looks it up.
                    reason = stop.reason
                    await self._fail(
                        spec, Outcome.NOT_STARTED, reason, _NOT_STARTED[reason], count=False
                    )
                    return
                except CredentialsExpired as error:
                    # Never the target's fault: unstarted (or, if sent before, still open).
                    self._credentials_expired(error)
                    await self._fail(
                        spec, Outcome.NOT_STARTED, error.code, error.message, count=False
                    )
                    return
                except AwsError as error:
                    if _instance_refused(error):  # terminated or gone since discovery
                        reason = f"CreateImage refused: {error.code}: {error.message}"
                        await self.bus.emit(
                            Skipped(self.run_id, *event_fields(spec), now(), reason)
                        )
                        return
                    # Only EC2's word about the request fails a target; an exhausted retry of
                    # 5xx, timeouts or throttles leaves it unknown (resume looks it up).
                    outcome = (
                        Outcome.FAILED if error.kind in _ABOUT_THE_REQUEST else Outcome.UNKNOWN
                    )
                    await self._fail(spec, outcome, error.code, error.message)
                    return
                finally:
                    self.in_flight.release()
                image_id = created.image_id
                await self.bus.emit(
                    Created(
                        self.run_id,
                        *event_fields(spec),
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
            await self.bus.emit(Available(self.run_id, *event_fields(spec), now(), image_id))
            if self.state.on_available is not None:  # its copies start now
                self.state.on_available(spec, image_id)
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
            elif result.code == StopReason.CREDENTIALS:  # it can no longer be polled
                message = f"{_NOT_STARTED[StopReason.CREDENTIALS]}; the image's state is unknown"
                await self._fail(
                    spec, Outcome.UNKNOWN, result.code, message, image_id=image_id, count=False
                )
            # Interrupted: the image stays pending in the journal; resume waits for it.
        elif result.state == "unknown":  # DescribeImages refused: EC2 never said "failed"
            await self._fail(spec, Outcome.UNKNOWN, result.code, result.message, image_id=image_id)
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
            Failed(self.run_id, *event_fields(spec), now(), outcome, code, message, image_id)
        )
        if count:
            self.state.record_error()


_INSTANCE_STATE = re.compile(r"not in (a valid )?state", re.IGNORECASE)


def _instance_refused(error: AwsError) -> bool:
    """EC2 refused CreateImage because of the instance itself (gone, or in a state it cannot
    image): that is a skip with its reason, as at discovery, not a failure of the request."""
    if error.code == "InvalidInstanceID.NotFound":
        return True
    return error.code == "InvalidParameterValue" and bool(_INSTANCE_STATE.search(error.message))


_MAYBE_SENT = frozenset({JournalState.REQUESTING, JournalState.UNKNOWN})
_ABOUT_THE_REQUEST = frozenset({ErrorKind.FATAL, ErrorKind.DUPLICATE_NAME, ErrorKind.QUOTA})
_NOT_STARTED = {
    StopReason.INTERRUPTED: "the run was interrupted before this target started; resume it",
    StopReason.DEADLINE: "the deadline passed before this target started",
    StopReason.ERROR_BUDGET: "max_errors was exceeded; no new images were started",
    StopReason.CREDENTIALS: "your own AWS credentials expired and cannot be renewed here; "
    "renew them (aws sso login, a new profile session) and resume",
    StopReason.JOURNAL: "the journal failed, so no CreateImage could be journaled before it "
    "was sent; no new images were started",
}
