"""The retry policy: tenacity, driven only by :class:`~fleetimage.core.errors.ErrorKind`.

- THROTTLE: retry at once-ish; the lane's token bucket already slowed down and paces the
  resend, so sleeping here too would only waste the bucket's refill.
- TRANSIENT / AMBIGUOUS: jittered exponential backoff. (AMBIGUOUS calls are resolved by a
  lookup before the resend; that is the caller's job, see ``create.py``.)
- QUOTA: snapshot limits clear in minutes: a long, jittered, bounded backoff; once spent, the
  call fails with the quota's own code (EC2 talking about the request).
- AUTH_EXPIRED: the lane has already renewed the credentials (``Lane.send``): resend at
  once, within its own budget; renewing that does not help stops the lane there.
- FATAL and DUPLICATE_NAME: never retried here.

Inside a lane (``in_lane=True``) throttles and transient errors are not counted: throttles
are pacing signals and transient errors are the lane breaker's business (it pauses the lane
and probes). Their budget is time instead, ``max_outage_s`` from the call's first such error;
the lane turns a spent budget into a lane outage, never into a failed target. Outside a lane
(STS) they keep a count: ``max_attempts`` (throttles ``THROTTLE_BUDGET_FACTOR`` times that).
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from fleetimage.core.errors import AwsError, ErrorKind
from fleetimage.engine.stop import Stopper

__all__ = ["RETRYABLE", "TIME_BOUNDED", "RetryPolicy", "retrying"]

RETRYABLE = frozenset(
    {
        ErrorKind.THROTTLE,
        ErrorKind.TRANSIENT,
        ErrorKind.AMBIGUOUS,
        ErrorKind.QUOTA,
        ErrorKind.AUTH_EXPIRED,
    }
)
#: In a lane, these are bounded by time (``max_outage_s``), not by a count.
TIME_BOUNDED = frozenset({ErrorKind.THROTTLE, ErrorKind.TRANSIENT, ErrorKind.AMBIGUOUS})
# Kinds with a budget of their own, outside the max_attempts shared by the others.
_OWN_BUDGET = frozenset({ErrorKind.THROTTLE, ErrorKind.AUTH_EXPIRED})
THROTTLE_BUDGET_FACTOR = 4


class RetryPolicy(Protocol):
    """The knobs the policy reads (``config.RetryOptions`` satisfies it)."""

    @property
    def max_attempts(self) -> int: ...
    @property
    def base_delay_s(self) -> float: ...
    @property
    def max_delay_s(self) -> float: ...
    @property
    def quota_delay_s(self) -> float: ...
    @property
    def quota_max_attempts(self) -> int: ...
    @property
    def max_outage_s(self) -> float: ...


def _error(state: RetryCallState) -> AwsError | None:
    outcome = state.outcome
    if outcome is None or not outcome.failed:
        return None
    exc = outcome.exception()
    return exc if isinstance(exc, AwsError) else None


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, AwsError) and exc.kind in RETRYABLE


class _Budget:
    """Counts failures per kind across one call's attempts; decides stop and wait."""

    def __init__(self, policy: RetryPolicy, *, in_lane: bool, clock: Callable[[], float]) -> None:
        self.policy = policy
        self.in_lane = in_lane
        self.clock = clock
        self.counts: dict[ErrorKind, int] = {}
        self._counted = 0
        self._first_at: float | None = None  # the call's first time-bounded error

    def _count(self, state: RetryCallState, err: AwsError) -> int:
        # tenacity calls wait and stop once each per attempt, in an order that has changed
        # between releases: count each attempt once, whichever asks first.
        if state.attempt_number != self._counted:
            self._counted = state.attempt_number
            self.counts[err.kind] = self.counts.get(err.kind, 0) + 1
            if self._first_at is None and err.kind in TIME_BOUNDED:
                self._first_at = self.clock()
        return self.counts[err.kind]

    def stop(self, state: RetryCallState) -> bool:
        err = _error(state)
        if err is None:
            return True
        n = self._count(state, err)
        if err.kind is ErrorKind.QUOTA:
            return n >= self.policy.quota_max_attempts
        if err.kind is ErrorKind.AUTH_EXPIRED:
            return n >= self.policy.max_attempts
        if self.in_lane and self._first_at is not None and err.kind in TIME_BOUNDED:
            return self.clock() - self._first_at >= self.policy.max_outage_s
        if err.kind is ErrorKind.THROTTLE:
            return n >= self.policy.max_attempts * THROTTLE_BUDGET_FACTOR
        uncounted = _OWN_BUDGET | TIME_BOUNDED if self.in_lane else _OWN_BUDGET
        others = sum(c for k, c in self.counts.items() if k not in uncounted)
        return others >= self.policy.max_attempts

    def wait(self, state: RetryCallState) -> float:
        err = _error(state)
        p = self.policy
        if err is None:
            return 0.0
        n = self._count(state, err)
        if err.kind is ErrorKind.THROTTLE:
            return random.uniform(0, p.base_delay_s / 4)
        if err.kind is ErrorKind.QUOTA:
            return p.quota_delay_s * random.uniform(1.0, 1.5)
        if err.kind is ErrorKind.AUTH_EXPIRED:
            return 0.0  # already renewed
        # "Full jitter" exponential backoff (AWS architecture blog): spreads retries of many
        # targets that failed together instead of resending them in lockstep. The exponent
        # is capped: a lane retrying tiny delays until max_outage_s passes 1,024 attempts,
        # where 2 ** (n - 1) no longer converts to a float (the cap is far past max_delay_s).
        return random.uniform(0, min(p.max_delay_s, p.base_delay_s * 2.0 ** min(n - 1, 64)))


def retrying(
    policy: RetryPolicy,
    *,
    on_retry: Callable[[AwsError, int, float], Awaitable[None]] | None = None,
    in_lane: bool = False,
    clock: Callable[[], float] = time.monotonic,
    stopper: Stopper | None = None,
) -> AsyncRetrying:
    """A fresh tenacity controller for one logical call (its budget is per call).

    ``in_lane``: the call goes through a lane (its breaker and limiter); throttles and
    transient errors are then bounded by ``max_outage_s`` of ``clock`` rather than counted.
    ``stopper``: a stop ends a backoff at once (raising :class:`~fleetimage.engine.stop.Stopped`).
    """
    budget = _Budget(policy, in_lane=in_lane, clock=clock)

    async def sleep(seconds: float) -> None:
        if stopper is None:
            await anyio.sleep(seconds)
            return
        with stopper.interruptible():
            await anyio.sleep(seconds)

    async def before_sleep(state: RetryCallState) -> None:
        err = _error(state)
        if on_retry is not None and err is not None:
            delay = state.next_action.sleep if state.next_action else 0.0
            await on_retry(err, state.attempt_number, delay)

    return AsyncRetrying(
        retry=retry_if_exception(_is_retryable),
        stop=budget.stop,
        wait=budget.wait,
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )
