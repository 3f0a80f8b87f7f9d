"""The lane breaker's edges, on a fake clock: each test pins one rule of breaker.py's contract
that test_breaker.py leaves loose (found by mutation testing, see tests/mutation/README.md)."""

from __future__ import annotations

import random

import anyio
import anyio.lowlevel
import pytest
from test_breaker import LANE, FakeTime

from fleetimage.core.errors import AwsError, ErrorKind
from fleetimage.core.models import BreakerState
from fleetimage.engine.breaker import Breaker, LaneOutage, Ticket, describe_error

Change = tuple[BreakerState, str, str]


def make(
    time: FakeTime,
    changes: list[Change] | None = None,
    *,
    failures: int = 3,
    cooldown_s: float = 1.0,
    max_cooldown_s: float = 8.0,
    max_outage_s: float = 100.0,
    linger_s: float = 30.0,
    seed: int = 7,
    **kw: float,
) -> Breaker:
    async def on_change(state: BreakerState, reason: str, error: AwsError | None) -> None:
        assert changes is not None
        changes.append((state, reason, error.code if error else ""))

    return Breaker(
        LANE,
        failures=failures,
        cooldown_s=cooldown_s,
        max_cooldown_s=max_cooldown_s,
        max_outage_s=max_outage_s,
        linger_s=linger_s,
        on_change=on_change if changes is not None else None,
        clock=time,
        sleep=time.sleep,
        rng=random.Random(seed),
        **kw,
    )


def unavailable(action: str = "CreateImage", message: str = "try later") -> AwsError:
    return AwsError("Unavailable", message, action=action, http_status=503)


async def fail(breaker: Breaker, action: str = "CreateImage", n: int = 1) -> None:
    for _ in range(n):
        ticket = await breaker.admit(action)
        await breaker.record(ticket, unavailable(action))


def jitter(seed: int, ceilings: list[float]) -> list[float]:
    """The cool-downs a breaker seeded with ``seed`` draws for these ceilings."""
    rng = random.Random(seed)
    return [c / 2 + rng.uniform(0.0, c / 2) for c in ceilings]


# --- describe_error ---------------------------------------------------------------------


def test_describe_error_is_one_short_line() -> None:
    assert describe_error(None) == ""
    error = AwsError("Unavailable", "  try\n later\t now ", action="CreateImage")
    assert describe_error(error) == "CreateImage: Unavailable: try later now"
    assert describe_error(AwsError("Oops", "a  b", action="")) == "Oops: a b"
    long = AwsError("Unavailable", "x" * 200 + "TAIL", action="CreateImage")
    assert describe_error(long) == "CreateImage: Unavailable: " + "x" * 160


# --- LaneOutage -------------------------------------------------------------------------


def test_the_outage_notice_carries_its_fields_and_one_exact_message() -> None:
    cause = unavailable()
    outage = LaneOutage(LANE, cause, 30.0)
    assert outage.lane == LANE and outage.last_error is cause and outage.outage_s == 30.0
    assert outage.hint == "" and outage.requested is False
    assert outage.code == "LaneOutage" and outage.kind is ErrorKind.FATAL
    assert outage.action == "CreateImage"
    assert outage.message == (
        "lane 111111111111/eu-west-1 stopped: its endpoint failed for over 30 s "
        "(retry.max_outage_s); last error: CreateImage: Unavailable: try later. "
        "No new images in this lane; resume the run once the endpoint recovers"
    )
    hinted = LaneOutage(LANE, cause, 2.5, hint="check it", requested=True)
    assert hinted.hint == "check it" and hinted.requested is True
    assert hinted.message.endswith(
        "for over 2.5 s (retry.max_outage_s); last error: "
        "CreateImage: Unavailable: try later. No new images in "
        "this lane; resume the run once the endpoint recovers. "
        "check it"
    )


def test_an_outage_without_a_recorded_error() -> None:
    outage = LaneOutage(LANE, None, 10.0)
    assert outage.last_error is None and outage.action == ""
    assert "; last error: none recorded. No new images" in outage.message


