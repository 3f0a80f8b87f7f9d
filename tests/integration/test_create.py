"""Idempotent CreateImage (engine/create.py) on one lane, through aiobotocore against the
mock: the name is the idempotency key, so every path that may have applied a request ends
in exactly one image, and a name that is someone else's is never adopted."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from lane_helpers import LIMITS, REGION, RUN_ID, lane_on

from fleetimage.core.errors import AwsError, ErrorKind
from fleetimage.core.models import ImageSpec, Target
from fleetimage.core.tags import INSTANCE_TAG, RUN_TAG
from fleetimage.engine.create import check_dry_run, create_image, create_params
from fleetimage.mock import FaultConfig, MockConfig, MockEC2


def _mock(**kw: Any) -> MockConfig:
    return MockConfig(
        regions=(REGION,),
        instances_per_region=2,
        pending_s=3600,
        state_mix={"running": 1.0},
        limits=LIMITS,
        **kw,
    )


def spec_for(mock: MockEC2, n: int = 0, **kw: Any) -> ImageSpec:
    account = mock.config.accounts[0]
    instance_id = mock.instances(account, REGION)[n]["instance_id"]
    fields: dict[str, Any] = {
        "target": Target(account, REGION, instance_id),
        "name": f"img-{instance_id}-{RUN_ID}",
        "description": "",
        "no_reboot": True,
        "tags": {RUN_TAG: RUN_ID, INSTANCE_TAG: instance_id, "Purpose": "test"},
        "tag_snapshots": False,
    }
    fields.update(kw)
    return ImageSpec(**fields)


async def images_named(lane: Any, name: str) -> list[dict[str, Any]]:
    answer = await lane.client.describe_images(
        Owners=["self"], Filters=[{"Name": "name", "Values": [name]}]
    )
    return list(answer["Images"])


def test_the_request_says_what_the_spec_says() -> None:
    target = Target("123456789012", REGION, "i-0123456789abcdef0")
    tags = {RUN_TAG: "r", INSTANCE_TAG: target.instance_id}
    spec = ImageSpec(
        target,
        "n",
        "before patching",
        False,
        tags,
        True,
        exclude_devices=("/dev/sdb", "/dev/sdc"),
    )
    tag_list = [{"Key": k, "Value": v} for k, v in tags.items()]
    assert create_params(spec, dry_run=True) == {
        "InstanceId": "i-0123456789abcdef0",
        "Name": "n",
        "NoReboot": False,
        "Description": "before patching",
        "TagSpecifications": [
            {"ResourceType": "image", "Tags": tag_list},
            {"ResourceType": "snapshot", "Tags": tag_list},
        ],
        "BlockDeviceMappings": [
            {"DeviceName": "/dev/sdb", "NoDevice": ""},
            {"DeviceName": "/dev/sdc", "NoDevice": ""},
        ],
        "DryRun": True,
    }
    plain = ImageSpec(target, "n", "", True, tags, False)
    assert create_params(plain) == {
        "InstanceId": "i-0123456789abcdef0",
        "Name": "n",
        "NoReboot": True,
        "TagSpecifications": [{"ResourceType": "image", "Tags": tag_list}],
    }


async def test_a_new_image_is_made_once_with_its_tags(mock_ec2: Any, ec2_client: Any) -> None:
    mock = await mock_ec2(_mock())
    spec = spec_for(mock, description="nightly")
    async with lane_on(mock, ec2_client) as lane:
        created = await create_image(lane, spec)
        (image,) = await images_named(lane, spec.name)
    assert (created.image_id, created.adopted, created.attempts) == (image["ImageId"], False, 1)
    assert image["Description"] == "nightly"
    assert {t["Key"]: t["Value"] for t in image["Tags"]} == spec.tags
    assert lane.create_successes == 1
    assert mock.count(action="CreateImage", outcome="ok") == 1


async def test_our_image_under_the_name_is_adopted_not_duplicated(
    mock_ec2: Any, ec2_client: Any
) -> None:
    """An earlier attempt was applied (its answer lost): EC2 answers InvalidAMIName.Duplicate
    and the image, tagged with this run and instance, is adopted."""
    mock = await mock_ec2(_mock())
    spec = spec_for(mock)
    async with lane_on(mock, ec2_client) as lane:
        earlier = await lane.client.create_image(**create_params(spec))
        created = await create_image(lane, spec)
    assert (created.image_id, created.adopted, created.attempts) == (earlier["ImageId"], True, 1)
    assert lane.create_successes == 1
    assert not mock.duplicates()


async def test_resume_looks_the_name_up_before_sending(mock_ec2: Any, ec2_client: Any) -> None:
    mock = await mock_ec2(_mock())
    spec = spec_for(mock)
    async with lane_on(mock, ec2_client) as lane:
        earlier = await lane.client.create_image(**create_params(spec))
        sent = mock.count(action="CreateImage")
        created = await create_image(lane, spec, lookup_first=True)
        assert mock.count(action="CreateImage") == sent  # found by name: nothing sent
        assert (created.image_id, created.adopted, created.attempts) == (
            earlier["ImageId"],
            True,
            0,
        )
        # nothing under the name yet: resume sends it, once
        other = spec_for(mock, 1)
        made = await create_image(lane, other, lookup_first=True)
    assert (made.adopted, made.attempts) == (False, 1)
    assert lane.create_successes == 2


@pytest.mark.parametrize("lookup_first", [False, True])
async def test_a_name_taken_by_someone_else_is_never_adopted(
    mock_ec2: Any, ec2_client: Any, lookup_first: bool
) -> None:
    mock = await mock_ec2(_mock())
    spec = spec_for(mock)
    async with lane_on(mock, ec2_client) as lane:
        theirs = await lane.client.create_image(
            InstanceId=spec.target.instance_id, Name=spec.name
        )  # same name, not our tags
        with pytest.raises(AwsError) as caught:
            await create_image(lane, spec, lookup_first=lookup_first)
    error = caught.value
    assert (error.code, error.kind) == ("InvalidAMIName.Duplicate", ErrorKind.FATAL)
    assert f"is already used by {theirs['ImageId']}, which was not created by this run" in (
        error.message
    )
    assert lane.create_successes == 0
    assert mock.count(action="CreateImage", outcome="ok") == 1  # only theirs


async def test_a_duplicate_still_invisible_is_named_from_ec2s_message(
    mock_ec2: Any, ec2_client: Any
) -> None:
    """EC2 enforces the name before DescribeImages shows the image: within the grace the
    name stays unresolved, and the error names the AMI id parsed from EC2's message."""
    mock = await mock_ec2(_mock(visibility_lag_s=3600))
    spec = spec_for(mock)
    async with lane_on(mock, ec2_client) as lane:
        hidden = await lane.client.create_image(**create_params(spec))
        with pytest.raises(AwsError) as caught:
            await create_image(lane, spec, grace_s=0.2)
    message = caught.value.message
    assert caught.value.code == "InvalidAMIName.Duplicate"
    assert f"is already used by {hidden['ImageId']}, which stayed invisible" in message
    assert "for 0.2 s" in message
    # it asked again while waiting (the lookup repeats until the grace is spent)
    assert mock.count(action="DescribeImages") >= 2


