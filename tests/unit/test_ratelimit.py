"""Adaptive token buckets: accounting (fake clock, property-based) and real-time async behaviour."""

from __future__ import annotations

import math
import time

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetimage.engine.bucket import AdaptiveTokenBucket
from fleetimage.engine.limiter import Limiter, UnlimitedBucket

EPS = 1e-6


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _bucket(
    clock: FakeClock, burst: int = 50, rate: float = 5.0, **kw: float
) -> AdaptiveTokenBucket:
    return AdaptiveTokenBucket(burst=burst, rate_per_s=rate, clock=clock, **kw)


def _admit_fifo(
    bucket: AdaptiveTokenBucket, clock: FakeClock, arrivals: list[float]
) -> list[float]:
    """Simulate acquire() for requests arriving at ``arrivals`` (sorted): FIFO, exact sleeps."""
    admitted: list[float] = []
    now = clock.t
    for arrival in arrivals:
        now = max(now, arrival)
        while True:
            clock.t = now
            wait = bucket._take(now)
            if wait == 0.0:
                admitted.append(now)
                break
            assert wait > 0
            now += wait
    return admitted


def _assert_within_bucket(times: list[float], burst: int, rate: float) -> None:
    """No window [t_i, t_j] admits more than burst + rate * (t_j - t_i) requests."""
    for i in range(len(times)):
        for j in range(i, len(times)):
            assert j - i + 1 <= burst + rate * (times[j] - times[i]) + EPS, (i, j)


# --- accounting: the server's bound, and precision --------------------------------------------

params = st.tuples(st.integers(1, 20), st.floats(0.5, 100.0))
gaps = st.lists(st.floats(0.0, 0.5), min_size=1, max_size=120)


@settings(max_examples=200, deadline=None)
@given(params, gaps)
def test_admissions_never_exceed_server_bucket(p: tuple[int, float], gap_list: list[float]) -> None:
    burst, rate = p
    clock = FakeClock()
    bucket = _bucket(clock, burst=burst, rate=rate)
    arrivals = [clock.t + sum(gap_list[: i + 1]) for i in range(len(gap_list))]
    admitted = _admit_fifo(bucket, clock, arrivals)
    assert len(admitted) == len(arrivals)
    _assert_within_bucket(admitted, burst, rate)


@settings(max_examples=200, deadline=None)
@given(
    params,
    st.lists(
        st.tuples(st.floats(0.0, 2.0), st.sampled_from(["take", "take", "throttle", "success"])),
        max_size=150,
    ),
)
def test_bound_holds_with_adaptation_and_try_acquire(
    p: tuple[int, float], events: list[tuple[float, str]]
) -> None:
    burst, rate = p
    clock = FakeClock()
    bucket = _bucket(clock, burst=burst, rate=rate)
    admitted: list[float] = []
    for gap, kind in events:
        clock.t += gap
        if kind == "take":
            if bucket.try_acquire():
                admitted.append(clock.t)
        elif kind == "throttle":
            bucket.on_throttle()
        else:
            bucket.on_success()
        assert bucket.min_rate_per_s - EPS <= bucket.rate_per_s <= bucket.ceiling_per_s + EPS
        assert -EPS <= bucket.tokens <= burst + EPS
    _assert_within_bucket(admitted, burst, rate)


@settings(max_examples=100, deadline=None)
@given(params, st.integers(1, 500))
def test_flat_out_gets_the_full_rate(p: tuple[int, float], n: int) -> None:
    """n requests at once finish exactly when the server bucket allows: no rounding losses."""
    burst, rate = p
    clock = FakeClock()
    start = clock.t
    bucket = _bucket(clock, burst=burst, rate=rate)
    admitted = _admit_fifo(bucket, clock, [start] * n)
    ideal = max(0, n - burst) / rate
    assert admitted[-1] - start == pytest.approx(ideal, abs=1e-6)


# --- adaptation ---------------------------------------------------------------------------------


def test_throttle_empties_bucket_and_cuts_rate() -> None:
    clock = FakeClock()
    bucket = _bucket(clock, burst=50, rate=5.0)
    assert bucket.tokens == 50
    assert bucket.on_throttle() == pytest.approx(3.5)
    assert bucket.tokens == 0
    assert not bucket.try_acquire()


