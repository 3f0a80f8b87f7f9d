"""The limiter against a server that refills in whole steps (AWS: a second's tokens at once,
every second, at a phase the client cannot see), on a fake clock.

The server here is the mock's own TokenBucket (``period_s`` > 0 is its per-second mode). The
old continuous refill runs up to one step ahead of it; ``refill_period_s`` keeps the client
below it for any phase, crediting a step's tokens at once a period after it last knew the
server's level and every period after: less than one period behind the server's own steps
each time the bucket runs dry, none when the server's steps fall with the client's.
"""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fleetimage.engine.bucket import _STEP_SLACK_S as SLACK
from fleetimage.engine.bucket import AdaptiveTokenBucket
from fleetimage.mock.buckets import TokenBucket

START = 1000.0


class FakeClock:
    def __init__(self, t: float = START) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _taken(
    clock: FakeClock, n: int, *, burst: int = 50, rate: float = 5.0, period: float = 1.0
) -> AdaptiveTokenBucket:
    """A bucket at t=clock.t with ``n`` tokens taken at once (each one there to take), their
    requests heard of at once."""
    client = AdaptiveTokenBucket(burst=burst, rate_per_s=rate, refill_period_s=period, clock=clock)
    for _ in range(n):
        assert client.try_acquire()
        client.on_returned()
    return client


def _server(burst: int, rate: float, period: float, phase: float) -> TokenBucket:
    """A full server bucket whose steps fall at ``START + phase * period + k * period``."""
    return TokenBucket(burst, rate, burst, START + phase * period - 100 * period, period)


def _throttled(
    client: AdaptiveTokenBucket, clock: FakeClock, server: TokenBucket, gaps: list[float]
) -> list[float]:
    """Requests arrive after ``gaps``; each waits for its token (exact sleeps) and is sent
    the instant it gets one (no latency), and heard of at once (``on_returned``: nothing
    is on the way, so only the steps' phase is at stake here). Returns the send times the
    server throttled."""
    throttled: list[float] = []
    now = clock.t
    for gap in gaps:
        now += gap
        while True:
            clock.t = now
            wait = client._take(now)
            if wait == 0.0:
                break
            assert wait > 0
            now += wait
        if not server.try_take(now):
            throttled.append(now)
        client.on_returned()
    return throttled


# --- the cause: a continuous refill runs ahead of a stepped one ------------------------------


def test_a_continuous_refill_is_throttled_by_a_stepped_server_right_after_its_burst() -> None:
    """Issue 16's throttles: the bucket drained, the continuous client has its next token
    1/rate later; the server's next step may be most of a second away."""
    clock = FakeClock()
    client = AdaptiveTokenBucket(burst=50, rate_per_s=5.0, clock=clock)  # continuous
    server = _server(50, 5.0, 1.0, phase=0.9)
    assert len(_throttled(client, clock, server, [0.0] * 60)) >= 4


def test_the_stepped_refill_is_never_throttled_in_the_same_case() -> None:
    clock = FakeClock()
    client = AdaptiveTokenBucket(burst=50, rate_per_s=5.0, refill_period_s=1.0, clock=clock)
    server = _server(50, 5.0, 1.0, phase=0.9)
    assert _throttled(client, clock, server, [0.0] * 60) == []


