"""The engine end to end, through aiobotocore, against the mock on loopback."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import timedelta
from typing import Any

import anyio
import pytest
from aiobotocore.session import AioSession, get_session

from fleetimage import Outcome, image_fleet, parse_config
from fleetimage.aws import clients
from fleetimage.core.clock import now
from fleetimage.core.models import Available, Event, Throttled
from fleetimage.core.tags import INSTANCE_TAG, RUN_TAG
from fleetimage.engine.settling import PollSchedule
from fleetimage.engine.wait import READ_IMAGE_MEMBERS
from fleetimage.mock import FaultConfig, MockConfig

ACCOUNT_A = "111111111111"
ACCOUNT_B = "222222222222"
REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2")


def fleet_config(scale: float = 1.0, **overrides: Any) -> dict[str, Any]:
    """A config whose client-side limits match the mock's time-scaled buckets."""
    limits = {
        "CreateImage": {"burst": 50, "rate_per_s": 5 * scale},
        "DescribeImages": {"burst": 100, "rate_per_s": 20 * scale},
        "DescribeInstances": {"burst": 100, "rate_per_s": 20 * scale},
    }
    cfg: dict[str, Any] = {
        "targets": [{"regions": ["us-east-1"], "all_instances": True}],
        "image": {
            "name_template": "{tag:Name}-{instance_id}-{run_id}",
            "tags": {"Purpose": "test"},
        },
        "wait": {"poll_interval_s": 0.05, "timeout_s": 60, "not_found_grace_s": 5},
        "limits": limits,
        "retry": {
            "base_delay_s": 0.01,
            "max_delay_s": 0.2,
            "quota_delay_s": 0.1,
            "max_outage_s": 30,
            "breaker_cooldown_s": 0.05,
            "breaker_max_cooldown_s": 0.3,
        },
        "max_errors": "100%",
    }
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


def imageable(mock: Any, account: str, regions: tuple[str, ...]) -> set[tuple[str, str, str]]:
    return {
        (account, r, i["instance_id"])
        for r in regions
        for i in mock.instances(account, r)
        if i["state"] in {"running", "stopped", "stopping"}
    }


async def test_500_instances_5_regions_2_accounts(fleet_mock: Any) -> None:
    mock = await fleet_mock(
        MockConfig(
            regions=REGIONS,
            instances_per_region=50,
            accounts=(ACCOUNT_A, ACCOUNT_B),
            seed=7,
            time_scale=20,
            pending_s=0.2,
        )
    )
    cfg = fleet_config(
        20,
        targets=[
            {"regions": list(REGIONS), "all_instances": True},
            {
                "regions": list(REGIONS),
                "all_instances": True,
                "accounts": [{"role_arn": f"arn:aws:iam::{ACCOUNT_B}:role/fleetimage"}],
            },
        ],
    )
    report = await image_fleet(parse_config(cfg), endpoint_url=mock.endpoint_url)

    expected = imageable(mock, ACCOUNT_A, REGIONS) | imageable(mock, ACCOUNT_B, REGIONS)
    assert len(expected) >= 400
    available = {
        (r.account, r.region, r.instance_id)
        for r in report.results
        if r.outcome is Outcome.AVAILABLE
    }
    assert available == expected
    skipped = [r for r in report.results if r.outcome is Outcome.SKIPPED]
    assert len(skipped) + len(available) == 500
    assert not mock.duplicates()
    per_instance = mock.images_per_instance()
    assert all(per_instance.get(key) == 1 for key in expected)
    for result in report.results:
        if result.outcome is Outcome.AVAILABLE:
            assert result.image_name is not None and result.instance_id in result.image_name
            assert report.run_id in result.image_name
    image = mock.images(ACCOUNT_B, "eu-west-1")[0]
    assert image["tags"][RUN_TAG] == report.run_id
    assert image["tags"][INSTANCE_TAG] == image["source_instance_id"]
    assert image["tags"]["Purpose"] == "test"


