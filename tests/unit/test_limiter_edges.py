"""The token bucket's edges, on a fake clock: each test pins one rule of bucket.py's contract
that the broader property tests in test_ratelimit.py leave loose (found by mutation testing,
see tests/mutation/README.md)."""

from __future__ import annotations

import math

import anyio
import pytest

from fleetimage.engine.bucket import AdaptiveTokenBucket
from fleetimage.engine.limiter import Limiter, UnlimitedBucket


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _bucket(
    clock: FakeClock, burst: int = 50, rate: float = 5.0, **kw: float
) -> AdaptiveTokenBucket:
    return AdaptiveTokenBucket(burst=burst, rate_per_s=rate, clock=clock, **kw)


# --- parameters: the bad ones are refused with a message naming them, the edges are fine ---


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"burst": 0}, r"^burst must be >= 1, got 0$"),
        ({"rate_per_s": 0.0}, r"^rate_per_s must be a finite number > 0, got 0.0$"),
        ({"rate_per_s": math.inf}, r"^rate_per_s must be a finite number > 0"),
        ({"min_rate_per_s": 2.0}, r"^min_rate_per_s must be in \(0, 1.0\], got 2.0$"),
        ({"min_rate_per_s": 0.0}, r"^min_rate_per_s must be in \(0, 1.0\], got 0.0$"),
        ({"decrease_factor": 0.0}, r"^decrease_factor must be in \(0, 1\), got 0.0$"),
        ({"decrease_factor": 1.0}, r"^decrease_factor must be in \(0, 1\), got 1.0$"),
        ({"recovery_per_s": 0.0}, r"^recovery_per_s must be > 0, got 0.0$"),
        ({"confirm_share": 1.0}, r"^confirm_share must be in \[0, 1\), got 1.0$"),
        ({"coalesce_window_s": -0.1}, r"^coalesce_window_s must be >= 0, got -0.1$"),
        ({"min_coalesce_s": -1.0}, r"^min_coalesce_s must be >= 0 and max_credit_s > 0$"),
        ({"max_credit_s": 0.0}, r"^min_coalesce_s must be >= 0 and max_credit_s > 0$"),
    ],
)
def test_bad_parameters_are_named(kwargs: dict[str, float], message: str) -> None:
    params: dict[str, float] = {"burst": 1, "rate_per_s": 1.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        AdaptiveTokenBucket(**params)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_rate_per_s": 1.0},  # the floor may equal the ceiling (a fixed rate)
        {"confirm_share": 0.99},
        {"coalesce_window_s": 0.0},
        {"coalesce_window_s": 0.5},
        {"min_coalesce_s": 0.0},
    ],
)
def test_edge_parameters_are_accepted(kwargs: dict[str, float]) -> None:
    bucket = AdaptiveTokenBucket(burst=1, rate_per_s=1.0, **kwargs)  # type: ignore[arg-type]
    assert bucket.ceiling_per_s == 1.0


# --- taking tokens --------------------------------------------------------------------------


def test_a_waiter_waking_at_the_computed_instant_finds_its_token() -> None:
    """Refills are float sums: a token that is 1e-9 short still counts (the _EPS slack)."""
    clock = FakeClock(0.0)
    bucket = _bucket(clock, burst=1, rate=1.0)
    assert bucket.try_acquire()
    clock.t = 1.0 - 1e-9
    assert bucket.try_acquire()


async def test_queued_waiters_come_before_try_acquire() -> None:
    clock = FakeClock()
    bucket = _bucket(clock, burst=1, rate=1000.0)
    assert bucket.try_acquire()
    async with anyio.create_task_group() as tg:
        tg.start_soon(bucket.acquire)  # sleeps 1 ms for its token, holding the queue
        await anyio.wait_all_tasks_blocked()
        clock.t += 1.0  # a token is there now, but the queued waiter is first in line
        assert not bucket.try_acquire()
    assert bucket.tokens == pytest.approx(0.0)  # the waiter took it


# --- throttles ------------------------------------------------------------------------------


def test_three_throttles_in_a_row_confirm_whatever_the_share() -> None:
    """A run of throttles is a shortage's signature: with confirm_share 0.5 (far above the
    share three throttles make, 0.14), the third in a row is acted on."""
    clock = FakeClock()
    bucket = _bucket(clock, burst=50, rate=5.0, confirm_share=0.5)
    rates = []
    for _ in range(3):
        clock.t += 0.01
        rates.append(bucket.on_throttle())
    assert rates[:2] == [5.0] * 2
    assert rates[2] == pytest.approx(3.5)


