"""Discovery on its own, through aiobotocore against the mock: one lane, every DescribeInstances
call recorded, so each assertion is about what was asked and what came back."""

from __future__ import annotations

from typing import Any

from lane_helpers import REGION, lane_on

from fleetimage.config import TargetSpec
from fleetimage.engine.discovery import LaneDiscovery, discover_lane
from fleetimage.engine.lane import Lane
from fleetimage.mock import MockConfig

ROLE = "arn:aws:iam::123456789012:role/imager"


def _mock(n: int, **kw: Any) -> MockConfig:
    return MockConfig(regions=(REGION,), instances_per_region=n, **kw)


def _spy(lane: Lane) -> list[dict[str, Any]]:
    """Record the parameters of every call the lane makes (a copy, as sent)."""
    sent: list[dict[str, Any]] = []
    call = lane.call

    async def recording(action: str, params: dict[str, Any], **kw: Any) -> Any:
        assert action == "DescribeInstances"
        sent.append(dict(params))
        return await call(action, params, **kw)

    lane.call = recording  # type: ignore[method-assign]
    return sent


def _spec(**kw: Any) -> TargetSpec:
    return TargetSpec(regions=(REGION,), **kw)


def _fake_ids(n: int) -> list[str]:
    return [f"i-{k:017x}" for k in range(0xFFFFF000, 0xFFFFF000 + n)]


async def test_all_instances_are_read_page_by_page(mock_ec2: Any, ec2_client: Any) -> None:
    """1005 instances: two pages, a small first one (the lane images from it sooner) and one
    of at most 1000 asked for with its token, no filter at all; every instance found once,
    with its state and tags."""
    mock = await mock_ec2(_mock(1005, state_mix={"running": 0.5, "stopped": 0.5}))
    account = mock.config.accounts[0]
    expected = {i["instance_id"]: i for i in mock.instances(account, REGION)}
    async with lane_on(mock, ec2_client) as lane:
        sent = _spy(lane)
        found = await discover_lane(lane, [_spec(all_instances=True)], role_arn=ROLE)
    assert [set(p) for p in sent] == [{"MaxResults"}, {"MaxResults", "NextToken"}]
    assert [p["MaxResults"] for p in sent] == [100, 1000]
    assert sent[1]["NextToken"]
    assert set(found.targets) == set(expected)
    assert found.missing == set()
    for iid, target in found.targets.items():
        assert (target.account, target.region, target.instance_id) == (account, REGION, iid)
        assert target.state == expected[iid]["state"]
        assert target.tags == expected[iid]["tags"]
        assert target.tags  # the mock's fleet is tagged: Name, Env, Team
        assert target.role_arn == ROLE
    assert {t.state for t in found.targets.values()} == {"running", "stopped"}


async def test_a_tag_filter_is_sent_as_ec2_filters(mock_ec2: Any, ec2_client: Any) -> None:
    mock = await mock_ec2(_mock(30, state_mix={"running": 1.0}))
    account = mock.config.accounts[0]
    prod = {i["instance_id"] for i in mock.instances(account, REGION) if i["tags"]["Env"] == "prod"}
    assert 0 < len(prod) < 30
    async with lane_on(mock, ec2_client) as lane:
        sent = _spy(lane)
        found = await discover_lane(lane, [_spec(filters={"tag:Env": "prod"})], role_arn=None)
    assert sent == [{"MaxResults": 100, "Filters": [{"Name": "tag:Env", "Values": ["prod"]}]}]
    assert set(found.targets) == prod
    assert all(t.role_arn is None for t in found.targets.values())


