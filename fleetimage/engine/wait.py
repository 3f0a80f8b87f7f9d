"""The batched availability waiter: one poller per lane, not one waiter per image.

boto3's ``image_available`` waiter polls DescribeImages once per image every 15 s, so past
~300 pending images a region's DescribeImages bucket (100 burst, 20/s) throttles. Here one
task polls all of the lane's pending images through the ``image-id`` filter, in chunks, so
calls grow with (lanes x polls), not (images x polls). The filter (not ``ImageIds``) matters:
one id not yet visible (eventual consistency) would fail a whole ``ImageIds`` call, while a
filter just leaves it out; an absent image counts as pending for a grace period.

When it polls is the lane's :class:`~fleetimage.engine.settling.PollSchedule`: learned from
the pending times the lane has seen, between a floor and a ceiling (``poll_interval_s``),
within a budget of polls per image (a lane over it skips ceiling polls while it still creates).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from fleetimage.aws.parsing import reading_only
from fleetimage.core.errors import AwsError, CredentialsExpired, ErrorKind
from fleetimage.engine.breaker import LaneOutage
from fleetimage.engine.lane import Lane
from fleetimage.engine.settling import PollBudget, PollSchedule

__all__ = ["READ_IMAGE_MEMBERS", "TERMINAL_STATES", "ImageState", "ImageWaiter"]

TERMINAL_STATES = frozenset({"available", "failed", "error", "invalid", "deregistered"})
# EC2 bounds the values of one filter; 200 stays well inside it and keeps answers small.
CHUNK = 200
# What the waiter reads of an image (each must be in aws.model.DESCRIBED_IMAGE_MEMBERS):
# its answers are parsed for these alone, not for the tags and block devices others read.
READ_IMAGE_MEMBERS = frozenset({"ImageId", "State", "StateReason"})


@dataclass(frozen=True, slots=True)
class ImageState:
    """How waiting for one image ended. ``state`` is an EC2 state, or ``timed_out``/``not_found``."""

    state: str
    code: str = ""
    message: str = ""

    @property
    def available(self) -> bool:
        return self.state == "available"


@dataclass(slots=True)
class _Watch:
    registered_at: float
    timeout_at: float
    done: anyio.Event = field(default_factory=anyio.Event)
    result: ImageState | None = None


class ImageWaiter:
    """Polls a lane's pending images; ``wait(image_id)`` returns when the image settles."""

    def __init__(
        self,
        lane: Lane,
        *,
        poll_interval_s: float,
        timeout_s: float,
        not_found_grace_s: float,
        min_poll_interval_s: float | None = None,
        polls_per_image: float = 0.05,
        on_credentials_expired: Callable[[CredentialsExpired], None] | None = None,
        among_last_lanes: Callable[[], bool] | None = None,
        poll_budget: PollBudget | None = None,
    ) -> None:
        self.lane = lane
        # Whether this lane's images are the last the run waits for (see settling.py); when
        # that changes, nudge() makes a sleeping poll loop time its next poll again.
        self.among_last_lanes = among_last_lanes
        self._nudged = anyio.Event()
        # poll_interval_s is the ceiling; without a floor the schedule is the fixed interval.
        self.schedule = PollSchedule(
            floor_s=poll_interval_s if min_poll_interval_s is None else min_poll_interval_s,
            ceiling_s=poll_interval_s,
            polls_per_image=polls_per_image,
            shared=poll_budget,
        )
        self.on_credentials_expired = on_credentials_expired
        self.poll_interval_s = poll_interval_s
        self.timeout_s = timeout_s
        self.not_found_grace_s = not_found_grace_s
        self._watches: dict[str, _Watch] = {}
        self._work = anyio.Event()
        self._released: ImageState | None = None
        self._last_census = anyio.current_time()

    async def wait(self, image_id: str) -> ImageState:
        """Wait for ``image_id`` to leave ``pending`` (or time out). Cancellation-safe."""
        if self._released is not None:
            return self._released
        t = anyio.current_time()
        watch = self._watches.get(image_id)
        if watch is None:
            watch = self._watches[image_id] = _Watch(t, t + self.timeout_s)
            self.schedule.register()
        self._work.set()
        try:
            await watch.done.wait()
        finally:
            if watch.result is None:  # cancelled: stop polling for it
                self._watches.pop(image_id, None)
        assert watch.result is not None
        return watch.result

    async def run(self) -> None:
        """The poll loop; runs in the lane's task group until cancelled."""
        while True:
            if not self._watches:
                self._work = anyio.Event()
                await self._work.wait()
            # Until the lane has seen an image settle, a new image's first poll waits one
            # interval (the ceiling); after that, the learned pending times say when.
            now = anyio.current_time()
            delay = self.schedule.next_delay(
                now,
                (w.registered_at for w in self._watches.values()),
                last=self.among_last_lanes is not None and self.among_last_lanes(),
            )
            with anyio.move_on_after(delay):
                await self._nudged.wait()
            if self._nudged.is_set():
                self._nudged = anyio.Event()
                continue
            if self.schedule.skip():  # over budget while the lane still creates
                self._expire(anyio.current_time())
                continue
            try:
                # A poll waits at the lane's breaker through an outage; the images' own
                # timeouts still end their wait on time.
                with anyio.move_on_after(self._until_first_timeout()):
                    await self.poll_once()
            except LaneOutage:
                pass  # the lane stopped new work; its created images are still waited for
            except CredentialsExpired as error:
                # Not the images' fault: their state is unknown (resume polls them again).
                for image_id in list(self._watches):
                    self._settle(image_id, ImageState("unknown", error.code, error.message))
                if self.on_credentials_expired is not None:
                    self.on_credentials_expired(error)
            except AwsError as error:
                if error.kind is ErrorKind.FATAL:
                    # e.g. UnauthorizedOperation: waiting longer cannot help; say why now
                    # rather than as a WaitTimeout hours later.
                    self._fail_all(error)
            # Whatever the poll did, the overdue images time out (DescribeImages may be
            # failing: the lane's breaker keeps them pending and tries again).
            self._expire(anyio.current_time())

    def _until_first_timeout(self) -> float:
        if not self._watches:
            return 0.0
        first = min(w.timeout_at for w in self._watches.values())
        # A little past it, so that a poll under way can still see the image settle.
        return max(0.0, first - anyio.current_time()) + self.poll_interval_s

    async def poll_once(self) -> None:
        """One round over every watched image, in chunks.

        Most rounds ask only for images that have *settled* (a ``state`` filter), so a
        pending image costs nothing to parse however often it is polled; an absent image is
        then simply still pending. Once per ``not_found_grace_s`` a census round asks for
        every watched image, which is how an image deregistered by someone else is noticed.
        """
        t0 = anyio.current_time()
        ids = list(self._watches)
        self.schedule.begin_poll(t0, calls=len(range(0, len(ids), CHUNK)))
        census = t0 - self._last_census >= self.not_found_grace_s
        if census:
            self._last_census = t0
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            filters = [{"Name": "image-id", "Values": chunk}]
            if not census:
                filters.append({"Name": "state", "Values": sorted(TERMINAL_STATES)})
            # An answer tells the images' state when EC2 read it, which may be long before it
            # arrives (retries, a slow answer, a busy event loop): absence counts by when the
            # request was made, never by when its answer came back (a new image not yet
            # visible, asked about 1 s after it was made, is not "gone for over the grace"
            # because the answer took a minute).
            asked = anyio.current_time()
            # Not interruptible: created images are waited for after a stop of new work
            # (a run's stop, or this lane's outage: it polls on through the breaker).
            with reading_only("Image", READ_IMAGE_MEMBERS):
                answer = await self.lane.call(
                    "DescribeImages", {"Filters": filters}, interruptible=False
                )
            seen = {image["ImageId"]: image for image in answer.get("Images", [])}
            t = anyio.current_time()
            for image_id in chunk:
                watch = self._watches.get(image_id)
                if watch is None:
                    continue
                image = seen.get(image_id)
                if image is not None and image.get("State") in TERMINAL_STATES:
                    if image["State"] == "available":
                        self.schedule.settled(watch.registered_at, t)
                    reason = image.get("StateReason") or {}
                    self._settle(
                        image_id,
                        ImageState(
                            image["State"],
                            str(reason.get("Code", "")),
                            str(reason.get("Message", "")),
                        ),
                    )
                elif (
                    census
                    and image is None
                    and asked - watch.registered_at > self.not_found_grace_s
                ):
                    self._settle(
                        image_id,
                        ImageState(
                            "not_found",
                            "InvalidAMIID.NotFound",
                            f"image vanished from DescribeImages (deregistered?) for over "
                            f"{self.not_found_grace_s:g} s",
                        ),
                    )
                elif t >= watch.timeout_at:
                    state = image.get("State") if image else "pending" if not census else None
                    self._settle(
                        image_id,
                        ImageState(
                            "timed_out",
                            "WaitTimeout",
                            f"still {state or 'not visible'} after {self.timeout_s:g} s; "
                            "the image may still become available",
                        ),
                    )

    def nudge(self) -> None:
        """What the next poll's timing depends on changed: time it again now."""
        self._nudged.set()

    def release_all(self, result: ImageState) -> None:
        """Stop waiting: every current and future ``wait`` returns ``result`` (stop/deadline)."""
        self._released = result
        for image_id in list(self._watches):
            self._settle(image_id, result)

    def _fail_all(self, error: AwsError) -> None:
        for image_id in list(self._watches):
            self._settle(
                image_id,
                ImageState(
                    "unknown",
                    error.code,
                    f"the image was created but its state cannot be read: {error.message}",
                ),
            )

    def _expire(self, t: float) -> None:
        for image_id, watch in list(self._watches.items()):
            if t >= watch.timeout_at:
                self._settle(
                    image_id,
                    ImageState(
                        "timed_out",
                        "WaitTimeout",
                        f"no state seen within {self.timeout_s:g} s (DescribeImages kept "
                        "failing); the image may still become available",
                    ),
                )

    def _settle(self, image_id: str, result: ImageState) -> None:
        watch = self._watches.pop(image_id)
        watch.result = result
        watch.done.set()
