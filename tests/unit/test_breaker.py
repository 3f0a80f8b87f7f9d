"""The lane circuit breaker, on an injected clock: no real sleeps, no timed assertions."""

from __future__ import annotations

import random

import anyio
import anyio.lowlevel
import pytest

from fleetimage.core.errors import AwsError, ErrorKind
from fleetimage.core.models import BreakerState, LaneKey
from fleetimage.engine.breaker import Breaker, LaneOutage, Ticket

LANE = LaneKey("111111111111", "eu-west-1")


class FakeTime:
    """A clock that only moves when the breaker sleeps (or a test says so)."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds
        await anyio.lowlevel.checkpoint()


def make(
    time: FakeTime,
    changes: list[tuple[BreakerState, str, str]],
    *,
    failures: int = 3,
    cooldown_s: float = 1.0,
    max_cooldown_s: float = 8.0,
    max_outage_s: float = 100.0,
    linger_s: float = 30.0,
) -> Breaker:
    async def on_change(state: BreakerState, reason: str, error: AwsError | None) -> None:
        changes.append((state, reason, error.code if error else ""))

    return Breaker(
        LANE,
        failures=failures,
        cooldown_s=cooldown_s,
        max_cooldown_s=max_cooldown_s,
        max_outage_s=max_outage_s,
        linger_s=linger_s,
        on_change=on_change,
        clock=time,
        sleep=time.sleep,
        rng=random.Random(7),
    )


def unavailable(action: str = "CreateImage") -> AwsError:
    return AwsError("Unavailable", "try later", action=action, http_status=503)


def states(changes: list[tuple[BreakerState, str, str]]) -> list[BreakerState]:
    return [c[0] for c in changes]


async def fail(breaker: Breaker, action: str = "CreateImage", n: int = 1) -> None:
    for _ in range(n):
        ticket = await breaker.admit(action)
        await breaker.record(ticket, unavailable(action))


async def test_opens_after_failures_in_a_row_of_one_action() -> None:
    time, changes = FakeTime(), []
    breaker = make(time, changes)
    await fail(breaker, n=2)
    ok = await breaker.admit("DescribeImages")
    await breaker.record(ok, None)  # another action's success does not vouch for CreateImage
    assert breaker.state is BreakerState.CLOSED
    await fail(breaker)
    assert breaker.state is BreakerState.OPEN
    assert changes[0][0] is BreakerState.OPEN and changes[0][2] == "Unavailable"
    assert "3 CreateImage requests in a row failed" in changes[0][1]


async def test_a_success_resets_the_streak() -> None:
    time, changes = FakeTime(), []
    breaker = make(time, changes)
    for _ in range(5):
        await fail(breaker, n=2)
        ticket = await breaker.admit("CreateImage")
        await breaker.record(ticket, None)
    assert breaker.state is BreakerState.CLOSED and changes == []


async def test_answers_about_the_request_and_throttles_count_as_answers() -> None:
    time, changes = FakeTime(), []
    breaker = make(time, changes)
    answers = [
        AwsError("InvalidParameterValue", "bad", action="CreateImage", http_status=400),
        AwsError("RequestLimitExceeded", "slow down", action="CreateImage", http_status=503),
        AwsError("ConcurrentSnapshotLimitExceeded", "later", action="CreateImage", http_status=400),
    ]
    for answer in answers:
        await fail(breaker, n=2)
        ticket = await breaker.admit("CreateImage")
        await breaker.record(ticket, answer)
    assert breaker.state is BreakerState.CLOSED and changes == []


async def test_timeouts_and_resets_count_as_failures() -> None:
    time, changes = FakeTime(), []
    breaker = make(time, changes)
    for code in ("ReadTimeoutError", "ConnectionResetError", "ConnectTimeout"):
        kind = ErrorKind.TRANSIENT if code == "ConnectTimeout" else ErrorKind.AMBIGUOUS
        ticket = await breaker.admit("CreateImage")
        await breaker.record(ticket, AwsError(code, "x", action="CreateImage", kind=kind))
    assert breaker.state is BreakerState.OPEN


async def test_open_pauses_then_one_probe_then_closed() -> None:
    time, changes = FakeTime(), []
    breaker = make(time, changes)
    await fail(breaker, n=3)
    opened_at = time.t
    probe = await breaker.admit("CreateImage")  # waits out the cool-down on the fake clock
    assert probe.probe and breaker.state is BreakerState.HALF_OPEN
    assert 0.5 <= time.t - opened_at <= 1.0  # the first cool-down, jittered in [c/2, c]

    admitted: list[Ticket] = []

    async def queued() -> None:
        admitted.append(await breaker.admit("CreateImage"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(queued)
        tg.start_soon(queued)
        for _ in range(10):
            await anyio.lowlevel.checkpoint()
        assert admitted == []  # one request at a time while half-open
        await breaker.record(probe, None)
    assert breaker.state is BreakerState.CLOSED
    assert [t.probe for t in admitted] == [False, False]
    assert states(changes) == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]


async def test_cool_down_grows_jittered_and_bounded() -> None:
    time, changes = FakeTime(), []
    breaker = make(time, changes, cooldown_s=1.0, max_cooldown_s=8.0, max_outage_s=1e9)
    await fail(breaker, n=3)
    pauses = []
    for _ in range(7):
        before = time.t
        probe = await breaker.admit("CreateImage")
        pauses.append(time.t - before)
        await breaker.record(probe, unavailable())
    ceilings = [1, 2, 4, 8, 8, 8, 8]
    for pause, ceiling in zip(pauses, ceilings, strict=True):
        assert ceiling / 2 <= pause <= ceiling
    assert len(set(pauses)) == len(pauses)  # jittered
    assert breaker.state is BreakerState.OPEN


async def test_a_probe_of_another_action_does_not_release_a_failing_one() -> None:
    time, changes = FakeTime(), []
    breaker = make(time, changes, linger_s=30.0)
    await fail(breaker, n=3)
    probe = await breaker.admit("DescribeImages")  # the waiter's poll comes first
    await breaker.record(probe, None)
    assert breaker.state is BreakerState.HALF_OPEN  # CreateImage has not answered since
    probe = await breaker.admit("CreateImage")
    assert probe.probe
    await breaker.record(probe, unavailable())
    assert breaker.state is BreakerState.OPEN
    probe = await breaker.admit("CreateImage")
    await breaker.record(probe, None)
    assert breaker.state is BreakerState.CLOSED


async def test_a_failure_nobody_retries_stops_holding_the_breaker_half_open() -> None:
    time, changes = FakeTime(), []
    breaker = make(time, changes, linger_s=30.0)
    await fail(breaker, n=3)
    probe = await breaker.admit("DescribeImages")
    await breaker.record(probe, None)
    assert breaker.state is BreakerState.HALF_OPEN
    time.t += 31  # no CreateImage came back within linger_s (e.g. its targets stopped)
    probe = await breaker.admit("DescribeImages")
    await breaker.record(probe, None)
    assert breaker.state is BreakerState.CLOSED


async def test_failures_of_requests_sent_before_an_opening_do_not_reopen() -> None:
    time, changes = FakeTime(), []
    breaker = make(time, changes)
    early = [await breaker.admit("CreateImage") for _ in range(6)]
    for ticket in early[:3]:
        await breaker.record(ticket, unavailable())
    probe = await breaker.admit("CreateImage")
    await breaker.record(probe, None)
    assert breaker.state is BreakerState.CLOSED
    for ticket in early[3:]:  # in flight during the whole outage: old news
        await breaker.record(ticket, unavailable())
    assert breaker.state is BreakerState.CLOSED
    await fail(breaker, n=2)  # nor do they count toward the next opening
    assert breaker.state is BreakerState.CLOSED
    await fail(breaker)
    assert breaker.state is BreakerState.OPEN


async def test_a_cancelled_or_unanswered_probe_frees_the_slot() -> None:
    time, changes = FakeTime(), []
    breaker = make(time, changes)
    await fail(breaker, n=3)
    probe = await breaker.admit("CreateImage")
    breaker.release(probe)  # e.g. cancelled while waiting for a token
    again = await breaker.admit("CreateImage")
    assert again.probe
    local = AwsError("ClientFailure", "bug", action="CreateImage", kind=ErrorKind.FATAL)
    await breaker.record(again, local)  # not an answer from the endpoint: neutral
    assert breaker.state is BreakerState.HALF_OPEN
    assert (await breaker.admit("CreateImage")).probe


async def test_open_longer_than_max_outage_stops_the_lane() -> None:
    time, changes = FakeTime(), []
    breaker = make(time, changes, cooldown_s=1.0, max_cooldown_s=4.0, max_outage_s=20.0)
    await fail(breaker, n=3)
    started = time.t
    with pytest.raises(LaneOutage) as caught:
        while True:
            probe = await breaker.admit("CreateImage")
            await breaker.record(probe, unavailable())
    assert time.t - started >= 20.0
    outage = caught.value
    assert outage.code == "LaneOutage" and outage.kind is ErrorKind.FATAL
    assert str(LANE) in outage.message and "CreateImage: Unavailable: try later" in outage.message
    assert breaker.stopped is not None
    assert BreakerState.STOPPED in states(changes)
    # New work is refused at once, every time, each with its own exception object.
    with pytest.raises(LaneOutage) as first:
        await breaker.admit("CreateImage")
    with pytest.raises(LaneOutage) as second:
        await breaker.admit("DescribeImages")
    assert first.value is not second.value


async def test_reads_for_created_images_go_on_through_the_outage() -> None:
    time, changes = FakeTime(), []
    breaker = make(time, changes, cooldown_s=1.0, max_cooldown_s=4.0, max_outage_s=10.0)
    await fail(breaker, n=3)
    with pytest.raises(LaneOutage):
        while True:
            probe = await breaker.admit("CreateImage")
            await breaker.record(probe, unavailable())
    # The waiter's polls still probe, one at a time, and close the breaker once answered.
    probe = await breaker.admit("DescribeImages", through_outage=True)
    assert probe.probe
    await breaker.record(probe, unavailable("DescribeImages"))
    assert breaker.state is BreakerState.OPEN
    time.t += 100  # nobody sends CreateImage any more: its failures stop mattering
    probe = await breaker.admit("DescribeImages", through_outage=True)
    await breaker.record(probe, None)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.stopped is not None  # stopped stays: no new images in this lane
    with pytest.raises(LaneOutage):
        await breaker.admit("CreateImage")
    assert (await breaker.admit("DescribeImages", through_outage=True)).probe is False


async def test_trip_stops_the_lane_with_the_error_that_spent_a_budget() -> None:
    time, changes = FakeTime(), []
    breaker = make(time, changes)
    throttle = AwsError("RequestLimitExceeded", "slow", action="CreateImage", http_status=503)
    outage = await breaker.trip(throttle)
    assert isinstance(outage, LaneOutage) and "RequestLimitExceeded" in outage.message
    assert states(changes) == [BreakerState.STOPPED]
    with pytest.raises(LaneOutage):
        await breaker.admit("CreateImage")


async def test_hint_is_appended_to_the_outage_message() -> None:
    outage = LaneOutage(LANE, unavailable(), 30.0)
    hinted = outage.again(hint="check image.tag_snapshots")
    assert hinted.message.endswith("check image.tag_snapshots")
    assert hinted.lane == LANE and hinted.last_error is outage.last_error


async def test_what_queued_for_a_token_when_the_breaker_opened_is_not_sent() -> None:
    time, changes = FakeTime(), []
    breaker = make(time, changes)
    queued = await breaker.admit("CreateImage")  # admitted, then waits for a token...
    await fail(breaker, n=3)  # ... while the breaker opens
    assert not breaker.admits(queued)  # so it goes back to the gate instead of storming
    probe = await breaker.admit("CreateImage")
    assert breaker.admits(probe)
    await breaker.record(probe, None)
    assert breaker.admits(queued)  # closed again: anything goes
    await breaker.trip(unavailable())
    assert not breaker.admits(queued)
    assert breaker.admits(queued, through_outage=True)