def test_a_server_step_capped_away_near_full_is_not_counted() -> None:
    """Why refill stops one step short of full: here the client sits near full while the
    server, full, caps a step away; a client that counted that refill would then drain
    faster than the server (the one-period lag alone is throttled on this sequence)."""
    clock = FakeClock()
    client = AdaptiveTokenBucket(burst=4, rate_per_s=2.0, refill_period_s=1.0, clock=clock)
    server = _server(4, 2.0, 1.0, phase=0.25)
    gaps = [0.0, 0.25, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert _throttled(client, clock, server, gaps) == []


# --- the rule: never ahead of the server, whatever its phase ---------------------------------

gap_lists = st.lists(
    st.one_of(st.just(0.0), st.floats(0.0, 0.3), st.floats(0.0, 3.0)), min_size=1, max_size=150
)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(2, 60),
    st.floats(0.2, 40.0),
    st.floats(0.05, 2.0),
    st.floats(0.0, 1.0, exclude_max=True),
    gap_lists,
)
# Exactly two steps, where 2 * rate * period rounds to 3.0000000000000004: once refilled
# continuously (as if under two steps), and throttled.
@example(3, 2.0, 1.35546875, 0.0, [0.0, 0.0, 0.0, 0.0])
def test_never_throttled_by_a_stepped_server_of_any_phase(
    burst: int, rate: float, period: float, phase: float, gaps: list[float]
) -> None:
    """Bursts, flat-out runs, idle spells that refill the bucket, a few requests near full:
    the server always has the token. AWS's buckets hold at least two steps (CreateImage 50
    and 5/s); the limiter assumes as much."""
    rate = min(rate, burst / (2 * period))
    clock = FakeClock()
    client = AdaptiveTokenBucket(burst=burst, rate_per_s=rate, refill_period_s=period, clock=clock)
    assert _throttled(client, clock, _server(burst, rate, period, phase), gaps) == []


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 60), st.floats(0.2, 40.0), st.floats(0.05, 2.0), gap_lists)
def test_never_throttled_by_a_continuous_server_either(
    burst: int, rate: float, period: float, gaps: list[float]
) -> None:
    clock = FakeClock()
    client = AdaptiveTokenBucket(burst=burst, rate_per_s=rate, refill_period_s=period, clock=clock)
    server = TokenBucket(burst, rate, burst, START, 0.0)
    assert _throttled(client, clock, server, gaps) == []


_CPU, _LATENCY = 0.002, 0.001  # s: a request's send after the one before it; one way


def _token_at(
    client: AdaptiveTokenBucket, clock: FakeClock, now: float, heard: list[float]
) -> float:
    """When a request that wants to go at ``now`` has its token (exact sleeps), the answers
    due meanwhile heard at their times (``heard``: when each will be; those heard are
    removed)."""
    while True:
        for t in sorted(a for a in heard if a <= now):
            clock.t = t
            client.on_success()
            heard.remove(t)
        clock.t = now
        wait = client._take(now)
        if wait == 0.0:
            return now
        now = min(now + wait, min((a for a in heard if a > now), default=math.inf))


def _flat_out_through_a_made_server(
    client: AdaptiveTokenBucket, clock: FakeClock, n: int, first_send: float
) -> int:
    """``n`` requests flat out. Each is sent ``_CPU`` after its token is taken and after the
    request before it (the event loop sends one at a time), the first ``first_send`` after
    its take (a new connection); each arrives ``_LATENCY`` after its send and is answered
    ``_LATENCY`` after that. The server's bucket is made full when the first request
    arrives, its steps counted from then, as the mock's are. Returns the throttled count."""
    answers: list[float] = []
    server: TokenBucket | None = None
    throttled, now, sent = 0, clock.t, -math.inf
    for k in range(n):
        now = _token_at(client, clock, now, answers)
        sent = now + first_send if k == 0 else max(now, sent) + _CPU
        arrival = sent + _LATENCY
        if server is None:
            server = TokenBucket(50, 5.0, 50, arrival, 1.0)
        if server.try_take(arrival):
            answers.append(arrival + _LATENCY)
        else:
            throttled += 1
    return throttled


@pytest.mark.parametrize("first_send", [0.02, 0.3])
def test_a_server_bucket_made_by_the_first_request_is_never_run_ahead_of(
    first_send: float,
) -> None:
    """The whole burst is taken before the first request has even arrived, and the server's
    steps count from that arrival: a first step a period after the burst would come before the
    server's. It comes a period after the answer of its last token."""
    clock = FakeClock()
    client = AdaptiveTokenBucket(burst=50, rate_per_s=5.0, refill_period_s=1.0, clock=clock)
    assert _flat_out_through_a_made_server(client, clock, 120, first_send) == 0
    # The same client crediting its steps whatever it has heard:
    clock = FakeClock()
    client = AdaptiveTokenBucket(burst=50, rate_per_s=5.0, refill_period_s=1.0, clock=clock)
    client._heard._margin = 1e9
    assert _flat_out_through_a_made_server(client, clock, 120, first_send) > 0