async def test_faults_lose_nothing_and_duplicate_nothing(fleet_mock: Any) -> None:
    faults = FaultConfig(
        throttle=0.05, internal_error=0.03, unavailable=0.02, reset=0.02, lost_answer=0.05
    )
    mock = await fleet_mock(
        MockConfig(
            regions=REGIONS[:3],
            instances_per_region=60,
            seed=3,
            time_scale=20,
            pending_s=0.2,
            faults=faults,
            visibility_lag_s=0.5,
        )
    )
    cfg = fleet_config(20, targets=[{"regions": list(REGIONS[:3]), "all_instances": True}])
    report = await image_fleet(parse_config(cfg), endpoint_url=mock.endpoint_url)
    account = mock.config.accounts[0]
    expected = imageable(mock, account, REGIONS[:3])
    outcomes = Counter(r.outcome for r in report.results)
    assert outcomes[Outcome.AVAILABLE] == len(expected), report.failures()[:3]
    assert not mock.duplicates()
    # the dangerous case (applied, answer lost) did happen
    assert mock.count(action="CreateImage", outcome="lost_answer") > 0


async def _two_running_regions(fleet_mock: Any, per_region: int, *, seed: int) -> Any:
    """Two regions of running instances, at time scale 50, images pending 0.5 AWS s."""
    return await fleet_mock(
        MockConfig(
            regions=REGIONS[:2],
            instances_per_region=per_region,
            seed=seed,
            time_scale=50,
            pending_s=0.5,
            state_mix={"running": 1.0},
        )
    )


async def test_describe_images_calls_are_batched(fleet_mock: Any) -> None:
    mock = await _two_running_regions(fleet_mock, 150, seed=5)
    polls: list[Event] = []
    cfg = fleet_config(50, targets=[{"regions": list(REGIONS[:2]), "all_instances": True}])
    answers: list[dict[str, Any]] = []
    session = clients.new_session()  # its hooks reach every lane's clients: what they parsed
    session.register("after-call.ec2.DescribeImages", lambda **kw: answers.append(kw["parsed"]))
    report = await image_fleet(
        parse_config(cfg), endpoint_url=mock.endpoint_url, on_event=polls.append, session=session
    )
    assert report.counts["available"] == 300
    # The waiter's answers are parsed for what it reads, not for the images' tags (which
    # the run set) or block devices.
    images = [image for answer in answers for image in answer["Images"]]
    assert len(images) >= 300 and all(set(image) <= READ_IMAGE_MEMBERS for image in images)
    describe = mock.count(action="DescribeImages")
    # (150 images per lane fit one chunk; a lane of more than one chunk, with the calls of
    # each poll counted, is tests/integration/test_waiter.py's)
    # one image per call would be >= 300 calls per poll round; batched, it's a few per lane per poll
    assert describe < 300 * 0.2, describe


@pytest.mark.parametrize("make", [clients.new_session, get_session], ids=["ours", "stock"])
async def test_a_callers_session_hooks_see_every_lanes_calls(fleet_mock: Any, make: Any) -> None:
    """A session the caller passes is used as given by every lane (each account's session
    has its own credentials, and is otherwise the caller's): botocore's own session too,
    with its stock parser and full model."""
    mock = await _two_running_regions(fleet_mock, 20, seed=3)
    session: AioSession = make()
    calls: Counter[tuple[str, str]] = Counter()

    def seen(model: Any, context: Any, **_: Any) -> None:
        calls[(model.name, context["client_region"])] += 1

    session.register("before-call.ec2", seen)
    cfg = fleet_config(50, targets=[{"regions": list(REGIONS[:2]), "all_instances": True}])
    report = await image_fleet(parse_config(cfg), endpoint_url=mock.endpoint_url, session=session)
    assert report.counts["available"] == 40
    for region in REGIONS[:2]:
        assert calls[("CreateImage", region)] == 20
        assert calls[("DescribeInstances", region)] >= 1
        assert calls[("DescribeImages", region)] >= 1


