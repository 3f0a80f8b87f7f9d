"""The destination's copy slots: the cap, the pause of ResourceLimitExceeded, the stop rule."""

from __future__ import annotations

import anyio
import pytest

from fleetimage.core.copies import (
    COPY_TRANSITIONS,
    CopyState,
    client_token,
    copy_transition,
)
from fleetimage.engine.copy_slots import CopySlots, DestinationStopped


async def test_a_limit_answer_pauses_until_a_copy_settles() -> None:
    slots = CopySlots("eu-west-1", cap=10, max_wait_s=30)
    for _ in range(3):
        await slots.acquire()
    slots.on_limit("limit")  # the third got ResourceLimitExceeded: 2 of ours in flight
    assert (slots.limit, slots.in_flight, slots.stopped) == (2, 2, None)
    got = anyio.Event()

    async def third() -> None:
        await slots.acquire()
        got.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(third)
        await anyio.sleep(0.05)
        assert not got.is_set()  # paused
        slots.release(settled=True)  # one of ours settled: the destination frees a slot
        with anyio.fail_after(5):
            await got.wait()
    assert slots.in_flight == 2 and slots.limit == 3


async def test_a_limit_answer_with_nothing_of_ours_in_flight_probes_until_max_outage() -> None:
    # Nothing of ours is in flight: other processes (shards, workers, tools) may hold the
    # destination's slots, or its AMI quota is full. Probes, one copy at a time, after a
    # growing pause; no copy through within max_wait_s of the first refusal: stop.
    slots = CopySlots("eu-west-1", cap=100, max_wait_s=0.4)
    await slots.acquire()
    slots.on_limit("You have reached the limit")
    assert (slots.stopped, slots.limit, slots.in_flight) == (None, 0, 0)
    probes = 0
    with anyio.fail_after(5), pytest.raises(DestinationStopped) as stop:
        while True:
            await slots.acquire()  # a probe: one slot, after a pause
            probes += 1
            assert slots.in_flight == 1 and slots.limit == 1
            slots.on_limit("You have reached the limit")
    assert 3 <= probes <= 64  # several probes, paused between them, not a storm
    message = stop.value.message
    assert "AMI quota" in message and "other processes" in message  # every cause named
    assert "within 0.4 s" in message
    with pytest.raises(DestinationStopped):
        await slots.acquire()


async def test_a_probe_that_goes_through_opens_the_destination_again() -> None:
    slots = CopySlots("eu-west-1", cap=3, max_wait_s=30)
    await slots.acquire()
    slots.on_limit("limit")  # another shard's copies fill the destination
    with anyio.fail_after(5):
        await slots.acquire()  # the probe
    slots.accepted()  # it went through: room again
    assert (slots.limit, slots.in_flight, slots.stopped) == (2, 1, None)
    await slots.acquire()
    slots.accepted()  # not probing any more: the cap is what bounds us again
    assert slots.limit == 2
    slots.release(settled=True)
    assert slots.limit == 3 and slots.in_flight == 1


async def test_no_copy_settling_within_max_outage_stops_the_destination() -> None:
    slots = CopySlots("eu-west-1", cap=100, max_wait_s=0.05)
    await slots.acquire()
    await slots.acquire()
    slots.on_limit("limit")  # paused at 1 in flight, which never settles
    with anyio.fail_after(5), pytest.raises(DestinationStopped) as stop:
        await slots.acquire()
    assert "settled within" in stop.value.message


def test_client_token_is_deterministic_ascii_and_at_most_64() -> None:
    token = client_token("run-1", "i-0123456789abcdef0", "eu-west-1", "ami-0123456789abcdef0")
    assert token == client_token(
        "run-1", "i-0123456789abcdef0", "eu-west-1", "ami-0123456789abcdef0"
    )
    assert len(token) <= 64 and token.isascii()
    others = {
        client_token("run-2", "i-0123456789abcdef0", "eu-west-1", "ami-0123456789abcdef0"),
        client_token("run-1", "i-0123456789abcdef1", "eu-west-1", "ami-0123456789abcdef0"),
        client_token("run-1", "i-0123456789abcdef0", "us-west-2", "ami-0123456789abcdef0"),
        # a source re-created by --retry-failed: a new token
        client_token("run-1", "i-0123456789abcdef0", "eu-west-1", "ami-0123456789abcdef1"),
    }
    assert token not in others and len(others) == 4


def test_copy_state_machine_never_forgets_a_sent_copy() -> None:
    sent = (CopyState.REQUESTING, CopyState.PENDING, CopyState.UNKNOWN, CopyState.TIMED_OUT)
    for state in sent:
        assert copy_transition(state, "not_started") is None
        assert copy_transition(state, "planned") is None
    for kind in COPY_TRANSITIONS:
        if kind != "available":
            assert copy_transition(CopyState.AVAILABLE, kind) is None
    assert copy_transition(CopyState.REQUESTING, "created") is CopyState.PENDING
    assert copy_transition(CopyState.PENDING, "unknown") is CopyState.UNKNOWN