@given(st.integers(2, 200), st.floats(0.0, 0.99))
def test_simultaneous_throttles_count_as_one_cut(k: int, spread_s: float) -> None:
    clock = FakeClock()
    bucket = _bucket(clock, burst=50, rate=5.0)
    start = clock.t
    for i in range(k):
        clock.t = start + spread_s * i / k  # all within the 1 s coalescing window
        bucket.on_throttle()
    assert bucket.rate_per_s == pytest.approx(3.5)


def test_throttles_after_window_cut_again_unless_sent_before_the_cut() -> None:
    clock = FakeClock()
    bucket = _bucket(clock, burst=50, rate=5.0)
    sent = bucket.now()
    clock.t += 0.5
    bucket.on_throttle()  # cut 1
    clock.t += 5.0  # a slow CreateImage sent before the cut answers late: same event
    assert bucket.on_throttle(sent_at=sent) == pytest.approx(3.5)
    assert bucket.on_throttle(sent_at=bucket.now()) == pytest.approx(3.5 * 0.7)  # fresh: cut 2


@given(st.integers(1, 60))
def test_rate_never_below_min(cuts: int) -> None:
    clock = FakeClock()
    bucket = _bucket(clock, burst=10, rate=10.0, min_rate_per_s=2.0)
    for _ in range(cuts):
        clock.t += 10.0
        bucket.on_throttle()
    assert bucket.rate_per_s == pytest.approx(max(2.0, 10.0 * 0.7**cuts))


@settings(deadline=None)
@given(st.integers(1, 30), st.floats(0.01, 1.0))
def test_rate_recovers_to_ceiling_after_successes(cuts: int, success_gap_s: float) -> None:
    clock = FakeClock()
    bucket = _bucket(clock, burst=50, rate=5.0)  # min 0.5/s, recovery 0.25/s per second
    for _ in range(cuts):
        clock.t += 2.0
        bucket.on_throttle()
    low = bucket.rate_per_s
    assert low < 5.0
    # Successes right after the cut are echoes of requests sent before it: no increase.
    bucket.on_success()
    assert bucket.rate_per_s == low
    clock.t += 1.0
    bucket.on_success()
    previous = bucket.rate_per_s
    # (5 - 0.5) / 0.25 = 18 s of successes is the worst case; allow some margin. Cuts that
    # repeat are a lasting shortage: the climb above the last one is slow for 60 s.
    for _ in range(math.ceil((25.0 + (60.0 if cuts > 1 else 0.0)) / success_gap_s)):
        clock.t += success_gap_s
        bucket.on_success()
        assert previous <= bucket.rate_per_s <= 5.0
        previous = bucket.rate_per_s
    assert bucket.rate_per_s == 5.0


def test_idle_time_does_not_count_as_success() -> None:
    clock = FakeClock()
    bucket = _bucket(clock, burst=50, rate=5.0)
    bucket.on_throttle()
    clock.t += 2.0
    bucket.on_success()
    clock.t += 3600.0  # an hour of silence, then one success: at most 1 s of credit
    before = bucket.rate_per_s
    bucket.on_success()
    assert bucket.rate_per_s <= before + 0.25 + EPS


def test_refill_is_capped_at_burst_and_clock_may_stand_still() -> None:
    clock = FakeClock()
    bucket = _bucket(clock, burst=3, rate=100.0)
    assert [bucket.try_acquire() for _ in range(4)] == [True, True, True, False]
    clock.t += 100.0
    assert bucket.tokens == 3
    clock.t -= 1.0  # a misbehaving clock adds nothing and breaks nothing
    assert bucket.tokens == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"burst": 0, "rate_per_s": 1.0},
        {"burst": 1, "rate_per_s": 0.0},
        {"burst": 1, "rate_per_s": math.inf},
        {"burst": 1, "rate_per_s": 1.0, "min_rate_per_s": 2.0},
        {"burst": 1, "rate_per_s": 1.0, "decrease_factor": 1.0},
        {"burst": 1, "rate_per_s": 1.0, "recovery_per_s": 0.0},
    ],
)
def test_bad_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AdaptiveTokenBucket(**kwargs)  # type: ignore[arg-type]


# --- Limiter ------------------------------------------------------------------------------------