async def test_failed_images_and_skips_are_reported(fleet_mock: Any) -> None:
    mock = await fleet_mock(
        MockConfig(
            regions=("us-east-1",),
            instances_per_region=40,
            seed=11,
            time_scale=20,
            pending_s=0.2,
            failure_rate=0.25,
        )
    )
    report = await image_fleet(parse_config(fleet_config(20)), endpoint_url=mock.endpoint_url)
    counts = report.counts
    assert counts["failed"] > 0 and counts["available"] > 0
    # every target accounted for; none timed out (the wait timeout is 60 s, images 0.01 s)
    assert counts["failed"] + counts["available"] + counts["skipped"] == 40
    assert counts["timed_out"] == 0
    assert counts["skipped"] == sum(
        1
        for i in mock.instances(mock.config.accounts[0], "us-east-1")
        if i["state"] not in {"running", "stopped", "stopping"}
    )
    for result in report.failures():
        assert result.error_code and result.image_id  # StateReason carried through
    assert not mock.duplicates()


async def test_wait_timeout_is_reported_per_image(fleet_mock: Any) -> None:
    mock = await fleet_mock(
        MockConfig(
            regions=("us-east-1",),
            instances_per_region=10,
            seed=2,
            pending_s=600,
            state_mix={"running": 1.0},
        )
    )
    cfg = fleet_config(1, wait={"poll_interval_s": 0.05, "timeout_s": 0.3})
    report = await image_fleet(parse_config(cfg), endpoint_url=mock.endpoint_url)
    assert report.counts["timed_out"] == 10
    assert all(r.image_id for r in report.results)


async def test_vanished_instance_is_skipped_alone(fleet_mock: Any) -> None:
    mock = await fleet_mock(
        MockConfig(
            regions=("us-east-1",),
            instances_per_region=20,
            seed=4,
            time_scale=20,
            pending_s=0.1,
            state_mix={"running": 1.0},
        )
    )
    account = mock.config.accounts[0]
    victim = mock.instances(account, "us-east-1")[0]["instance_id"]

    def terminate_on_discovery(event: Event) -> None:
        if type(event).__name__ == "Discovered" and event.instance_id == victim:
            mock.set_instance_state(account, "us-east-1", victim, "terminated")

    report = await image_fleet(
        parse_config(fleet_config(20)),
        endpoint_url=mock.endpoint_url,
        on_event=terminate_on_discovery,
    )
    by_id = {r.instance_id: r for r in report.results}
    # EC2 refused CreateImage for the instance's state: skipped with EC2's reason, not retried
    assert by_id[victim].outcome is Outcome.SKIPPED
    assert "InvalidParameterValue" in (by_id[victim].error_message or "")
    assert by_id[victim].attempts == 1
    assert report.counts["available"] == 19


async def test_error_budget_stops_new_work_only(fleet_mock: Any) -> None:
    mock = await fleet_mock(
        MockConfig(
            regions=("us-east-1",),
            instances_per_region=100,
            seed=8,
            time_scale=20,
            pending_s=0.1,
            failure_rate=1.0,
            state_mix={"running": 1.0},
        )
    )
    cfg = fleet_config(
        20,
        max_errors=3,
        concurrency={"max_in_flight_per_region": 2, "max_pending_images_per_region": 4},
    )
    report = await image_fleet(parse_config(cfg), endpoint_url=mock.endpoint_url)
    counts = report.counts
    assert counts["failed"] >= 4
    assert counts["not_started"] > 50
    assert counts["failed"] + counts["not_started"] == 100
    not_started = [r for r in report.results if r.outcome is Outcome.NOT_STARTED]
    assert all(r.error_code == "ErrorBudgetExceeded" for r in not_started)
    assert mock.count(action="CreateImage", outcome="ok") == counts["failed"]


async def test_deadline_reports_what_would_not_make_it(fleet_mock: Any) -> None:
    mock = await fleet_mock(
        MockConfig(
            regions=("us-east-1",),
            instances_per_region=200,
            seed=9,
            pending_s=0.05,
            state_mix={"running": 1.0},
        )
    )
    # CreateImage limited to a burst of 20 then 2/s, so 200 images need 90 s; the deadline
    # cuts at 5 s. Discovering 200 instances takes ~0.3 s, so 5 s is a generous margin for
    # some images to be created even on a loaded machine, and far too short for all of them.
    cfg = fleet_config(1)
    cfg["limits"]["CreateImage"] = {"burst": 20, "rate_per_s": 2.0}
    report = await image_fleet(
        parse_config(cfg),
        endpoint_url=mock.endpoint_url,
        deadline=now() + timedelta(seconds=5),
    )
    counts = report.counts
    created = mock.count(action="CreateImage", outcome="ok")
    # the deadline cut a run that was under way: some created, most never sent
    assert 20 <= created <= 20 + 2 * 5 + 1, created
    assert counts["not_started"] > 0
    # never sent: not started; sent but unanswered when the deadline came: unknown (no image)
    assert counts["not_started"] + counts["unknown"] == 200 - created
    assert all(r.image_id is None for r in report.results if r.outcome is Outcome.UNKNOWN)
    not_started = [r for r in report.results if r.outcome is Outcome.NOT_STARTED]
    assert all(r.error_code == "DeadlineReached" for r in not_started)
    assert counts["available"] + counts["timed_out"] == created
    assert not mock.duplicates()