def _through_the_network(
    client: AdaptiveTokenBucket,
    clock: FakeClock,
    gaps: list[float],
    ways: list[tuple[float, float]],
    server: TokenBucket | None,
) -> int:
    """Requests want to go after ``gaps``; each is sent when it has its token, arrives
    ``ways[k][0]`` later and is heard of ``ways[k][1]`` after that: arrivals and answers in
    any order, a host that stalls, a slow network. ``server`` None: made full by
    the first arrival, its steps counted from then (the mock's). Returns the throttled count
    (the server's decisions replayed in arrival order)."""
    heard: list[float] = []
    arrivals: list[float] = []
    now = clock.t
    for k, gap in enumerate(gaps):
        now += gap
        now = _token_at(client, clock, now, heard)
        up, down = ways[k]
        arrivals.append(now + up)
        heard.append(now + up + down)
    arrivals.sort()
    if server is None:
        server = TokenBucket(50, 5.0, 50, arrivals[0], 1.0)
    return sum(not server.try_take(t) for t in arrivals)


_way = st.sampled_from([0.0, 0.0, 0.01, 0.3, 1.0, 1.5])  # s: to the server, and back


_bursts = st.builds(  # a few of the burst's requests arrive at once, the rest late
    lambda fast, late, back: [(0.0, back)] * fast + [(late, back)] * (50 - fast),
    st.integers(0, 10),
    st.sampled_from([0.3, 1.0, 1.5]),
    _way,
)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(_bursts, st.lists(st.tuples(_way, _way), min_size=50, max_size=50)),
    st.lists(st.sampled_from([0.0, 0.0, 0.0, 0.01, 0.5, 2.0]), max_size=150),
    st.lists(st.tuples(_way, _way), min_size=1, max_size=20),
    st.one_of(st.none(), st.floats(0.0, 1.0, exclude_max=True)),
)
def test_never_throttled_whatever_the_way_takes(
    burst: list[tuple[float, float]],
    gaps: list[float],
    ways: list[tuple[float, float]],
    phase: float | None,
) -> None:
    """A burst whose requests each take their own way, requests at any pace on ways of any
    length, then a run flat out: no delay on the way and no stall of the host outruns the
    server, made by our first request or full before it at any phase. (Each of the two
    mistakes the tests below show is found by this one only now and then.)"""
    clock = FakeClock()
    client = AdaptiveTokenBucket(burst=50, rate_per_s=5.0, refill_period_s=1.0, clock=clock)
    server = None if phase is None else _server(50, 5.0, 1.0, phase)
    gaps = [0.0] * 50 + gaps + [0.0] * 100
    ways = burst + (ways * 150)[: len(gaps) - 150] + [(0.0, 0.01)] * 100
    assert _through_the_network(client, clock, gaps, ways, server) == 0


def test_a_burst_that_arrives_over_more_than_a_period_is_waited_for() -> None:
    """Three requests arrive at once, the other 47 of the burst 1.5 periods later (a stalled
    host): the server's first step added only three tokens. A client that credits its steps
    whatever it has heard is throttled; ours waits for the answers."""
    ways = [(0.0, 0.01)] * 3 + [(1.5, 0.01)] * 47 + [(0.0, 0.01)] * 100
    clock = FakeClock()
    client = AdaptiveTokenBucket(burst=50, rate_per_s=5.0, refill_period_s=1.0, clock=clock)
    assert _through_the_network(client, clock, [0.0] * 150, ways, None) == 0
    clock = FakeClock()
    client = AdaptiveTokenBucket(burst=50, rate_per_s=5.0, refill_period_s=1.0, clock=clock)
    client._heard._margin = 1e9
    assert _through_the_network(client, clock, [0.0] * 150, ways, None) > 0


