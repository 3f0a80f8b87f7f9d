"""DescribeImages counted by kind (poll by id, lookup by name, listing by tag) and outcome,
through the real aiobotocore client on 127.0.0.1: what the benchmarks' polls-per-image
figure is made of."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from botocore.exceptions import ClientError, ConnectionClosedError

from fleetimage.mock import FaultConfig, MockConfig
from fleetimage.mock.request_kinds import describe_images_kind, request_kind

ACCOUNT = "123456789012"
REGION = "us-east-1"


def kinds(mock: Any) -> dict[tuple[str, str], int]:
    """(kind, outcome) -> count for DescribeImages in ACCOUNT/REGION."""
    return {
        (k, o): n
        for (a, r, act, k, o), n in mock.request_kinds.items()
        if (a, r, act) == (ACCOUNT, REGION, "DescribeImages")
    }


async def test_polls_lookups_and_listings_land_in_their_own_counters(
    mock_ec2: Any, ec2_client: Any
) -> None:
    mock = await mock_ec2(MockConfig(instances_per_region=0))
    iid = mock.add_instance(ACCOUNT, REGION)
    async with ec2_client(mock, REGION) as ec2:
        made = await ec2.create_image(
            InstanceId=iid,
            Name="fleet-run1-a",
            TagSpecifications=[
                {"ResourceType": "image", "Tags": [{"Key": "fleetimage:run-id", "Value": "r1"}]}
            ],
        )
        image_id = made["ImageId"]
        # the boto3 scripts' poll (ImageIds) and the engine's waiter (image-id filter)
        by_ids = await ec2.describe_images(ImageIds=[image_id])
        by_filter = await ec2.describe_images(
            Filters=[
                {"Name": "image-id", "Values": [image_id]},
                {"Name": "state", "Values": ["available", "failed"]},
            ]
        )
        # the engine's lookup after an ambiguous CreateImage answer
        by_name = await ec2.describe_images(
            Owners=["self"], Filters=[{"Name": "name", "Values": ["fleet-run1-a"]}]
        )
        # adoption's listing of the run's images
        by_tag = await ec2.describe_images(
            Owners=["self"],
            Filters=[{"Name": "tag:fleetimage:run-id", "Values": ["r1"]}],
            MaxResults=1000,
        )
        # a poll for an id EC2 does not know fails as a whole: a failed poll, not a success
        with pytest.raises(ClientError):
            await ec2.describe_images(ImageIds=["ami-0000000000000dead"])
        await ec2.describe_instances()  # no kind: counted by outcome only
    assert [i["ImageId"] for i in by_ids["Images"]] == [image_id]
    assert [i["ImageId"] for i in by_name["Images"]] == [image_id]
    assert [i["ImageId"] for i in by_tag["Images"]] == [image_id]
    assert by_filter["Images"] == [] or by_filter["Images"][0]["ImageId"] == image_id
    assert kinds(mock) == {
        ("poll", "ok"): 2,
        ("poll", "error"): 1,
        ("lookup", "ok"): 1,
        ("listing", "ok"): 1,
    }
    # every counted DescribeImages has exactly one kind; other actions have none
    assert sum(kinds(mock).values()) == mock.count(action="DescribeImages")
    assert {act for (_, _, act, _, _) in mock.request_kinds} == {"DescribeImages"}

    # the same over HTTP, as the benchmarks read it; a reset forgets it
    async with (
        aiohttp.ClientSession() as http,
        http.get(mock.endpoint_url + "/_mock/request_kinds") as resp,
    ):
        rows = await resp.json()
    assert {"action": "DescribeImages", "kind": "lookup", "outcome": "ok", "count": 1} in [
        {k: row[k] for k in ("action", "kind", "outcome", "count")} for row in rows
    ]
    mock.reset()
    assert mock.request_kinds == {}


async def test_throttled_faulted_and_lost_polls_are_not_successes(
    mock_ec2: Any, ec2_client: Any
) -> None:
    # two tokens, no refill worth the name: the third poll is throttled by the bucket
    mock = await mock_ec2(MockConfig(limits={"DescribeImages": (2, 0.0001)}))
    async with ec2_client(mock, REGION) as ec2:
        await ec2.describe_images(Owners=["self"])
        await ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": ["x"]}])
        with pytest.raises(ClientError) as exc:
            await ec2.describe_images(Filters=[{"Name": "image-id", "Values": ["ami-1"]}])
    assert exc.value.response["Error"]["Code"] == "RequestLimitExceeded"
    assert kinds(mock) == {("listing", "ok"): 1, ("lookup", "ok"): 1, ("poll", "throttled"): 1}

    only = frozenset({"DescribeImages"})
    for faults, outcome, error in (
        (FaultConfig(internal_error=1.0, actions=only), "fault", ClientError),
        (FaultConfig(throttle=1.0, actions=only), "fault", ClientError),
        (FaultConfig(lost_answer=1.0, actions=only), "lost_answer", ConnectionClosedError),
    ):
        mock = await mock_ec2(MockConfig(faults=faults))
        async with ec2_client(mock, REGION) as ec2:
            with pytest.raises(error):
                await ec2.describe_images(Filters=[{"Name": "image-id", "Values": ["ami-1"]}])
            with pytest.raises(error):
                await ec2.describe_images(
                    Owners=["self"], Filters=[{"Name": "name", "Values": ["x"]}]
                )
        assert kinds(mock) == {("poll", outcome): 1, ("lookup", outcome): 1}, faults


@pytest.mark.parametrize(
    ("form", "kind"),
    [
        ({"ImageId.1": "ami-1", "ImageId.2": "ami-2"}, "poll"),
        ({"Filter.1.Name": "image-id", "Filter.1.Value.1": "ami-1"}, "poll"),
        ({"Filter.1.Name": "state", "Filter.2.Name": "image-id"}, "poll"),
        ({"Filter.1.Name": "name", "Filter.1.Value.1": "n", "Owner.1": "self"}, "lookup"),
        ({"ImageId.1": "ami-1", "Filter.1.Name": "name"}, "lookup"),
        ({"Filter.1.Name": "tag:fleetimage:run-id", "Owner.1": "self"}, "listing"),
        ({}, "listing"),
    ],
)
def test_describe_images_kind(form: dict[str, str], kind: str) -> None:
    assert describe_images_kind(form) == kind
    assert request_kind("DescribeImages", form) == kind
    assert request_kind("DescribeInstances", form) is None