async def test_graceful_stop_lets_in_flight_settle(fleet_mock: Any) -> None:
    mock = await fleet_mock(
        MockConfig(
            regions=("us-east-1", "eu-west-1"),
            instances_per_region=100,
            seed=10,
            pending_s=0.05,
            state_mix={"running": 1.0},
        )
    )
    stop = anyio.Event()
    seen: list[Event] = []

    def on_event(event: Event) -> None:
        seen.append(event)
        if sum(type(e).__name__ == "Created" for e in seen) == 60:
            stop.set()

    report = await image_fleet(
        parse_config(
            fleet_config(
                1, targets=[{"regions": ["us-east-1", "eu-west-1"], "all_instances": True}]
            )
        ),
        endpoint_url=mock.endpoint_url,
        on_event=on_event,
        stop=stop,
    )
    assert report.interrupted
    created = mock.count(action="CreateImage", outcome="ok")
    with_image = [r for r in report.results if r.image_id]
    assert len(with_image) == created  # every image the mock made is in the report
    assert report.counts["not_started"] == 200 - created
    assert not mock.duplicates()


async def test_throttles_slow_the_lane_down(fleet_mock: Any) -> None:
    # The server's CreateImage bucket is far below what the client believes (10 burst,
    # 1/s x 20 vs 50, 5/s x 20) and a neighbour drains half of it, so the lane is throttled
    # however slowly a loaded machine sends. Whether the limiter then cuts its rate depends
    # on the share of throttled answers (CONFIRM_SHARE), i.e. on the machine's speed; that
    # rule is pinned on a fake clock in tests/unit/test_confirm_share.py and test_ratelimit.py.
    mock = await fleet_mock(
        MockConfig(
            regions=("us-east-1",),
            instances_per_region=30,
            seed=12,
            time_scale=20,
            pending_s=0.05,
            neighbour_load=0.5,
            limits={"CreateImage": (10, 1.0), "DescribeImages": (100, 20.0)},
            state_mix={"running": 1.0},
        )
    )
    events: list[Event] = []
    report = await image_fleet(
        parse_config(fleet_config(20)), endpoint_url=mock.endpoint_url, on_event=events.append
    )
    # every image made exactly once although CreateImage was throttled on the way
    assert report.counts["available"] == 30
    assert any(isinstance(e, Throttled) and e.action == "CreateImage" for e in events)
    assert mock.count(action="CreateImage", outcome="ok") == 30
    assert not mock.duplicates()


async def test_a_lane_flat_out_keeps_to_the_mocks_refill_steps(fleet_mock: Any) -> None:
    """The mock refills CreateImage a second's tokens at once every (AWS) second, counting its
    seconds from the lane's first request, as a bucket made at first use would. The lane takes
    its burst and then a step's tokens at once each second: not one call is throttled. (The
    races a busy host plays here, a burst that takes more than a second to arrive while the
    mock's first step adds only what has arrived, are played out on a fake clock in
    tests/unit/test_limiter_refill.py.)"""
    mock = await fleet_mock(
        MockConfig(
            regions=("us-east-1",),
            instances_per_region=150,
            seed=5,
            time_scale=20,
            pending_s=1.0,
            refill="per_second",
            state_mix={"running": 1.0},
        )
    )
    # AWS's buckets (50, then 5 a second) and refill step (1 s), time-scaled as the mock's.
    cfg = fleet_config(time_scale=20, wait={"poll_interval_s": 1.0, "timeout_s": 600})
    del cfg["limits"]
    report = await image_fleet(parse_config(cfg), endpoint_url=mock.endpoint_url)
    assert report.counts["available"] == 150
    assert mock.count(action="CreateImage", outcome="ok") == 150
    assert mock.count(action="CreateImage", outcome="throttled") == 0