def test_a_fresh_bucket_with_confirmation_ignores_one_throttle() -> None:
    clock = FakeClock()
    bucket = _bucket(clock, burst=50, rate=5.0, confirm_share=0.5)
    assert bucket.on_throttle() == 5.0
    assert bucket.tokens == 50


def test_a_share_that_reaches_the_threshold_confirms() -> None:
    clock = FakeClock()
    bucket = _bucket(clock, burst=50, rate=5.0, confirm_share=0.05)
    assert bucket.on_throttle() == pytest.approx(3.5)  # share 0.05 reaches 0.05


def test_a_request_sent_at_the_cut_instant_is_fresh_news() -> None:
    clock = FakeClock()
    bucket = _bucket(clock, burst=50, rate=5.0)
    cut_at = bucket.now()
    bucket.on_throttle()
    clock.t += 10.0  # past the coalescing window; the bucket refilled (10 s at 3.5/s)
    assert bucket.tokens == pytest.approx(35.0)
    assert bucket.on_throttle(sent_at=cut_at) == pytest.approx(3.5 * 0.7)
    assert bucket.tokens == 0


def test_a_configured_coalescing_window_is_used() -> None:
    clock = FakeClock()
    bucket = _bucket(clock, burst=50, rate=5.0, coalesce_window_s=5.0)
    bucket.on_throttle()
    clock.t += 3.0  # inside 5 s (outside the 1 s default): the same event
    assert bucket.on_throttle() == pytest.approx(3.5)
    clock.t += 2.5
    assert bucket.on_throttle() == pytest.approx(3.5 * 0.7)


def test_the_default_window_is_one_refill_interval_when_that_is_longer() -> None:
    """Default window: max(min_coalesce_s, 1 / rate) at the time of the cut (2 s at 0.5/s)."""
    clock = FakeClock()
    bucket = _bucket(clock, burst=5, rate=0.5, min_rate_per_s=0.01, min_coalesce_s=0.0)
    bucket.on_throttle()
    clock.t += 1.9
    assert bucket.on_throttle() == pytest.approx(0.35)  # same event
    clock.t += 0.2  # 2.1 s after the cut
    assert bucket.on_throttle() == pytest.approx(0.35 * 0.7)


# --- recovery --------------------------------------------------------------------------------


def test_successes_inside_the_window_do_not_recover_and_at_its_end_do() -> None:
    clock = FakeClock()
    bucket = _bucket(clock, burst=50, rate=5.0)  # window max(1 s, 0.2 s) = 1 s
    bucket.on_throttle()
    clock.t += 0.5
    bucket.on_success()
    assert bucket.rate_per_s == pytest.approx(3.5)
    clock.t += 0.5  # exactly at the window's end: a success after the cut, credited 0.5 s
    bucket.on_success()
    assert bucket.rate_per_s == pytest.approx(3.5 + 0.25 * 0.5)


def test_recovery_is_credited_per_second_of_successes() -> None:
    clock = FakeClock()
    bucket = _bucket(clock, burst=50, rate=5.0)  # recovery 5 * 0.05 = 0.25/s per second
    bucket.on_throttle()
    clock.t += 2.0
    bucket.on_success()  # 2 s after the cut: credit capped at 1 s
    after_first = bucket.rate_per_s
    assert after_first == pytest.approx(3.5 + 0.25)
    clock.t += 0.1
    bucket.on_success()
    assert bucket.rate_per_s == pytest.approx(after_first + 0.25 * 0.1)


# --- the unlimited bucket and the lane's limiter ---------------------------------------------


def test_unlimited_bucket_keeps_the_given_clock() -> None:
    clock = FakeClock(42.0)
    bucket = UnlimitedBucket(clock=clock)
    assert bucket.now() == 42.0  # the lane stamps sent_at with it
    assert bucket.tokens == math.inf and bucket.min_rate_per_s == math.inf
    assert bucket.on_success() is None


def test_limiter_passes_bucket_options_to_every_bucket() -> None:
    clock = FakeClock(7.0)
    limiter = Limiter.from_limits(
        {"CreateImage": (50, 5.0), "DescribeImages": (100, 20.0)},
        clock=clock,
        decrease_factor=0.5,
    )
    for action, rate in (("CreateImage", 5.0), ("DescribeImages", 20.0)):
        bucket = limiter.bucket(action)
        assert bucket.now() == 7.0
        assert bucket.on_throttle() == pytest.approx(rate * 0.5)


def test_repr_shows_the_current_rate() -> None:
    clock = FakeClock()
    bucket = _bucket(clock, burst=50, rate=5.0)
    bucket.on_throttle()
    assert repr(bucket) == "AdaptiveTokenBucket(burst=50, rate_per_s=3.5, ceiling_per_s=5)"
