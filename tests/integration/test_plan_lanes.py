"""Planning end to end on the mock, without imaging: STS, one lane per (account, region),
discovery, the image specs, what is skipped or missing, and a confirmed plan reopened."""

from __future__ import annotations

import contextlib
import ssl
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

from fleetimage import parse_config
from fleetimage.aws import clients
from fleetimage.core.errors import AwsError
from fleetimage.core.models import LaneKey
from fleetimage.engine import plan as plan_module
from fleetimage.engine.bus import Bus
from fleetimage.engine.plan import LanePlan, open_lanes, plan_fleet
from fleetimage.engine.stop import Stopped, Stopper
from fleetimage.mock import FaultConfig, MockConfig

STARTED = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
RUN_ID = "run-plan-test"
EAST, WEST = "us-east-1", "us-west-2"


def _config(*targets: dict[str, Any]) -> Any:
    return parse_config(
        {
            "targets": list(targets) or [{"regions": [EAST], "all_instances": True}],
            "image": {"name_template": "{tag:Name}-{instance_id}-{run_id}"},
            "retry": {"base_delay_s": 0.01, "max_delay_s": 0.05, "max_outage_s": 5},
        }
    )


async def _fleet(fleet_mock: Any, regions: tuple[str, ...] = (EAST,)) -> Any:
    return await fleet_mock(MockConfig(regions=regions, instances_per_region=0))


async def _plan(mock: Any, config: Any, **kw: Any) -> Any:
    return await plan_fleet(
        config, endpoint_url=mock.endpoint_url, run_id=RUN_ID, started_at=STARTED, **kw
    )


async def test_each_state_is_planned_or_skipped_and_absent_ids_are_missing(
    fleet_mock: Any,
) -> None:
    mock = await _fleet(fleet_mock)
    account = mock.config.accounts[0]
    ids = {
        state: mock.add_instance(account, EAST, state=state, tags={"Name": state})
        for state in ("pending", "running", "shutting-down", "terminated", "stopping", "stopped")
    }
    absent = ["i-00000000ffffffff2", "i-00000000ffffffff1"]
    config = _config(
        {"regions": [EAST], "all_instances": True},
        {"regions": [EAST], "instance_ids": [ids["running"], *absent]},
    )
    plan = await _plan(mock, config)
    assert (plan.run_id, plan.started_at) == (RUN_ID, STARTED)
    assert list(plan.lanes) == [LaneKey(account, EAST)]
    lp = plan.lanes[LaneKey(account, EAST)]
    assert lp.error is None
    assert lp.lane is None  # plan_fleet closes its clients
    assert sorted(s.target.instance_id for s in lp.specs) == sorted(
        ids[s] for s in ("running", "stopping", "stopped")
    )
    assert {s.name for s in lp.specs} == {
        f"{state}-{ids[state]}-{RUN_ID}" for state in ("running", "stopping", "stopped")
    }
    assert plan.specs == lp.specs
    assert plan.units == []  # no organizational unit in the config
    skipped = {t.instance_id: reason for t, reason in lp.skipped}
    assert skipped == {
        ids[state]: f"instance is {state}; CreateImage needs running, stopping or stopped"
        for state in ("pending", "shutting-down", "terminated")
    }
    assert lp.missing == sorted(absent)  # sorted
    assert lp.collisions == []
    assert lp.adopted == {} and not lp.looked_up
    assert mock.count(action="DescribeImages") == 0


async def test_one_lane_per_region_and_a_shard_opens_only_its_own(fleet_mock: Any) -> None:
    mock = await _fleet(fleet_mock, (EAST, WEST))
    account = mock.config.accounts[0]
    east = mock.add_instance(account, EAST, tags={"Name": "e"})
    west = mock.add_instance(account, WEST, tags={"Name": "w"})
    config = _config({"regions": [EAST, WEST], "all_instances": True})
    plan = await _plan(mock, config)
    assert {k: [s.target.instance_id for s in lp.specs] for k, lp in plan.lanes.items()} == {
        LaneKey(account, EAST): [east],
        LaneKey(account, WEST): [west],
    }
    for key, lp in plan.lanes.items():
        assert lp.key == key
        assert all(s.target.lane == key for s in lp.specs)
    shard = await _plan(mock, config, owns=lambda key: key.region == WEST)
    assert list(shard.lanes) == [LaneKey(account, WEST)]
    assert mock.count(action="DescribeInstances", region=EAST) == 1  # only the first plan


