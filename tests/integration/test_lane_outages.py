"""The lane circuit breaker end to end: aiobotocore against the mock's faults and outages.

Transient errors, timeouts and resets pause a lane and never fail a target; a lane that stays
down longer than ``retry.max_outage_s`` stops (its unstarted targets ``not_started``), and the
images it created are still waited for. Every time constant is scaled down through the config.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import pytest

from fleetimage import Created, Outcome, image_fleet, parse_config
from fleetimage.core.models import BreakerChanged, BreakerState, Event
from fleetimage.mock import FaultConfig, MockConfig, MockEC2, Outage

EAST, WEST = "us-east-1", "eu-west-1"


def config(regions: tuple[str, ...] = (EAST,), **retry: Any) -> dict[str, Any]:
    return {
        "targets": [{"regions": list(regions), "all_instances": True}],
        "image": {"name_template": "{tag:Name}-{instance_id}-{run_id}"},
        "wait": {"poll_interval_s": 0.05, "timeout_s": 60, "not_found_grace_s": 5},
        "retry": {
            "base_delay_s": 0.01,
            "max_delay_s": 0.1,
            "quota_delay_s": 0.1,
            "request_timeout_s": 5,
            "max_outage_s": 30,
            "breaker_failures": 3,
            "breaker_cooldown_s": 0.05,
            "breaker_max_cooldown_s": 0.3,
            **retry,
        },
        "max_errors": "100%",
    }


def breaker_states(events: list[Event], region: str) -> list[BreakerState]:
    return [e.state for e in events if isinstance(e, BreakerChanged) and e.region == region]


def is_subsequence(wanted: list[BreakerState], seen: list[BreakerState]) -> bool:
    it = iter(seen)
    return all(state in it for state in wanted)


def all_available(mock: MockEC2, region: str) -> bool:
    account = mock.config.accounts[0]
    return all(i["state"] == "available" for i in mock.images(account, region))


async def test_a_5xx_burst_at_lane_start_fails_nothing(fleet_mock: Any) -> None:
    """Finding 3: 70 % of CreateImage answers 503 at lane start used to leave targets failed
    with CreateImageRejected. Now the lane pauses and probes; when the burst ends, all go."""
    mock = await fleet_mock(
        MockConfig(
            regions=(EAST,),
            instances_per_region=40,
            seed=21,
            time_scale=20,
            pending_s=0.2,
            state_mix={"running": 1.0},
            faults=FaultConfig(unavailable=0.7, actions=frozenset({"CreateImage"})),
        )
    )
    events: list[Event] = []
    opened = anyio.Event()

    def on_event(event: Event) -> None:
        events.append(event)
        if isinstance(event, BreakerChanged) and event.state is BreakerState.OPEN:
            opened.set()

    async def end_the_burst() -> None:
        with anyio.fail_after(30):
            await opened.wait()
        await anyio.sleep(0.5)  # a few open/half-open cycles inside the burst
        mock.faults.enabled = False

    async with anyio.create_task_group() as tg:
        tg.start_soon(end_the_burst)
        report = await image_fleet(
            parse_config(config()), endpoint_url=mock.endpoint_url, on_event=on_event
        )

    assert mock.count(action="CreateImage", outcome="fault") > 0  # the burst did happen
    assert report.counts["available"] == 40, report.failures()[:3]
    assert report.counts["failed"] == 0 and report.ok
    assert not mock.duplicates()
    assert all_available(mock, EAST)
    states = breaker_states(events, EAST)
    wanted = [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]
    assert is_subsequence(wanted, states), states
    assert states[-1] is BreakerState.CLOSED
    assert BreakerState.STOPPED not in states
    opening = next(e for e in events if isinstance(e, BreakerChanged))
    assert "CreateImage" in opening.last_error and "Unavailable" in opening.last_error


async def test_a_create_image_outage_longer_than_max_outage_stops_that_lane_only(
    fleet_mock: Any,
) -> None:
    mock = await fleet_mock(
        MockConfig(
            regions=(EAST, WEST),
            instances_per_region=12,
            seed=22,
            time_scale=20,
            pending_s=0.3,
            state_mix={"running": 1.0},
        )
    )
    cfg = config((EAST, WEST), max_outage_s=1.5)
    # Slow east's CreateImage down so that the outage lands in the middle of its targets.
    cfg["limits"] = {"regions": {EAST: {"CreateImage": {"burst": 2, "rate_per_s": 4}}}}
    events: list[Event] = []
    created_east = 0

    def on_event(event: Event) -> None:
        nonlocal created_east
        events.append(event)
        if isinstance(event, Created) and event.region == EAST:
            created_east += 1
            if created_east == 3:  # from now on, east's CreateImage answers 503
                now = mock.aws_now()
                mock.add_outage(Outage(now, now + 100_000, region=EAST, action="CreateImage"))

    report = await image_fleet(parse_config(cfg), endpoint_url=mock.endpoint_url, on_event=on_event)

    east = [r for r in report.results if r.region == EAST]
    west = [r for r in report.results if r.region == WEST]
    assert [r.outcome for r in west] == [Outcome.AVAILABLE] * 12  # the other lane: unaffected
    outcomes = Counter(r.outcome for r in east)
    assert outcomes[Outcome.FAILED] == 0
    assert outcomes[Outcome.AVAILABLE] >= 3  # created before the outage: still waited for
    # the rest: never sent (not started), or sent into the outage (unknown: resume looks it up)
    stopped = outcomes[Outcome.NOT_STARTED] + outcomes[Outcome.UNKNOWN]
    assert outcomes[Outcome.AVAILABLE] + stopped == 12
    assert outcomes[Outcome.NOT_STARTED] > 0
    for result in east:
        if result.outcome in (Outcome.NOT_STARTED, Outcome.UNKNOWN):
            assert result.image_id is None
            assert result.error_code == "LaneOutage"
            message = result.error_message or ""
            assert f"{mock.config.accounts[0]}/{EAST}" in message
            assert "CreateImage: Unavailable" in message, message
    account = mock.config.accounts[0]
    made = mock.images(account, EAST)
    assert len(made) == outcomes[Outcome.AVAILABLE] and all_available(mock, EAST)
    assert not mock.duplicates()
    assert not report.ok  # the run exits 1: resume finishes the lane
    assert BreakerState.STOPPED in breaker_states(events, EAST)
    assert BreakerState.STOPPED not in breaker_states(events, WEST)
    # Paused, not stormed: the first wave in flight, then about one probe per cool-down.
    assert mock.count(action="CreateImage", outcome="outage", region=EAST) <= 12 + 15


@pytest.mark.parametrize("mode", ["timeout", "error"])
async def test_a_describe_images_outage_during_the_wait_fails_nothing(
    fleet_mock: Any, mode: str
) -> None:
    mock = await fleet_mock(
        MockConfig(
            regions=(EAST,),
            instances_per_region=10,
            seed=23,
            time_scale=1,
            pending_s=0.5,
            state_mix={"running": 1.0},
        )
    )
    events: list[Event] = []
    created = 0

    def on_event(event: Event) -> None:
        nonlocal created
        events.append(event)
        if isinstance(event, Created):
            created += 1
            if created == 10:  # every image exists: now the waiter's polls hang (or 503)
                now = mock.aws_now()
                mock.add_outage(Outage(now, now + 2.0, action="DescribeImages", mode=mode))

    cfg = config(request_timeout_s=0.3)
    report = await image_fleet(parse_config(cfg), endpoint_url=mock.endpoint_url, on_event=on_event)

    assert mock.count(action="DescribeImages", outcome="outage") > 0
    assert report.counts["available"] == 10, report.failures()[:3]
    assert report.ok and not mock.duplicates()
    states = breaker_states(events, EAST)
    assert is_subsequence([BreakerState.OPEN, BreakerState.CLOSED], states), states
    assert BreakerState.STOPPED not in states