def test_a_quiet_period_waits_for_the_requests_still_on_the_way() -> None:
    """At the top step, a request sent at t=2 is on the way until t=4: the server may still
    be full when it takes its token, so our bucket is not topped up before a quiet period
    after it is heard of. Topped up at t=3 instead, the run flat out after it is throttled."""
    clock = FakeClock(0.0)
    client = _taken(clock, 10)
    clock.t = 2.0 + SLACK
    assert client.tokens == 50.0
    assert client.try_acquire()
    clock.t = 4.0
    assert client.tokens == pytest.approx(49.0)
    client.on_returned()
    clock.t = 4.99
    assert client.tokens == pytest.approx(49.0)
    clock.t = 5.0 + SLACK
    assert client.tokens == 50.0
    # the case the broad test above once found: sparse requests on a long way, then flat out
    gaps = [0.0] * 51 + [0.5] + [2.0] * 6 + [0.0] * 100
    ways = [(0.0, 0.0)] * 50 + [(1.5, 0.0)] * 8 + [(0.0, 0.01)] * 100
    clock = FakeClock()
    client = AdaptiveTokenBucket(burst=50, rate_per_s=5.0, refill_period_s=1.0, clock=clock)
    assert _through_the_network(client, clock, gaps, ways, None) == 0


@pytest.mark.parametrize("period", [1.0, 0.0])
def test_only_about_a_period_of_answers_is_kept(period: float) -> None:
    """A long run keeps the times of the answers it may still wait for, not of every one."""
    clock = FakeClock()
    client = AdaptiveTokenBucket(burst=50, rate_per_s=5.0, refill_period_s=period, clock=clock)
    server = TokenBucket(50, 5.0, 50, START, period)
    assert _through_the_network(client, clock, [0.0] * 2000, [(0.05, 0.05)] * 2000, server) == 0
    assert len(client._heard._times) <= 10  # 5 a second, heard within 0.1 s


# --- the price: at most one period per run-dry, never per request ------------------------------


@pytest.mark.parametrize("n", [50, 51, 55, 56, 500])
def test_flat_out_keeps_the_servers_own_steps_when_they_fall_with_ours(n: int) -> None:
    """A server whose steps fall a whole period after the burst (the phase the client
    assumes): the client's steps come with the server's, each a period's tokens at once, and
    the n-th token is taken when the server has it: ceil((n - 50) / 5) s after the burst."""
    clock = FakeClock()
    client = AdaptiveTokenBucket(burst=50, rate_per_s=5.0, refill_period_s=1.0, clock=clock)
    server = _server(50, 5.0, 1.0, phase=0.0)
    gaps = [0.0] * n
    assert _throttled(client, clock, server, gaps) == []
    assert clock.t - START == pytest.approx(math.ceil(max(0, n - 50) / 5.0), abs=2 * SLACK)


@pytest.mark.parametrize("phase", [0.1, 0.25, 0.5, 0.9, 0.999])
def test_flat_out_is_less_than_one_period_behind_a_server_of_any_phase(phase: float) -> None:
    """The server's first step comes ``phase`` of a period after the burst; the client's a
    whole period after it (it cannot see the phase): every later token is taken (1 - phase)
    of a period after the server has it, the price of never running ahead of it."""
    clock = FakeClock()
    client = AdaptiveTokenBucket(burst=50, rate_per_s=5.0, refill_period_s=1.0, clock=clock)
    server = _server(50, 5.0, 1.0, phase=phase)
    assert _throttled(client, clock, server, [0.0] * 500) == []
    servers_own = phase + math.ceil(450 / 5.0) - 1.0  # its 90th step after the burst
    assert clock.t - START - servers_own == pytest.approx(1.0 - phase, abs=2 * SLACK)


def test_refill_stops_a_step_short_of_full_until_a_quiet_period_has_passed() -> None:
    """40 left at t=0: a step at t=1 brings it to 45, one 5-token step short of full; the last
    step is added once a whole period passed without a take (t=2). A take that leaves the
    level in that top step starts the quiet period anew, and so does hearing of its request:
    it may have arrived just then."""
    clock = FakeClock(0.0)
    client = _taken(clock, 10)
    clock.t = 0.99
    assert client.tokens == pytest.approx(40.0)  # nothing credited within the period
    clock.t = 1.0 + SLACK  # (a step is credited a hair after its instant: see bucket.py)
    assert client.tokens == pytest.approx(45.0)  # a step's tokens at once
    clock.t = 1.99
    assert client.tokens == pytest.approx(45.0)
    clock.t = 2.0 + SLACK
    assert client.tokens == 50.0
    assert client.try_acquire()  # 49: still in the top step, quiet again from t=2
    clock.t = 2.5
    client.on_returned()  # heard of at 2.5: it arrived, at the latest, by then
    clock.t = 3.49
    assert client.tokens == pytest.approx(49.0)
    clock.t = 3.5 + SLACK
    assert client.tokens == 50.0


