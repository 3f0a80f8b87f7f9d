"""The lane circuit breaker: transient failures pause the lane; one probe resumes it.

Every send of a lane awaits :meth:`Breaker.admit` before it takes a token, and reports how
it ended with :meth:`Breaker.record` (or :meth:`Breaker.release` if it never got an answer)::

    closed ──(retry.breaker_failures transient failures in a row of one action)──► open
    open ──(cool-down over: the next send is the probe)──► half_open
    half_open ──(the probe is answered, and every action that failed lately has answered
                 since)──► closed      (queued sends resume, paced by the limiter)
    half_open ──(the probe fails transiently)──► open   (the cool-down grows)
    open/half_open for longer than retry.max_outage_s ──► stopped

Transient means 5xx (``InternalError``, ``Unavailable``, ...), timeouts and connection resets
(:class:`~fleetimage.core.errors.ErrorKind` TRANSIENT and AMBIGUOUS). Any other *answer*
(a throttle, a quota, ``InvalidParameterValue``, ...) proves the endpoint is up. The
cool-down starts at ``breaker_cooldown_s``, doubles at each failed probe up to
``breaker_max_cooldown_s``, and is jittered (half fixed, half random) so that lanes that
failed together do not probe in lockstep.

Half-open lets one request through at a time, in arrival order (the gate is FIFO). A probe
answered for one action (say the waiter's DescribeImages) does not close the breaker while
another action (CreateImage) failed within ``linger_s`` and has not answered since: closing
then would release every queued CreateImage at once into an endpoint that still fails them.

*Stopped* is a flag, not a fifth state: the lane takes no new work. Every later send raises
:class:`LaneOutage`, except those admitted ``through_outage`` (the waiter's polls: images
already created are still waited for), which go on through open/half-open/closed as before.
Every wait here is bounded: a cool-down by ``breaker_max_cooldown_s``, the wait for a probe's
outcome by ``probe_wait_s`` (then looked at again), and the whole outage by ``max_outage_s``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from fleetimage.core.errors import AwsError, ErrorKind
from fleetimage.core.models import BreakerState, LaneKey

__all__ = ["FAILURE_KINDS", "Breaker", "LaneOutage", "Ticket", "describe_error"]

#: The kinds of error that count against the lane's endpoint (not against the request).
FAILURE_KINDS = frozenset({ErrorKind.TRANSIENT, ErrorKind.AMBIGUOUS})

OnChange = Callable[[BreakerState, str, "AwsError | None"], Awaitable[None]]
Sleep = Callable[[float], Awaitable[None]]


def describe_error(error: AwsError | None) -> str:
    """``Action: Code: message`` in one short line, or "" (for events and messages)."""
    if error is None:
        return ""
    message = " ".join(error.message.split())[:160]
    return (
        f"{error.action}: {error.code}: {message}" if error.action else f"{error.code}: {message}"
    )


class LaneOutage(AwsError):
    """A lane's endpoint kept failing for longer than ``retry.max_outage_s``: the lane stopped.

    Not about any request: the lane's unstarted targets are ``not_started`` (resumable); the
    images it created are still waited for. ``lane`` and ``last_error`` say where and why.
    """

    def __init__(
        self,
        lane: LaneKey,
        last_error: AwsError | None,
        outage_s: float,
        *,
        hint: str = "",
        requested: bool = False,
    ) -> None:
        self.lane = lane
        self.last_error = last_error
        self.outage_s = outage_s
        self.hint = hint
        # Set by create_image: a CreateImage for this target was sent before (this run or
        # the last), so it may exist: the target is unknown (resume looks it up by name).
        self.requested = requested
        last = describe_error(last_error) or "none recorded"
        message = (
            f"lane {lane} stopped: its endpoint failed for over {outage_s:g} s "
            f"(retry.max_outage_s); last error: {last}. No new images in this lane; "
            "resume the run once the endpoint recovers"
        )
        super().__init__(
            "LaneOutage",
            f"{message}. {hint}" if hint else message,
            action=last_error.action if last_error is not None else "",
            kind=ErrorKind.FATAL,
        )

    def again(self, *, hint: str | None = None, requested: bool | None = None) -> LaneOutage:
        """A fresh copy to raise in another task (an exception object carries its traceback)."""
        return LaneOutage(
            self.lane,
            self.last_error,
            self.outage_s,
            hint=self.hint if hint is None else hint,
            requested=self.requested if requested is None else requested,
        )


@dataclass(slots=True)
class Ticket:
    """One admitted send: which action, in which breaker epoch, and whether it is the probe."""

    action: str
    epoch: int
    probe: bool
    done: bool = False


class Breaker:
    """One lane's breaker. ``clock``/``sleep`` are injectable so tests need no real time."""

    def __init__(
        self,
        lane: LaneKey,
        *,
        failures: int,
        cooldown_s: float,
        max_cooldown_s: float,
        max_outage_s: float,
        linger_s: float,
        probe_wait_s: float = 60.0,
        on_change: OnChange | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = anyio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if failures < 1:
            raise ValueError(f"failures must be >= 1, got {failures}")
        if not 0 < cooldown_s <= max_cooldown_s:
            raise ValueError(
                f"need 0 < cooldown_s <= max_cooldown_s, got {cooldown_s}, {max_cooldown_s}"
            )
        self.lane = lane
        self.failures = failures
        self.cooldown_s = cooldown_s
        self.max_cooldown_s = max_cooldown_s
        self.max_outage_s = max_outage_s
        self.linger_s = linger_s
        self.probe_wait_s = probe_wait_s
        self.on_change = on_change
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._state = BreakerState.CLOSED
        self._epoch = 0
        self._level = 0  # cool-downs since the breaker was last closed
        self._reopen_at = 0.0
        self._outage_since: float | None = None
        self._probing = False
        self._streak: dict[str, int] = {}  # transient failures in a row, per action
        self._failed_at: dict[str, float] = {}  # last transient failure, per action
        self._last_error: AwsError | None = None
        self._stopped: LaneOutage | None = None
        self._gate = anyio.Lock()  # FIFO: queued sends are admitted in arrival order
        self._changed = anyio.Event()
        self._pending: list[tuple[BreakerState, str, AwsError | None]] = []
        self._emitting = anyio.Lock()

    # --- read-only state ---------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def stopped(self) -> LaneOutage | None:
        """The outage that stopped the lane, or None."""
        return self._stopped

    @property
    def last_error(self) -> AwsError | None:
        return self._last_error

    # --- the gate ------------------------------------------------------------------------

    async def admit(self, action: str, *, through_outage: bool = False) -> Ticket:
        """Wait until the breaker lets a send of ``action`` go; raise LaneOutage once stopped.

        ``through_outage``: keep going after the lane stopped (reads for images that exist).
        """
        self._check_stopped(through_outage)
        if self._state is BreakerState.CLOSED and not self._gate.locked():
            return Ticket(action, self._epoch, probe=False)
        try:
            async with self._gate:
                return await self._admit_queued(action, through_outage)
        finally:
            await self._flush()

    async def _admit_queued(self, action: str, through_outage: bool) -> Ticket:
        while True:
            self._check_stopped(through_outage)
            now = self._clock()
            if self._state is BreakerState.CLOSED:
                return Ticket(action, self._epoch, probe=False)
            if self._check_outage(now) and not through_outage:
                continue  # raises at the top
            if self._state is BreakerState.OPEN:
                if now < self._reopen_at:
                    await self._sleep(self._reopen_at - now)
                    continue
                self._to(BreakerState.HALF_OPEN, "cool-down over; probing with one request")
            if not self._probing:
                self._probing = True
                return Ticket(action, self._epoch, probe=True)
            changed = self._changed
            with anyio.move_on_after(self.probe_wait_s):
                await changed.wait()  # the probe's outcome, then look again

    def admits(self, ticket: Ticket, *, through_outage: bool = False) -> bool:
        """Whether ``ticket`` may still be sent (the breaker may have opened since it was
        admitted, while it waited for a token): the probe, or anything while closed."""
        if self._stopped is not None and not through_outage:
            return False
        return ticket.probe or self._state is BreakerState.CLOSED

    def release(self, ticket: Ticket) -> None:
        """The send ended without an answer to judge (cancelled, a local error)."""
        if ticket.done:
            return
        ticket.done = True
        if ticket.probe and self._probing:
            self._probing = False
            self._wake()  # the next queued send becomes the probe

    async def record(self, ticket: Ticket, error: AwsError | None) -> None:
        """How an admitted send ended: ``None`` for success, else the translated error."""
        if ticket.done:
            return
        if error is not None and error.kind not in FAILURE_KINDS and error.http_status is None:
            self.release(ticket)  # not an answer from the endpoint (e.g. our own bug)
            return
        ticket.done = True
        now = self._clock()
        action = ticket.action
        if ticket.probe:
            self._probing = False
        if error is not None and error.kind in FAILURE_KINDS:
            self._failure(
                now, action, error, probe=ticket.probe, current=ticket.epoch == self._epoch
            )
        else:
            # Any answer (a success, a throttle, an error about the request) means the
            # endpoint is up for this action.
            self._streak.pop(action, None)
            self._failed_at.pop(action, None)
            if ticket.probe and self._state is BreakerState.HALF_OPEN:
                if self._still_failing(now):
                    self._wake()  # stay half-open: the next probe may be the failing action
                else:
                    self._close(f"the probe ({action}) was answered")
        await self._flush()

    async def report_failure(self, action: str, error: AwsError) -> None:
        """A send that was answered, but with something no endpoint in working order sends
        (a 200 without the expected result): count it like a transient failure."""
        self._failure(self._clock(), action, error, probe=False, current=True)
        await self._flush()

    async def trip(self, error: AwsError) -> LaneOutage:
        """Stop the lane now: a call could not get through for ``max_outage_s`` (its retry
        budget is spent). Returns the outage to raise."""
        self._last_error = error
        if self._stopped is None:
            self._stop(f"a {error.action} call kept failing for over {self.max_outage_s:g} s")
            await self._flush()
        assert self._stopped is not None
        return self._stopped.again()

    # --- transitions ---------------------------------------------------------------------

    def _failure(
        self, now: float, action: str, error: AwsError, *, probe: bool, current: bool
    ) -> None:
        self._last_error = error
        if not current:
            return  # sent before the last opening: news of an outage already acted upon
        self._failed_at[action] = now
        streak = self._streak[action] = self._streak.get(action, 0) + 1
        if probe and self._state is BreakerState.HALF_OPEN:
            self._open(now, f"the probe failed ({action}: {error.code})")
        elif self._state is BreakerState.CLOSED and streak >= self.failures:
            self._open(now, f"{streak} {action} requests in a row failed ({error.code})")

    def _check_stopped(self, through_outage: bool) -> None:
        if self._stopped is not None and not through_outage:
            raise self._stopped.again()

    def _check_outage(self, now: float) -> bool:
        """Stop the lane if it has been open for too long; True if it is (now) stopped."""
        if self._stopped is None and (
            self._outage_since is not None and now - self._outage_since >= self.max_outage_s
        ):
            self._stop(f"open for over {self.max_outage_s:g} s (retry.max_outage_s)")
        return self._stopped is not None

    def _still_failing(self, now: float) -> bool:
        for action, at in list(self._failed_at.items()):
            if now - at >= self.linger_s:  # no send of it came back: nothing to protect
                del self._failed_at[action]
        return bool(self._failed_at)

    def _cooldown(self) -> float:
        ceiling = min(self.max_cooldown_s, self.cooldown_s * 2.0 ** min(self._level, 60))
        return ceiling / 2 + self._rng.uniform(0.0, ceiling / 2)

    def _open(self, now: float, reason: str) -> None:
        self._epoch += 1
        cooldown = self._cooldown()
        self._level += 1
        self._reopen_at = now + cooldown
        if self._outage_since is None:
            self._outage_since = now
        self._to(BreakerState.OPEN, f"{reason}; pausing the lane for {cooldown:.3g} s")
        self._check_outage(now)

    def _close(self, reason: str) -> None:
        self._level = 0
        self._outage_since = None
        self._streak.clear()
        self._failed_at.clear()
        self._to(BreakerState.CLOSED, reason)

    def _stop(self, reason: str) -> None:
        self._stopped = LaneOutage(self.lane, self._last_error, self.max_outage_s)
        self._pending.append((BreakerState.STOPPED, reason, self._last_error))
        self._wake()

    def _to(self, state: BreakerState, reason: str) -> None:
        self._state = state
        self._pending.append((state, reason, self._last_error))
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def _flush(self) -> None:
        """Hand the state changes to ``on_change`` in order (observers; never cancelled)."""
        if self.on_change is None:
            self._pending.clear()
            return
        if not self._pending:
            return
        with anyio.CancelScope(shield=True):
            async with self._emitting:
                while self._pending:
                    state, reason, error = self._pending.pop(0)
                    await self.on_change(state, reason, error)