def test_limiter_from_limits() -> None:
    clock = FakeClock()
    limiter = Limiter.from_limits(
        {"CreateImage": (50, 5.0), "DescribeImages": (100, 20.0)}, clock=clock
    )
    assert limiter.actions == ("CreateImage", "DescribeImages")
    bucket = limiter.bucket("CreateImage")
    assert (bucket.burst, bucket.ceiling_per_s) == (50, 5.0)
    assert limiter.bucket("CreateImage") is bucket
    other = limiter.bucket("AssumeRole")
    assert isinstance(other, UnlimitedBucket)
    assert other.try_acquire() and other.rate_per_s == math.inf
    assert other.on_throttle() == math.inf


# --- real time (generous bounds only) ---------------------------------------------------------


async def test_acquire_paces_in_real_time() -> None:
    bucket = AdaptiveTokenBucket(burst=5, rate_per_s=50.0)
    start = time.monotonic()
    for _ in range(15):
        await bucket.acquire()
    elapsed = time.monotonic() - start
    # ideal: (15 - 5) / 50 = 0.2 s. The lower bound is the limiter's promise (never faster
    # than the refill; a loaded machine only adds); the upper one is 10x the ideal, so only
    # a limiter that sleeps far too long fails it. Exact pacing is pinned on a fake clock.
    assert 0.2 - 1e-3 <= elapsed < 2.0


async def test_unlimited_acquire_returns_at_once() -> None:
    bucket = Limiter({}).bucket("Anything")
    with anyio.fail_after(1.0):
        for _ in range(1000):
            await bucket.acquire()


async def test_waiters_are_served_in_arrival_order() -> None:
    bucket = AdaptiveTokenBucket(burst=1, rate_per_s=100.0)
    order: list[int] = []

    async def worker(i: int) -> None:
        await bucket.acquire()
        order.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(worker, i)
            await anyio.sleep(0.001)  # make the arrival order unambiguous
    assert order == list(range(10))


async def test_cancelled_waiter_consumes_nothing() -> None:
    bucket = AdaptiveTokenBucket(burst=1, rate_per_s=10.0)
    await bucket.acquire()  # bucket now empty; the next token is due in 0.1 s
    with anyio.move_on_after(0.02) as scope:
        await bucket.acquire()
    assert scope.cancelled_caught
    assert 0.0 <= bucket.tokens < 1.0
    start = time.monotonic()
    await bucket.acquire()  # the token the cancelled waiter did not take
    assert time.monotonic() - start < 0.5
    assert not bucket.try_acquire()


async def test_throttle_while_waiting_delays_the_waiter() -> None:
    bucket = AdaptiveTokenBucket(burst=1, rate_per_s=20.0)
    await bucket.acquire()
    done: list[float] = []

    async def waiter() -> None:
        await bucket.acquire()
        done.append(time.monotonic())

    start = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.sleep(0.04)
        bucket.on_throttle()  # empties the bucket and cuts to 14/s: the waiter re-waits
    assert done and done[0] - start >= 0.04 + 1 / 14 - 0.02


def test_isolated_throttles_are_not_acted_on_when_confirmation_is_asked() -> None:
    """One throttle in twenty answers (a hiccup) keeps the burst and the rate."""
    clock = FakeClock()
    bucket = _bucket(clock, burst=50, rate=5.0, confirm_share=0.2)
    for n in range(200):
        clock.t += 0.2
        if n % 20 == 0:
            bucket.on_throttle()
        else:
            bucket.on_success()
    assert bucket.rate_per_s == 5.0
    assert bucket.tokens == 50


def test_throttles_that_keep_coming_are_acted_on() -> None:
    """A neighbour draining the bucket: a third of the answers throttle, so we cut."""
    clock = FakeClock()
    bucket = _bucket(clock, burst=50, rate=5.0, confirm_share=0.2)
    cut_at = None
    for n in range(30):
        clock.t += 0.2
        if n % 3 == 0:
            if bucket.on_throttle() < 5.0 and cut_at is None:
                cut_at = n
        else:
            bucket.on_success()
    assert cut_at is not None and cut_at <= 15  # within a handful (six) of throttles
    assert bucket.rate_per_s < 5.0


@given(st.integers(3, 10))
def test_consecutive_throttles_always_confirm(k: int) -> None:
    clock = FakeClock()
    bucket = _bucket(clock, burst=50, rate=5.0, confirm_share=0.2)
    for _ in range(k):
        bucket.on_throttle()
    assert bucket.rate_per_s < 5.0 and bucket.tokens == 0