async def test_a_name_two_targets_would_share_is_a_collision(
    fleet_mock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The template always holds the instance id, so names collide only if rendering does
    (here forced): the first target keeps the name, the other is reported."""
    mock = await _fleet(fleet_mock)
    account = mock.config.accounts[0]
    first = mock.add_instance(account, EAST, tags={"Name": "same"})
    mock.add_instance(account, EAST, tags={"Name": "same"})
    build_spec = plan_module.build_spec

    def same_name(*args: Any, **kw: Any) -> Any:
        return build_spec(*args, **kw, name="same")

    monkeypatch.setattr(plan_module, "build_spec", same_name)
    plan = await _plan(mock, _config())
    lp = plan.lanes[LaneKey(account, EAST)]
    assert [(s.name, s.target.instance_id) for s in lp.specs] == [("same", first)]
    assert [(s.name, other) for s, other in lp.collisions] == [("same", first)]


async def test_adopt_asks_each_lane_once_for_the_runs_images(fleet_mock: Any) -> None:
    mock = await _fleet(fleet_mock)
    account = mock.config.accounts[0]
    mock.add_instance(account, EAST, tags={"Name": "a"})
    plan = await _plan(mock, _config(), adopt=True)
    lp = plan.lanes[LaneKey(account, EAST)]
    assert lp.looked_up and lp.adopted == {} and len(lp.specs) == 1
    assert mock.count(action="DescribeImages") == 1


async def test_a_lane_whose_adoption_lookup_fails_plans_nothing(
    fleet_mock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    mock = await _fleet(fleet_mock)
    account = mock.config.accounts[0]
    mock.add_instance(account, EAST, tags={"Name": "a"})
    mock.add_instance(account, EAST, state="terminated")

    asked: list[str] = []

    async def refused(lane: Any, run_id: str) -> Any:
        asked.append(run_id)
        raise KeyError("imageId")  # not an AwsError: the lane's error names the action

    monkeypatch.setattr(plan_module, "find_run_images", refused)
    plan = await _plan(mock, _config({"regions": [EAST], "instance_ids": ["i-00000000ffffffff1"]}))
    lp = plan.lanes[LaneKey(account, EAST)]
    assert lp.missing == ["i-00000000ffffffff1"]  # without adopt, no lookup
    plan = await _plan(
        mock,
        _config(
            {"regions": [EAST], "all_instances": True},
            {"regions": [EAST], "instance_ids": ["i-00000000ffffffff1"]},
        ),
        adopt=True,
    )
    lp = plan.lanes[LaneKey(account, EAST)]
    assert asked == [RUN_ID]
    assert lp.error is not None
    assert (lp.error.code, lp.error.message, lp.error.action) == (
        "DiscoveryFailed",
        "KeyError: 'imageId'",
        "DescribeImages",
    )
    assert (lp.specs, lp.skipped, lp.missing, lp.collisions) == ([], [], [], [])
    assert not lp.looked_up


@pytest.mark.parametrize(
    ("raised", "code", "message"),
    [
        (AwsError("UnauthorizedOperation", "denied", action="DescribeInstances"), None, None),
        (
            Stopped("SIGTERM"),
            "SIGTERM",
            "the run stopped before this lane's discovery finished; resume discovers it",
        ),
        (ValueError("odd page"), "DiscoveryFailed", "ValueError: odd page"),
    ],
)
async def test_a_lane_whose_discovery_fails_records_why(
    fleet_mock: Any,
    monkeypatch: pytest.MonkeyPatch,
    raised: Exception,
    code: str | None,
    message: str | None,
) -> None:
    mock = await _fleet(fleet_mock)
    account = mock.config.accounts[0]
    mock.add_instance(account, EAST, tags={"Name": "a"})

    async def failing(*args: Any, **kw: Any) -> Any:
        raise raised

    monkeypatch.setattr(plan_module, "discover_lane", failing)
    plan = await _plan(mock, _config(), adopt=True)
    lp = plan.lanes[LaneKey(account, EAST)]
    assert lp.error is not None
    if code is None:
        assert lp.error is raised
    else:
        assert (lp.error.code, lp.error.message, lp.error.action) == (
            code,
            message,
            "DescribeInstances",
        )
    assert lp.specs == [] and not lp.looked_up
    assert mock.count(action="DescribeImages") == 0


async def test_a_confirmed_plan_is_reopened_without_discovering_again(fleet_mock: Any) -> None:
    mock = await _fleet(fleet_mock, (EAST, WEST))
    account = mock.config.accounts[0]
    mock.add_instance(account, EAST, tags={"Name": "a"})
    mock.add_instance(account, EAST, state="terminated")
    config = _config(
        {"regions": [EAST, WEST], "all_instances": True},
        {"regions": [EAST], "instance_ids": ["i-00000000ffffffff1"]},
    )
    planned = await _plan(mock, config, adopt=True)
    east, west = LaneKey(account, EAST), LaneKey(account, WEST)
    planned.lanes[west].error = AwsError("Unavailable", "down", action="DescribeInstances")
    late = mock.add_instance(account, WEST, tags={"Name": "late"})
    before = mock.count(action="DescribeInstances")
    looked = mock.count(action="DescribeImages", region=EAST)
    ready: list[LanePlan] = []

    async def on_ready(lp: LanePlan) -> None:
        assert lp.lane is not None
        ready.append(lp)

    async with contextlib.AsyncExitStack() as stack:
        plan = await open_lanes(
            config,
            session=clients.new_session(),
            endpoint_url=mock.endpoint_url,
            run_id=RUN_ID,
            started_at=STARTED,
            bus=Bus([]),
            stack=stack,
            planned=planned,
            on_lane_ready=on_ready,
            adopt=True,
        )
    assert sorted(lp.key.region for lp in ready) == [EAST, WEST]
    reopened = plan.lanes[east]
    was = planned.lanes[east]
    assert (reopened.specs, reopened.skipped, reopened.missing, reopened.collisions) == (
        was.specs,
        was.skipped,
        was.missing,
        was.collisions,
    )
    assert reopened.specs is not was.specs and reopened.missing == ["i-00000000ffffffff1"]
    assert len(reopened.skipped) == 1
    # adopt: the reopened lane had been asked for the run's images; it is not asked again
    assert reopened.looked_up
    assert mock.count(action="DescribeImages", region=EAST) == looked == 1
    # the lane whose plan had failed is discovered again; only it
    assert [s.target.instance_id for s in plan.lanes[west].specs] == [late]
    assert mock.count(action="DescribeInstances") == before + 1
    assert mock.count(action="DescribeInstances", region=WEST) == 2


async def test_without_a_run_id_or_start_plan_fleet_makes_them(fleet_mock: Any) -> None:
    mock = await _fleet(fleet_mock)
    mock.add_instance(mock.config.accounts[0], EAST, tags={"Name": "a"})
    before = datetime.now(UTC)
    plan = await plan_fleet(_config(), endpoint_url=mock.endpoint_url)
    assert before <= plan.started_at <= datetime.now(UTC)  # aware, in UTC
    assert plan.run_id and plan.run_id in plan.specs[0].name


async def test_each_opened_lane_is_built_as_the_config_asks(fleet_mock: Any) -> None:
    """What imaging gets from ``open_lanes``: the client's pool and timeouts, the lane's
    buckets (the region's own limits, the throttle-confirmation share, the limiter's
    coalescing window), and the run's id, bus, stopper and credentials."""
    mock = await _fleet(fleet_mock, (EAST, WEST))
    config = parse_config(
        {
            "targets": [{"regions": [EAST, WEST], "all_instances": True}],
            "limits": {
                "CreateImage": {"burst": 40, "rate_per_s": 500},
                "regions": {WEST: {"CreateImage": {"burst": 7, "rate_per_s": 900}}},
            },
            "concurrency": {"max_in_flight_per_region": 13},
            "retry": {"request_timeout_s": 7.5},
            "limiter": {"min_coalesce_s": 0.001},
        }
    )
    bus, stopper = Bus([]), Stopper()
    async with contextlib.AsyncExitStack() as stack:
        plan = await open_lanes(
            config,
            session=clients.new_session(),
            endpoint_url=mock.endpoint_url,
            run_id=RUN_ID,
            started_at=STARTED,
            bus=bus,
            stack=stack,
            stopper=stopper,
        )
        assert sorted(k.region for k in plan.lanes) == [EAST, WEST]
        assert mock.count(action="DescribeImages") == 0  # adoption only when asked for
        tls: list[Any] = []  # each lane's TLS context (~30 ms of CPU to build one)
        for key, lp in plan.lanes.items():
            lane = lp.lane
            assert lane is not None and lp.error is None
            assert lane.run_id == RUN_ID and lane.bus is bus and lane.stopper is stopper
            # the caller's own renewing credentials sign the lane's requests
            assert lane.credentials is not None and lane.credentials.own
            client_config = lane.client.meta.config
            # room for every CreateImage in flight plus the waiter, lookups and discovery
            assert client_config.max_pool_connections == 13 + 8
            assert (client_config.read_timeout, client_config.connect_timeout) == (7.5, 7.5)
            assert (
                client_config.retries["total_max_attempts"] == 1
            )  # tenacity retries, not botocore
            # one fixed User-Agent, on the wire too (botocore builds none per request)
            assert client_config.user_agent.startswith(clients.USER_AGENT)
            sent: list[str] = []

            def record(request: Any, sent: list[str] = sent, **_: Any) -> None:
                sent.append(request.headers["User-Agent"].decode())

            lane.client.meta.events.register("before-send.ec2.DescribeInstances", record)
            await lane.client.describe_instances(MaxResults=5)
            assert len(sent) == 1 and sent[0].startswith(clients.USER_AGENT + " ")
            # the query body is encoded once, before signing, not again when it is sent
            bodies: list[Any] = []

            def signed(request: Any, bodies: list[Any] = bodies, **_: Any) -> None:
                bodies.append(request.data)

            lane.client.meta.events.register_last("before-sign", signed)
            await lane.client.describe_instances(MaxResults=5)
            assert len(bodies) == 1 and isinstance(bodies[0], bytes)
            assert b"Action=DescribeInstances" in bodies[0] and b"MaxResults=5" in bodies[0]
            tls.append(lane.client._endpoint.http_session._sessions[None].connector._ssl)
            limits = config.limits_for(key.region)
            assert set(lane.limiter.actions) == set(limits)
            for action, (burst, rate) in limits.items():
                bucket = lane.limiter.bucket(action)
                assert (bucket.burst, bucket.ceiling_per_s) == (burst, rate), (key, action)

        # The lanes' clients share one TLS context, built once (aws.clients.SharedTLSSession).
        assert len(tls) == 2 and tls[0] is tls[1] and isinstance(tls[0], ssl.SSLContext)
        # The limiter's settings, seen through its answers to throttles (no clock is
        # injected here: the windows involved are 1 ms against a 50 ms pause, and a slower
        # machine only widens the gap).
        bucket = plan.lanes[LaneKey(mock.config.accounts[0], WEST)].lane.limiter.bucket(  # type: ignore[union-attr]
            "CreateImage"
        )
        assert bucket.ceiling_per_s == 900
        # an isolated throttle is not acted on: only a share of 20 % of answers confirms it
        assert bucket.on_throttle() == 900
        assert bucket.on_throttle() == 900
        cut = bucket.on_throttle()  # the third in a row confirms the shortage
        assert cut < 900
        assert bucket.on_throttle() == cut  # within the coalescing window: the same event
        # limiter.min_coalesce_s (1 ms) has passed: a new throttle is a new cut (the
        # default window, 1 s, would still hold it)
        await anyio.sleep(0.05)
        assert bucket.on_throttle() < cut


async def test_planning_reports_its_lanes_retries_on_a_bus_of_its_own(fleet_mock: Any) -> None:
    """``plan_fleet`` has no bus from a caller; a throttled DescribeInstances is retried and
    reported all the same, and the lane is planned."""
    mock = await fleet_mock(
        MockConfig(
            regions=(EAST,),
            instances_per_region=3,
            state_mix={"running": 1.0},
            faults=FaultConfig(throttle=0.5, actions=frozenset({"DescribeInstances"})),
            seed=2,  # the faults' draws: the first DescribeInstances is throttled, not the next
        )
    )
    plan = await _plan(mock, _config())
    (lp,) = plan.lanes.values()
    assert lp.error is None and len(lp.specs) == 3
    assert mock.count("DescribeInstances", "fault") == 1  # throttled once, then answered
    assert mock.count("DescribeInstances", "ok") == 1