def test_a_step_at_a_cut_rate_brings_that_rates_share_of_a_period() -> None:
    """After a cut to 3.5/s each step brings 3.5 tokens; a token short of one waits for the
    step that completes it."""
    clock = FakeClock(0.0)
    client = _taken(clock, 50)
    client.on_throttle()  # (a cut, and the server is empty now: the next step at t=1)
    assert client.rate_per_s == pytest.approx(3.5)
    assert client._take(0.0) == pytest.approx(1.0 + SLACK)
    clock.t = 1.0 + SLACK
    assert client.tokens == pytest.approx(3.5)
    for _ in range(3):
        assert client.try_acquire()
    assert client._take(clock.t) == pytest.approx(1.0)  # 0.5 left: the step at t=2 completes it
    clock.t = 2.0 + SLACK
    assert client.tokens == pytest.approx(4.0)


def test_after_idle_the_whole_burst_is_back() -> None:
    clock = FakeClock(0.0)
    client = _taken(clock, 50)
    clock.t = 60.0
    assert sum(client.try_acquire() for _ in range(51)) == 50


def test_a_fresh_throttle_holds_the_refill_for_a_period() -> None:
    """The server's bucket is empty now and its next step may be a second away."""
    clock = FakeClock(0.0)
    client = _taken(clock, 50)
    clock.t = 3.0 + SLACK
    assert client.tokens == pytest.approx(15.0)  # the steps at t=1, 2 and 3
    assert client.on_throttle() == pytest.approx(3.5)
    assert client.tokens == 0
    assert client._take(clock.t) == pytest.approx(1.0 + SLACK)  # the next: a period from now
    clock.t = 3.99
    assert not client.try_acquire()
    clock.t = 4.0 + 2 * SLACK
    assert client.try_acquire()


def test_zero_period_is_the_continuous_bucket() -> None:
    clock = FakeClock(0.0)
    client = _taken(clock, 5, burst=5, period=0.0)
    clock.t = 0.2
    assert client.try_acquire()
    assert client.refill_period_s == 0.0


def test_a_burst_of_less_than_two_steps_refills_continuously_at_its_rate() -> None:
    """A custom limit whose burst holds less than two steps of its rate (burst 1 at 4/s: not
    an AWS bucket) is not held back a period at a time, which would cost it most of its
    rate: it is the continuous bucket, and takes its rate."""
    clock = FakeClock(0.0)
    client = AdaptiveTokenBucket(burst=1, rate_per_s=4.0, refill_period_s=1.0, clock=clock)
    taken = 0
    while clock.t < 10.0:
        wait = client._take(clock.t)
        if wait == 0.0:
            taken += 1
        else:
            clock.t += wait
    assert 40 <= taken <= 42  # the burst, then 4 a second for 10 s
    big = _taken(clock, 7, burst=7, rate=900.0)
    clock.t += 0.01
    assert big.tokens == 7.0  # 9 tokens' refill, capped at the burst, not held for a period


@pytest.mark.parametrize("period", [-0.1, float("inf"), float("nan")])
def test_bad_periods_are_refused(period: float) -> None:
    with pytest.raises(ValueError, match=r"^refill_period_s must be a finite number >= 0"):
        AdaptiveTokenBucket(burst=1, rate_per_s=1.0, refill_period_s=period)


async def test_acquire_waits_out_the_period_in_real_time() -> None:
    bucket = AdaptiveTokenBucket(burst=10, rate_per_s=50.0, refill_period_s=0.1)
    start = time.monotonic()
    for _ in range(20):
        await bucket.acquire()
        bucket.on_returned()  # heard of at once
    elapsed = time.monotonic() - start
    # ideal: two steps of 5 tokens, at 0.1 and 0.2 s; the lower bound is the promise, the upper
    # only catches a limiter that sleeps far too long (exact pacing is pinned on the fake clock).
    assert 0.2 - 1e-3 <= elapsed < 3.0