async def test_a_duplicate_that_becomes_visible_is_adopted(mock_ec2: Any, ec2_client: Any) -> None:
    mock = await mock_ec2(_mock(visibility_lag_s=0.3))
    spec = spec_for(mock)
    async with lane_on(mock, ec2_client) as lane:
        earlier = await lane.client.create_image(**create_params(spec))
        with anyio.fail_after(30):  # visible after 0.3 s; 100x that before giving up
            created = await create_image(lane, spec, grace_s=30)
    assert (created.image_id, created.adopted) == (earlier["ImageId"], True)


async def test_a_lost_answer_is_resolved_by_name_not_resent(mock_ec2: Any, ec2_client: Any) -> None:
    """The request is applied and the connection dropped: the retry looks the name up first
    and adopts the image; CreateImage is not sent again."""
    mock = await mock_ec2(
        _mock(faults=FaultConfig(lost_answer=1.0, actions=frozenset({"CreateImage"})))
    )
    spec = spec_for(mock)
    async with lane_on(mock, ec2_client) as lane:
        created = await create_image(lane, spec)
        (image,) = await images_named(lane, spec.name)
    assert (created.image_id, created.adopted, created.attempts) == (image["ImageId"], True, 1)
    assert mock.count(action="CreateImage") == 1
    assert not mock.duplicates()


async def test_dry_run_creates_nothing(mock_ec2: Any, ec2_client: Any) -> None:
    mock = await mock_ec2(_mock())
    spec = spec_for(mock)
    async with lane_on(mock, ec2_client) as lane:
        ok, code, _message = await check_dry_run(lane, spec)
        assert await images_named(lane, spec.name) == []
    assert (ok, code) == (True, "DryRunOperation")