def test_again_keeps_every_field_unless_told_otherwise() -> None:
    cause = unavailable()
    outage = LaneOutage(LANE, cause, 30.0, hint="the hint", requested=True)
    same = outage.again()
    assert same is not outage
    assert (same.lane, same.last_error, same.outage_s) == (LANE, cause, 30.0)
    assert same.hint == "the hint" and same.requested is True
    assert same.message == outage.message and same.action == "CreateImage"
    other = outage.again(hint="", requested=False)
    assert other.hint == "" and other.requested is False
    assert other.message == LaneOutage(LANE, cause, 30.0).message
    plain = LaneOutage(LANE, cause, 30.0)
    assert plain.again(requested=True).requested is True
    assert plain.again(hint="h").hint == "h" and plain.again(hint="h").requested is False


# --- Breaker.__init__ -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"failures": 0}, r"^failures must be >= 1, got 0$"),
        ({"cooldown_s": 0.0}, r"^need 0 < cooldown_s <= max_cooldown_s, got 0.0, 8.0$"),
        ({"cooldown_s": 9.0}, r"^need 0 < cooldown_s <= max_cooldown_s, got 9.0, 8.0$"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(FakeTime(), **kwargs)  # type: ignore[arg-type]


def test_the_edges_of_the_parameters_are_fine() -> None:
    breaker = make(FakeTime(), failures=1, cooldown_s=8.0, max_cooldown_s=8.0)
    assert breaker.lane == LANE and breaker.failures == 1
    assert breaker.cooldown_s == 8.0 and breaker.max_cooldown_s == 8.0
    assert breaker.max_outage_s == 100.0 and breaker.linger_s == 30.0
    assert breaker.probe_wait_s == 60.0
    assert breaker.state is BreakerState.CLOSED
    assert breaker.stopped is None and breaker.last_error is None


async def test_one_failure_opens_when_failures_is_one() -> None:
    breaker = make(FakeTime(), [], failures=1)
    await fail(breaker)
    assert breaker.state is BreakerState.OPEN


async def test_without_an_rng_the_breaker_draws_its_own_jitter() -> None:
    time = FakeTime()
    breaker = Breaker(
        LANE,
        failures=1,
        cooldown_s=1.0,
        max_cooldown_s=1.0,
        max_outage_s=100.0,
        linger_s=30.0,
        clock=time,
        sleep=time.sleep,
    )
    await fail(breaker)
    assert (await breaker.admit("CreateImage")).probe
    assert len(time.slept) == 1 and 0.5 <= time.slept[0] <= 1.0


# --- cool-downs: exact, from the seeded jitter ------------------------------------------


async def test_each_cool_down_is_half_fixed_half_drawn_and_slept_once() -> None:
    time, changes = FakeTime(), []
    breaker = make(time, changes, cooldown_s=1.0, max_cooldown_s=4.0, max_outage_s=1e9)
    await fail(breaker, n=3)
    for _ in range(4):
        probe = await breaker.admit("CreateImage")
        await breaker.record(probe, unavailable())
    expected = jitter(7, [1.0, 2.0, 4.0, 4.0, 4.0])
    assert time.slept == pytest.approx(expected[:4])
    opened = [reason for state, reason, _ in changes if state is BreakerState.OPEN]
    assert opened[0] == (
        f"3 CreateImage requests in a row failed (Unavailable); "
        f"pausing the lane for {expected[0]:.3g} s"
    )
    assert opened[1] == (
        f"the probe failed (CreateImage: Unavailable); pausing the lane for {expected[1]:.3g} s"
    )


async def test_closing_resets_the_cool_down_to_its_first_step() -> None:
    time = FakeTime()
    breaker = make(time, [], cooldown_s=1.0, max_cooldown_s=8.0, max_outage_s=1e9)
    await fail(breaker, n=3)
    probe = await breaker.admit("CreateImage")
    await breaker.record(probe, unavailable())  # the second cool-down: ceiling 2
    probe = await breaker.admit("CreateImage")
    await breaker.record(probe, None)  # closed
    await fail(breaker, n=3)
    await breaker.admit("CreateImage")
    assert time.slept == pytest.approx(jitter(7, [1.0, 2.0, 1.0]))


async def test_the_cool_down_stops_doubling_after_sixty_steps() -> None:
    # 2.0 ** level would overflow after a long outage: the exponent is capped at 60. A tiny
    # first step under a large ceiling shows where the doubling stops.
    # (Read from the reasons: steps this small vanish in the clock's float arithmetic.)
    time, changes = FakeTime(), []
    breaker = make(time, changes, cooldown_s=1e-20, max_cooldown_s=1.0, max_outage_s=1e9)
    await fail(breaker, n=3)
    for _ in range(62):
        probe = await breaker.admit("CreateImage")
        await breaker.record(probe, unavailable())
    ceilings = [1e-20 * 2.0 ** min(level, 60) for level in range(63)]
    paused = [
        r.rsplit("pausing the lane for ", 1)[1] for s, r, _ in changes if s is BreakerState.OPEN
    ]
    assert paused == [f"{c:.3g} s" for c in jitter(7, ceilings)]


# --- the outage clock -------------------------------------------------------------------


async def test_the_outage_is_timed_from_the_first_opening() -> None:
    time = FakeTime()
    breaker = make(time, [], cooldown_s=1.0, max_cooldown_s=1.0, max_outage_s=10.0)
    await fail(breaker, n=3)
    opened_at = time.t
    with pytest.raises(LaneOutage) as caught:
        while True:
            probe = await breaker.admit("CreateImage")
            await breaker.record(probe, unavailable())
    # Stopped at the first look at or past 10 s since the first opening, not the last one.
    assert 10.0 <= time.t - opened_at < 11.0
    assert caught.value.outage_s == 10.0


async def test_the_outage_stops_exactly_at_max_outage() -> None:
    time = FakeTime()
    breaker = make(time, [], cooldown_s=1.0, max_cooldown_s=1.0, max_outage_s=5.0)
    await fail(breaker, n=3)
    time.t += 5.0  # exactly max_outage_s since the opening
    with pytest.raises(LaneOutage):
        await breaker.admit("CreateImage")
    assert time.slept == []  # it stopped without waiting out another cool-down


async def test_a_close_restarts_the_outage_clock() -> None:
    time = FakeTime()
    breaker = make(time, [], cooldown_s=1.0, max_cooldown_s=1.0, max_outage_s=10.0)
    await fail(breaker, n=3)
    time.t += 9.0
    probe = await breaker.admit("CreateImage")
    await breaker.record(probe, None)  # closed after 9 s
    await fail(breaker, n=3)
    time.t += 9.0  # 18 s since the first opening, 9 since this one
    probe = await breaker.admit("CreateImage")
    assert probe.probe and breaker.stopped is None


async def test_an_immediate_stop_is_reported_after_the_opening_in_order() -> None:
    time, changes = FakeTime(), []
    breaker = make(time, changes, max_outage_s=0.0)
    await fail(breaker, n=3)
    assert [c[0] for c in changes] == [BreakerState.OPEN, BreakerState.STOPPED]
    assert changes[1] == (
        BreakerState.STOPPED,
        "open for over 0 s (retry.max_outage_s)",
        "Unavailable",
    )
    assert breaker.stopped is not None and breaker.stopped.outage_s == 0.0


async def test_reads_through_an_outage_wait_out_the_cool_down_then_probe() -> None:
    time = FakeTime()
    breaker = make(time, [], cooldown_s=1.0, max_cooldown_s=1.0, max_outage_s=0.0)
    await fail(breaker, n=3)
    assert breaker.stopped is not None
    probe = await breaker.admit("DescribeImages", through_outage=True)
    assert probe.probe and time.slept == pytest.approx(jitter(7, [1.0]))


# --- report_failure ---------------------------------------------------------------------


async def test_a_reported_failure_counts_like_a_transient_one() -> None:
    time, changes = FakeTime(), []
    breaker = make(time, changes)
    bad = AwsError("InvalidResponse", "no ImageId", action="CreateImage", http_status=200)
    await fail(breaker, n=2)
    await breaker.report_failure("CreateImage", bad)
    assert breaker.last_error is bad
    assert breaker.state is BreakerState.OPEN
    assert changes[0][0] is BreakerState.OPEN and changes[0][2] == "InvalidResponse"
    assert changes[0][1].startswith("3 CreateImage requests in a row failed (InvalidResponse)")


async def test_reported_failures_count_per_action() -> None:
    breaker = make(FakeTime(), [])
    bad = AwsError("InvalidResponse", "no ImageId", action="CreateImage", http_status=200)
    await breaker.report_failure("CreateImage", bad)
    await breaker.report_failure("CreateImage", bad)
    await breaker.report_failure("DescribeImages", bad)
    assert breaker.state is BreakerState.CLOSED
    await breaker.report_failure("CreateImage", bad)
    assert breaker.state is BreakerState.OPEN


async def test_a_reported_failure_while_half_open_is_not_a_probe() -> None:
    breaker = make(FakeTime(), [])
    await fail(breaker, n=3)
    probe = await breaker.admit("CreateImage")
    assert breaker.state is BreakerState.HALF_OPEN
    bad = AwsError("InvalidResponse", "no ImageId", action="DescribeImages", http_status=200)
    await breaker.report_failure("DescribeImages", bad)
    assert breaker.state is BreakerState.HALF_OPEN  # only the probe's own failure reopens
    await breaker.record(probe, unavailable())
    assert breaker.state is BreakerState.OPEN


# --- record and release -----------------------------------------------------------------


async def test_a_recorded_ticket_is_not_recorded_twice() -> None:
    breaker = make(FakeTime(), [], failures=2)
    ticket = await breaker.admit("CreateImage")
    await breaker.record(ticket, unavailable())
    await breaker.record(ticket, unavailable())  # the same send: ignored
    assert breaker.state is BreakerState.CLOSED
    await fail(breaker)
    assert breaker.state is BreakerState.OPEN


async def test_a_released_ticket_is_not_recorded() -> None:
    breaker = make(FakeTime(), [], failures=1)
    ticket = await breaker.admit("CreateImage")
    breaker.release(ticket)
    await breaker.record(ticket, unavailable())
    assert breaker.state is BreakerState.CLOSED and breaker.last_error is None


async def test_a_recorded_probe_released_afterwards_does_not_free_the_slot_twice() -> None:
    breaker = make(FakeTime(), [])
    await fail(breaker, n=3)
    probe = await breaker.admit("DescribeImages")
    await breaker.record(probe, None)  # answered, but CreateImage still failing: half-open
    second = await breaker.admit("DescribeImages")
    assert second.probe
    breaker.release(probe)  # late release of the first probe: a no-op
    admitted: list[bool] = []

    async def queued() -> None:
        admitted.append((await breaker.admit("CreateImage")).probe)

    async with anyio.create_task_group() as tg:
        tg.start_soon(queued)
        for _ in range(10):
            await anyio.lowlevel.checkpoint()
        assert admitted == []  # the second probe still holds the slot
        breaker.release(second)
    assert admitted == [True]


async def test_releasing_an_ordinary_ticket_does_not_free_the_probe_slot() -> None:
    breaker = make(FakeTime(), [])
    ordinary = await breaker.admit("CreateImage")
    await fail(breaker, n=3)
    probe = await breaker.admit("CreateImage")
    assert probe.probe
    breaker.release(ordinary)
    admitted: list[bool] = []

    async def queued() -> None:
        admitted.append((await breaker.admit("CreateImage")).probe)

    async with anyio.create_task_group() as tg:
        tg.start_soon(queued)
        for _ in range(10):
            await anyio.lowlevel.checkpoint()
        assert admitted == []
        breaker.release(probe)
    assert admitted == [True]


async def test_a_local_error_is_neutral_but_an_answered_fatal_error_is_an_answer() -> None:
    breaker = make(FakeTime(), [], failures=3)
    await fail(breaker, n=2)
    local = AwsError("ClientFailure", "bug", action="CreateImage", kind=ErrorKind.FATAL)
    ticket = await breaker.admit("CreateImage")
    await breaker.record(ticket, local)  # not an answer: the streak stays at 2
    assert breaker.last_error is not local
    await fail(breaker)
    assert breaker.state is BreakerState.OPEN

    other = make(FakeTime(), [], failures=3)
    await fail(other, n=2)
    answered = AwsError("AuthFailure", "no", action="CreateImage", http_status=401)
    ticket = await other.admit("CreateImage")
    await other.record(ticket, answered)  # an answer: the streak is reset
    await fail(other, n=2)
    assert other.state is BreakerState.CLOSED


async def test_a_transient_error_without_a_status_is_a_failure() -> None:
    breaker = make(FakeTime(), [], failures=1)
    ticket = await breaker.admit("CreateImage")
    timeout = AwsError("ReadTimeoutError", "x", action="CreateImage", kind=ErrorKind.AMBIGUOUS)
    await breaker.record(ticket, timeout)
    assert breaker.state is BreakerState.OPEN and breaker.last_error is timeout


async def test_a_half_open_probe_answered_while_another_action_lingers_lets_the_next_in() -> None:
    breaker = make(FakeTime(), [], linger_s=30.0)
    await fail(breaker, n=3)
    probe = await breaker.admit("DescribeImages")
    admitted: list[bool] = []

    async def queued() -> None:
        admitted.append((await breaker.admit("CreateImage")).probe)

    async with anyio.create_task_group() as tg:
        tg.start_soon(queued)
        for _ in range(10):
            await anyio.lowlevel.checkpoint()
        assert admitted == []
        await breaker.record(probe, None)  # stays half-open, and wakes the queued send
    assert admitted == [True] and breaker.state is BreakerState.HALF_OPEN


async def test_the_failure_linger_boundary_is_inclusive() -> None:
    time = FakeTime()
    breaker = make(time, [], linger_s=30.0)
    await fail(breaker, n=3)
    probe = await breaker.admit("DescribeImages")
    time.t = 1000.0 + 30.0  # exactly linger_s after CreateImage's last failure
    await breaker.record(probe, None)
    assert breaker.state is BreakerState.CLOSED


async def test_a_close_forgets_the_streaks_of_other_actions() -> None:
    time = FakeTime()
    breaker = make(time, [], linger_s=1.0)
    await fail(breaker, "DescribeImages", n=2)
    await fail(breaker, n=3)
    time.t += 5.0
    probe = await breaker.admit("CreateImage")
    await breaker.record(probe, None)
    assert breaker.state is BreakerState.CLOSED
    await fail(breaker, "DescribeImages", n=2)  # two, not four, in a row since the close
    assert breaker.state is BreakerState.CLOSED


# --- waiting behind the probe -----------------------------------------------------------


async def test_a_send_waiting_behind_the_probe_looks_again_after_probe_wait() -> None:
    time = FakeTime()
    breaker = make(time, [], max_outage_s=10.0, probe_wait_s=0.01)
    await fail(breaker, n=3)
    await breaker.admit("CreateImage")  # the probe, never answered
    outcome: list[str] = []

    async def queued() -> None:
        try:
            await breaker.admit("CreateImage")
        except LaneOutage:
            outcome.append("stopped")

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(queued)
            for _ in range(10):
                await anyio.lowlevel.checkpoint()
            assert outcome == []  # waiting for the probe's outcome
            time.t += 60.0  # past max_outage_s, and nothing wakes the queue
    assert outcome == ["stopped"]


async def test_a_probe_outcome_wakes_the_queue_without_waiting() -> None:
    time = FakeTime()
    breaker = make(time, [], probe_wait_s=3600.0)
    await fail(breaker, n=3)
    probe = await breaker.admit("CreateImage")
    admitted: list[bool] = []

    async def queued() -> None:
        admitted.append((await breaker.admit("CreateImage")).probe)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(queued)
            for _ in range(10):
                await anyio.lowlevel.checkpoint()
            await breaker.record(probe, None)
    assert admitted == [False] and breaker.state is BreakerState.CLOSED


async def test_a_send_queued_through_a_close_belongs_to_the_current_epoch() -> None:
    breaker = make(FakeTime(), [], failures=1)
    await fail(breaker)
    probe = await breaker.admit("CreateImage")
    admitted: list[Ticket] = []

    async def queued() -> None:
        admitted.append(await breaker.admit("CreateImage"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(queued)
        for _ in range(10):
            await anyio.lowlevel.checkpoint()
        await breaker.record(probe, None)
    (ticket,) = admitted
    assert ticket.action == "CreateImage" and ticket.epoch == probe.epoch
    await breaker.record(ticket, unavailable())  # a current failure: it opens again
    assert breaker.state is BreakerState.OPEN


async def test_sends_arriving_as_the_breaker_closes_queue_behind_those_waiting() -> None:
    breaker = make(FakeTime(), None)  # no observer: recording the probe does not yield
    await fail(breaker, n=3)
    probe = await breaker.admit("CreateImage")
    order: list[str] = []

    async def queued() -> None:
        await breaker.admit("CreateImage")
        order.append("queued")

    async with anyio.create_task_group() as tg:
        tg.start_soon(queued)
        for _ in range(10):
            await anyio.lowlevel.checkpoint()
        await breaker.record(probe, None)  # closed; "queued" is woken but has not run yet
        assert breaker.state is BreakerState.CLOSED and order == []
        await breaker.admit("CreateImage")  # arrives now: it waits its turn at the gate
        order.append("late")
    assert order == ["queued", "late"]  # FIFO: the late one does not jump the queue


async def test_only_the_probe_closes_a_half_open_breaker() -> None:
    breaker = make(FakeTime(), [])
    early = await breaker.admit("CreateImage")  # sent before the opening
    await fail(breaker, n=3)
    probe = await breaker.admit("CreateImage")
    await breaker.record(early, None)  # an old answer, not the probe's
    assert breaker.state is BreakerState.HALF_OPEN
    await breaker.record(probe, None)
    assert breaker.state is BreakerState.CLOSED


async def test_failures_sent_before_a_second_opening_do_not_reopen_either() -> None:
    breaker = make(FakeTime(), [])
    await fail(breaker, n=3)  # a first opening, then closed
    await breaker.record(await breaker.admit("CreateImage"), None)
    assert breaker.state is BreakerState.CLOSED
    early = [await breaker.admit("CreateImage") for _ in range(6)]
    for ticket in early[:3]:
        await breaker.record(ticket, unavailable())  # the second opening
    assert breaker.state is BreakerState.OPEN
    await breaker.record(await breaker.admit("CreateImage"), None)
    assert breaker.state is BreakerState.CLOSED
    for ticket in early[3:]:  # in flight during the second outage: old news
        await breaker.record(ticket, unavailable())
    assert breaker.state is BreakerState.CLOSED


# --- the observers ----------------------------------------------------------------------


async def test_without_an_observer_changes_are_dropped() -> None:
    time = FakeTime()
    breaker = make(time, None, failures=1)
    await fail(breaker)  # opened, with nobody listening
    seen: list[BreakerState] = []

    async def on_change(state: BreakerState, reason: str, error: AwsError | None) -> None:
        seen.append(state)

    breaker.on_change = on_change
    probe = await breaker.admit("CreateImage")
    await breaker.record(probe, None)
    assert seen == [BreakerState.HALF_OPEN, BreakerState.CLOSED]


async def test_the_observer_gets_the_error_known_at_each_change() -> None:
    time, changes = FakeTime(), []
    breaker = make(time, changes, failures=1)
    await fail(breaker)
    probe = await breaker.admit("CreateImage")
    await breaker.record(probe, None)
    assert [(s, e) for s, _, e in changes] == [
        (BreakerState.OPEN, "Unavailable"),
        (BreakerState.HALF_OPEN, "Unavailable"),
        (BreakerState.CLOSED, "Unavailable"),
    ]
    assert changes[1][1] == "cool-down over; probing with one request"
    assert changes[2][1] == "the probe (CreateImage) was answered"


async def test_the_observer_hears_a_change_even_if_its_sender_is_cancelled() -> None:
    time = FakeTime()
    breaker = make(time, None, failures=1)
    entered, go = anyio.Event(), anyio.Event()
    seen: list[BreakerState] = []

    async def on_change(state: BreakerState, reason: str, error: AwsError | None) -> None:
        entered.set()
        await go.wait()
        seen.append(state)

    breaker.on_change = on_change
    scope = anyio.CancelScope()

    async def sender() -> None:
        with scope:
            await fail(breaker)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(sender)
            await entered.wait()
            scope.cancel()  # the send is cancelled while the observer is being told
            for _ in range(10):
                await anyio.lowlevel.checkpoint()
            go.set()
    assert seen == [BreakerState.OPEN]


async def test_trip_names_the_call_and_the_budget() -> None:
    time, changes = FakeTime(), []
    breaker = make(time, changes, max_outage_s=2.5)
    outage = await breaker.trip(unavailable("DescribeImages"))
    assert changes == [
        (BreakerState.STOPPED, "a DescribeImages call kept failing for over 2.5 s", "Unavailable")
    ]
    assert outage.outage_s == 2.5 and outage.last_error is breaker.last_error
    again = await breaker.trip(unavailable())  # already stopped: the same outage, again
    assert len(changes) == 1 and again.action == "DescribeImages"