async def test_pending_images_cap_is_reached_and_never_exceeded(fleet_mock: Any) -> None:
    mock = await fleet_mock(
        MockConfig(
            regions=("us-east-1",),
            instances_per_region=12,
            seed=13,
            time_scale=20,
            pending_s=2.0,  # 0.1 s of wall time: creates outpace settling, the cap binds
            state_mix={"running": 1.0},
        )
    )
    pending: set[str] = set()
    most = 0

    def on_event(event: Event) -> None:
        nonlocal most
        name = type(event).__name__
        if name == "Created" and event.instance_id is not None:
            pending.add(event.instance_id)
            most = max(most, len(pending))
        elif name in {"Available", "Failed"}:
            pending.discard(event.instance_id or "")

    cfg = fleet_config(20, concurrency={"max_pending_images_per_region": 3})
    report = await image_fleet(parse_config(cfg), endpoint_url=mock.endpoint_url, on_event=on_event)
    assert report.counts["available"] == 12
    assert most == 3  # the cap was reached, and held


async def test_dry_run_sends_dry_run_only(fleet_mock: Any) -> None:
    mock = await fleet_mock(
        MockConfig(
            regions=("us-east-1",), instances_per_region=15, seed=13, state_mix={"running": 1.0}
        )
    )
    report = await image_fleet(
        parse_config(fleet_config(1)), endpoint_url=mock.endpoint_url, dry_run=True
    )
    assert report.counts["dry_run"] == 15
    assert mock.count(action="CreateImage", outcome="ok") == 0
    assert not mock.images(mock.config.accounts[0], "us-east-1")


async def test_failed_assume_role_fails_that_lane_only(fleet_mock: Any) -> None:
    denied = f"arn:aws:iam::{ACCOUNT_B}:role/denied"
    mock = await fleet_mock(
        MockConfig(
            regions=("us-east-1",),
            instances_per_region=10,
            accounts=(ACCOUNT_A, ACCOUNT_B),
            seed=14,
            time_scale=20,
            pending_s=0.05,
            state_mix={"running": 1.0},
            denied_roles=frozenset({denied}),
        )
    )
    cfg = fleet_config(
        20,
        targets=[
            {"regions": ["us-east-1"], "all_instances": True},
            {"regions": ["us-east-1"], "all_instances": True, "accounts": [{"role_arn": denied}]},
        ],
    )
    report = await image_fleet(parse_config(cfg), endpoint_url=mock.endpoint_url)
    assert [r for r in report.results if r.account == ACCOUNT_B] == []
    (lane,) = report.lane_failures
    assert (lane.account, lane.action, lane.error_code) == (ACCOUNT_B, "AssumeRole", "AccessDenied")
    assert report.counts["available"] == 10


async def test_endpoint_that_always_fails_create_image_is_not_stormed(fleet_mock: Any) -> None:
    """The lane's breaker, not a failure count, protects an endpoint that always fails: the
    lane pauses and probes, then stops after max_outage_s; nothing is blamed on the request."""
    mock = await fleet_mock(
        MockConfig(
            regions=("us-east-1",),
            instances_per_region=30,
            seed=15,
            state_mix={"running": 1.0},
            faults=FaultConfig(internal_error=1.0, actions=frozenset({"CreateImage"})),
        )
    )
    cfg = fleet_config(1)
    cfg["retry"]["max_outage_s"] = 1.5
    report = await image_fleet(parse_config(cfg), endpoint_url=mock.endpoint_url)
    # never sent: not started; sent (and answered 500): unknown, looked up by name on resume
    assert report.counts["not_started"] + report.counts["unknown"] == 30
    assert report.counts["not_started"] > 0 and report.counts["failed"] == 0
    assert not report.ok
    for result in report.results:
        assert result.error_code == "LaneOutage"
        message = result.error_message or ""
        assert "us-east-1" in message and "InternalError" in message, message
    # CreateImage never succeeded in the lane: the targets it stopped name the request's options
    assert any("image.tag_snapshots" in (r.error_message or "") for r in report.results)
    # A storm would be 30 targets retried for 1.5 s each; the breaker lets through the first
    # wave (max_in_flight_per_region = 20) and then one probe per cool-down.
    assert mock.count(action="CreateImage") <= 20 + 20


