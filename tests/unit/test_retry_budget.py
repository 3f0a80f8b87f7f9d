"""The retry budget's waits and stops one by one, and what ``retrying`` tells and obeys.

test_retry.py checks whole call sequences; these pin the numbers a sequence cannot see: the
backoff bounds of each error kind (a jittered wait is drawn from a range, so each range is
sampled until both of its ends are approached), the exact attempt a budget stops at, and the
``on_retry`` report and stop request that ``retrying`` wires in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import anyio
import pytest
from tenacity import Future

from fleetimage.core.errors import AwsError, ErrorKind
from fleetimage.engine.retry import THROTTLE_BUDGET_FACTOR, _Budget, retrying
from fleetimage.engine.stop import Stopped, Stopper

SAMPLES = 400  # draws per range: both ends come within a few % of their bound


@dataclass(frozen=True)
class Policy:
    max_attempts: int = 3
    base_delay_s: float = 1.0
    max_delay_s: float = 100.0
    quota_delay_s: float = 10.0
    quota_max_attempts: int = 2
    max_outage_s: float = 60.0


class State:
    """The two things the budget reads of tenacity's RetryCallState."""

    def __init__(self, attempt: int, error: AwsError | None) -> None:
        self.attempt_number = attempt
        failed = error is not None
        self.outcome = Future.construct(attempt, error, failed)


def failure(kind: ErrorKind) -> AwsError:
    return AwsError("Code", "m", action="CreateImage", kind=kind)


def waits(kind: ErrorKind, attempt: int, policy: Policy = Policy()) -> list[float]:
    """``SAMPLES`` waits after the ``attempt``-th failure of ``kind``: the budget counts an
    attempt once however often it is asked, so the last one can be drawn again and again."""
    random.seed(2026)
    budget = _Budget(policy, in_lane=False, clock=lambda: 0.0)
    for n in range(1, attempt):
        budget.wait(State(n, failure(kind)))
    last = State(attempt, failure(kind))
    out = [budget.wait(last) for _ in range(SAMPLES)]
    assert budget.counts == {kind: attempt}
    return out


def test_a_throttle_waits_at_most_a_quarter_of_the_base_delay() -> None:
    got = waits(ErrorKind.THROTTLE, 3)  # not exponential: the limiter paces throttles
    assert 0.0 <= min(got) < 0.01 and 0.24 < max(got) <= 0.25


def test_a_quota_error_waits_between_one_and_one_and_a_half_quota_delays() -> None:
    got = waits(ErrorKind.QUOTA, 1)
    assert 10.0 <= min(got) < 10.1 and 14.9 < max(got) <= 15.0


def test_expired_credentials_are_retried_at_once() -> None:
    assert set(waits(ErrorKind.AUTH_EXPIRED, 2)) == {0.0}


@pytest.mark.parametrize(
    ("attempt", "bound"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (7, 64.0), (8, 100.0), (5000, 100.0)],
)
def test_transient_backoff_is_full_jitter_up_to_the_doubling_bound(
    attempt: int, bound: float
) -> None:
    # base 1 s doubling per attempt, capped at max_delay_s (100 s); attempt 5000 would
    # overflow an uncapped exponent.
    for kind in (ErrorKind.TRANSIENT, ErrorKind.AMBIGUOUS):
        got = waits(kind, attempt)
        assert 0.0 <= min(got) < 0.02 * bound and 0.97 * bound < max(got) <= bound, kind


def test_a_success_neither_waits_nor_goes_on() -> None:
    budget = _Budget(Policy(), in_lane=False, clock=lambda: 0.0)
    assert budget.wait(State(1, None)) == 0.0
    assert budget.stop(State(1, None)) is True


def stops(kind: ErrorKind, *, in_lane: bool = False, policy: Policy = Policy()) -> int:
    """The attempt at which the budget stops a call failing with ``kind`` every time."""
    budget = _Budget(policy, in_lane=in_lane, clock=lambda: 0.0)
    for n in range(1, 1000):
        state = State(n, failure(kind))
        budget.wait(state)  # tenacity asks both, in either order: one count per attempt
        if budget.stop(state):
            return n
    return 0


def test_each_kind_stops_at_its_own_attempt() -> None:
    assert stops(ErrorKind.QUOTA) == 2  # quota_max_attempts
    assert stops(ErrorKind.AUTH_EXPIRED) == 3  # max_attempts
    assert stops(ErrorKind.THROTTLE) == 3 * THROTTLE_BUDGET_FACTOR
    assert stops(ErrorKind.TRANSIENT) == 3
    assert stops(ErrorKind.AMBIGUOUS) == 3
    # in a lane the clock bounds throttles and transient errors: it never moves here
    assert stops(ErrorKind.TRANSIENT, in_lane=True) == 0
    assert stops(ErrorKind.QUOTA, in_lane=True) == 2


def test_in_a_lane_the_outage_bound_counts_from_the_first_such_error() -> None:
    now = [100.0]
    budget = _Budget(Policy(max_outage_s=60.0), in_lane=True, clock=lambda: now[0])
    assert budget.stop(State(1, failure(ErrorKind.QUOTA))) is False  # not time-bounded
    now[0] = 130.0
    assert budget.stop(State(2, failure(ErrorKind.TRANSIENT))) is False  # first at 130
    now[0] = 189.9
    assert budget.stop(State(3, failure(ErrorKind.THROTTLE))) is False
    now[0] = 190.0
    assert budget.stop(State(4, failure(ErrorKind.AMBIGUOUS))) is True  # 60 s since 130
    assert budget.counts == {
        ErrorKind.QUOTA: 1,
        ErrorKind.TRANSIENT: 1,
        ErrorKind.THROTTLE: 1,
        ErrorKind.AMBIGUOUS: 1,
    }


async def test_on_retry_hears_each_failure_with_its_attempt_and_delay() -> None:
    heard: list[tuple[str, int, float]] = []

    async def on_retry(error: AwsError, attempt: int, delay: float) -> None:
        heard.append((error.code, attempt, delay))

    policy = Policy(base_delay_s=0.001, max_delay_s=0.001)
    calls = 0
    async for attempt in retrying(policy, on_retry=on_retry):
        with attempt:
            calls += 1
            if calls < 3:
                raise AwsError(f"E{calls}", "m", action="X", kind=ErrorKind.TRANSIENT)
    assert [(code, n) for code, n, _ in heard] == [("E1", 1), ("E2", 2)]
    assert all(0.0 <= delay <= 0.001 for _, _, delay in heard)


async def test_the_budget_exhausted_raises_the_last_aws_error_itself() -> None:
    with pytest.raises(AwsError) as exc:
        async for attempt in retrying(Policy(base_delay_s=0.0, max_delay_s=0.0)):
            with attempt:
                raise AwsError("InternalError", "m", action="X", kind=ErrorKind.TRANSIENT)
    assert exc.value.code == "InternalError"


async def test_a_stop_request_ends_a_backoff_at_once() -> None:
    stopper = Stopper()
    policy = Policy(base_delay_s=600.0, max_delay_s=600.0, quota_delay_s=600.0)

    async def stop_soon() -> None:
        await anyio.sleep(0.05)
        stopper.request("test")

    # The bound is only there so that a broken stop fails instead of hanging for 10 minutes.
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_soon)
            with pytest.raises(Stopped):
                async for attempt in retrying(policy, stopper=stopper):
                    with attempt:
                        raise AwsError("Quota", "m", action="X", kind=ErrorKind.QUOTA)