async def test_explicit_ids_go_by_filter_in_chunks_and_the_absent_are_missing(
    mock_ec2: Any, ec2_client: Any
) -> None:
    """410 real ids (one listed twice) and 5 unknown ones: three calls of 200, 200 and 15
    ids through the ``instance-id`` filter, never ``InstanceIds``; the 5 are missing."""
    mock = await mock_ec2(_mock(410, state_mix={"running": 0.4, "stopped": 0.3, "stopping": 0.3}))
    account = mock.config.accounts[0]
    real = [i["instance_id"] for i in mock.instances(account, REGION)]
    # the instances in states CreateImage refuses are still found: the engine skips them
    mock.set_instance_state(account, REGION, real[0], "terminated")
    mock.set_instance_state(account, REGION, real[1], "pending")
    absent = _fake_ids(5)
    ids = [*real[:300], real[0], *absent[:2], *real[300:], *absent[2:]]
    async with lane_on(mock, ec2_client) as lane:
        sent = _spy(lane)
        found = await discover_lane(lane, [_spec(instance_ids=tuple(ids))], role_arn=ROLE)
    unique = list(dict.fromkeys(ids))
    assert [p["Filters"] for p in sent] == [
        [{"Name": "instance-id", "Values": unique[0:200]}],
        [{"Name": "instance-id", "Values": unique[200:400]}],
        [{"Name": "instance-id", "Values": unique[400:]}],
    ]
    assert all(set(p) == {"MaxResults", "Filters"} for p in sent)
    assert set(found.targets) == set(real)
    assert found.missing == set(absent)
    assert found.targets[real[0]].state == "terminated"
    assert found.targets[real[1]].state == "pending"
    assert {t.role_arn for t in found.targets.values()} == {ROLE}


async def test_with_other_filters_an_absent_id_is_not_called_missing(
    mock_ec2: Any, ec2_client: Any
) -> None:
    mock = await mock_ec2(_mock(6, state_mix={"running": 1.0}))
    account = mock.config.accounts[0]
    real = [i["instance_id"] for i in mock.instances(account, REGION)]
    mock.set_instance_state(account, REGION, real[0], "stopped")
    ids = (*real[:3], *_fake_ids(1))
    spec = _spec(instance_ids=ids, filters={"instance-state-name": "running"})
    async with lane_on(mock, ec2_client) as lane:
        sent = _spy(lane)
        found = await discover_lane(lane, [spec], role_arn=None)
    assert sent == [
        {
            "MaxResults": 1000,
            "Filters": [
                {"Name": "instance-state-name", "Values": ["running"]},
                {"Name": "instance-id", "Values": list(ids)},
            ],
        }
    ]
    assert set(found.targets) == set(real[1:3])
    assert found.missing == set()


async def test_an_instance_found_twice_counts_once_as_first_found(
    mock_ec2: Any, ec2_client: Any
) -> None:
    """Two selectors both cover an instance whose state changes between them: one target,
    as the first selector saw it; an id missing for one selector but found by a later one
    (into the same discovery) is not missing."""
    mock = await mock_ec2(_mock(4, state_mix={"running": 1.0}))
    account = mock.config.accounts[0]
    real = [i["instance_id"] for i in mock.instances(account, REGION)]
    earlier = LaneDiscovery(missing={real[3]})
    async with lane_on(mock, ec2_client) as lane:
        sent = _spy(lane)
        call = lane.call

        async def then_stop(action: str, params: dict[str, Any], **kw: Any) -> Any:
            answer = await call(action, params, **kw)
            mock.set_instance_state(account, REGION, real[0], "stopped")
            return answer

        lane.call = then_stop  # type: ignore[method-assign]
        specs = [_spec(instance_ids=(real[0], real[1])), _spec(all_instances=True)]
        found = await discover_lane(lane, specs, role_arn=None, into=earlier)
    assert found is earlier
    assert len(sent) == 2
    assert set(found.targets) == set(real)
    assert found.targets[real[0]].state == "running"
    assert found.missing == set()


async def test_an_instance_without_state_or_tags(mock_ec2: Any, ec2_client: Any) -> None:
    """Defaults for what EC2 may leave out: no tags (an empty dict), no state ("unknown"),
    a tag without a key (ignored)."""
    mock = await mock_ec2(_mock(0))
    account = mock.config.accounts[0]
    bare = mock.add_instance(account, REGION, tags={"a": "b"})
    odd = mock.add_instance(account, REGION, tags={"k": "v"})
    async with lane_on(mock, ec2_client) as lane:
        call = lane.call

        async def stripped(action: str, params: dict[str, Any], **kw: Any) -> Any:
            answer = await call(action, params, **kw)
            for reservation in answer["Reservations"]:
                for instance in reservation["Instances"]:
                    if instance["InstanceId"] == bare:
                        instance.pop("State")
                        instance.pop("Tags")
                    else:
                        instance["Tags"].append({"Value": "no key"})
            return answer

        lane.call = stripped  # type: ignore[method-assign]
        found = await discover_lane(lane, [_spec(all_instances=True)], role_arn=None)
    assert found.targets[bare].state == "unknown"
    assert found.targets[bare].tags == {}
    assert found.targets[odd].state == "running"
    assert found.targets[odd].tags == {"k": "v"}