def test_run_fleet_is_the_sync_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    from fleetimage import run_fleet
    from fleetimage.mock import MockEC2Thread

    config = MockConfig(
        regions=("us-east-1",),
        instances_per_region=8,
        seed=16,
        time_scale=20,
        pending_s=0.05,
        state_mix={"running": 1.0},
    )
    with MockEC2Thread(config) as mock:
        for key, value in mock.credentials().items():
            monkeypatch.setenv(key.upper(), value)
        report = run_fleet(parse_config(fleet_config(20)), endpoint_url=mock.endpoint_url)
        assert report.counts["available"] == 8
        assert not mock.call(lambda m: m.duplicates())


async def test_a_confirmed_plan_is_imaged_exactly(fleet_mock: Any) -> None:
    from fleetimage.engine.plan import plan_fleet

    mock = await fleet_mock(
        MockConfig(
            regions=("us-east-1",),
            instances_per_region=12,
            seed=17,
            time_scale=20,
            pending_s=0.05,
            state_mix={"running": 1.0},
        )
    )
    config = parse_config(fleet_config(20))
    plan = await plan_fleet(config, endpoint_url=mock.endpoint_url)
    late = mock.add_instance(mock.config.accounts[0], "us-east-1", tags={"Name": "late"})
    report = await image_fleet(config, endpoint_url=mock.endpoint_url, plan=plan)
    assert report.run_id == plan.run_id
    assert report.counts["available"] == 12
    assert late not in {r.instance_id for r in report.results}
    assert mock.count(action="DescribeInstances") == 1  # planning only: no second discovery
    names = {s.name for s in plan.specs}
    assert {r.image_name for r in report.results} == names


async def test_the_runs_last_two_lanes_poll_as_the_last(
    fleet_mock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four lanes whose images the test lets settle one region at a time: once two lanes are
    left, those two (and only they) time their polls as the run's last, woken to do so."""
    regions = REGIONS[:4]
    mock = await fleet_mock(
        MockConfig(
            regions=regions,
            instances_per_region=3,
            time_scale=50,
            pending_s=3600,  # pending until the test says otherwise
            state_mix={"running": 1.0},
        )
    )
    account = mock.config.accounts[0]
    asked: dict[int, set[bool]] = {}
    next_delay = PollSchedule.next_delay

    def recorded(
        self: PollSchedule, now: float, registered_at: Any, *, last: bool = False
    ) -> float:
        asked.setdefault(id(self), set()).add(last)
        return next_delay(self, now, registered_at, last=last)

    monkeypatch.setattr(PollSchedule, "next_delay", recorded)
    settled: Counter[str] = Counter()
    lane_done = {region: anyio.Event() for region in regions}

    def on_event(event: Event) -> None:
        if isinstance(event, Available):
            settled[event.region] += 1
            if settled[event.region] == 3:
                lane_done[event.region].set()

    cfg = fleet_config(50, targets=[{"regions": list(regions), "all_instances": True}])
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                lambda: image_fleet(
                    parse_config(cfg), endpoint_url=mock.endpoint_url, on_event=on_event
                )
            )
            for _ in itertools.count():  # every image created, every lane's waiter polling
                if mock.count(action="CreateImage") == 12 and len(asked) == 4:
                    break
                await anyio.sleep(0.01)
            for n, region in enumerate(regions):
                for image in mock.images(account, region):
                    mock.set_image_state(account, region, image["image_id"], "available")
                await lane_done[region].wait()
                # Its images are seen, but the lane ends a moment later: the next region's
                # images are made available once the two lanes left have polled as the last
                # (else one of them could see its images on an ordinary poll in that moment).
                for _ in itertools.count():
                    if n != 1 or sum(True in seen for seen in asked.values()) == 2:
                        break
                    await anyio.sleep(0.01)
    assert len(asked) == 4 and all(False in seen for seen in asked.values())
    assert sum(True in seen for seen in asked.values()) == 2
