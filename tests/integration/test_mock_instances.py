"""DescribeInstances on the mock through the real aiobotocore client: filters, ids,
pagination, errors, region/account isolation, determinism."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from fleetimage.mock import MockConfig

ACCOUNT = "123456789012"
OTHER = "210987654321"


def ids_of(response: dict[str, Any]) -> list[str]:
    return [i["InstanceId"] for r in response["Reservations"] for i in r["Instances"]]


def error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    resp: Any = exc.value.response
    return resp["Error"]["Code"], resp["ResponseMetadata"]["HTTPStatusCode"]


async def test_fleet_shape_and_fields(mock_ec2: Any, ec2_client: Any) -> None:
    mock = await mock_ec2(MockConfig(instances_per_region=30, seed=3))
    async with ec2_client(mock, "us-east-1") as ec2:
        resp = await ec2.describe_instances()
    instances = [i for r in resp["Reservations"] for i in r["Instances"]]
    assert len(instances) == 30
    assert [i["InstanceId"] for i in instances] == [
        r["instance_id"] for r in mock.instances(ACCOUNT, "us-east-1")
    ]
    states = {i["State"]["Name"] for i in instances}
    assert "running" in states and states <= {
        "running",
        "stopped",
        "stopping",
        "terminated",
        "pending",
    }
    codes = {"pending": 0, "running": 16, "terminated": 48, "stopping": 64, "stopped": 80}
    for inst in instances:
        assert len(inst["InstanceId"]) == 19 and inst["InstanceId"].startswith("i-")
        assert inst["State"]["Code"] == codes[inst["State"]["Name"]]
        tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
        assert set(tags) == {"Name", "Env", "Team"} and tags["Env"] in {"prod", "staging", "dev"}
        assert inst["Placement"]["AvailabilityZone"].startswith("us-east-1")
        devices = [b["DeviceName"] for b in inst.get("BlockDeviceMappings", [])]
        if inst["State"]["Name"] != "terminated":
            assert 1 <= len(devices) <= 4 and devices[0] == "/dev/xvda"
            assert all(b["Ebs"]["VolumeId"].startswith("vol-") for b in inst["BlockDeviceMappings"])
            assert inst["BlockDeviceMappings"][0]["Ebs"]["Status"] == "attached"


async def test_same_seed_same_fleet_other_seed_other_fleet(mock_ec2: Any) -> None:
    a = await mock_ec2(MockConfig(instances_per_region=10, seed=5))
    b = await mock_ec2(MockConfig(instances_per_region=10, seed=5))
    c = await mock_ec2(MockConfig(instances_per_region=10, seed=6))
    assert a.instances(ACCOUNT, "us-east-1") == b.instances(ACCOUNT, "us-east-1")
    assert a.instances(ACCOUNT, "us-east-1") != c.instances(ACCOUNT, "us-east-1")


async def test_filters_and_wildcards(mock_ec2: Any, ec2_client: Any) -> None:
    mock = await mock_ec2(MockConfig(instances_per_region=40, seed=1))
    records = mock.instances(ACCOUNT, "us-east-1")
    running = [r["instance_id"] for r in records if r["state"] == "running"]
    stopped_or_stopping = [
        r["instance_id"] for r in records if r["state"] in ("stopped", "stopping")
    ]
    web = [r["instance_id"] for r in records if r["tags"]["Name"].startswith("web-")]
    prod_web = [
        r["instance_id"]
        for r in records
        if r["tags"]["Name"].startswith("web-") and r["tags"]["Env"] == "prod"
    ]
    async with ec2_client(mock, "us-east-1") as ec2:

        async def query(*filters: tuple[str, list[str]]) -> list[str]:
            resp = await ec2.describe_instances(
                Filters=[{"Name": n, "Values": v} for n, v in filters]
            )
            return ids_of(resp)

        assert await query(("instance-state-name", ["running"])) == running
        assert await query(("instance-state-name", ["stop*"])) == stopped_or_stopping
        assert await query(("tag:Name", ["web-*"])) == web
        assert await query(("tag:Name", ["web-*"]), ("tag:Env", ["prod"])) == prod_web
        assert await query(("tag:Name", ["web-00?"])) == [
            r["instance_id"]
            for r in records
            if r["tags"]["Name"] in {f"web-00{d}" for d in "0123456789"}
        ]
        assert await query(("tag-key", ["Team"])) == [r["instance_id"] for r in records]
        assert await query(("tag-key", ["Nope*"])) == []
        assert await query(("instance-id", [running[0], running[1]])) == running[:2]
        assert await query(("instance-id", [running[0][:6] + "*"])) == [
            r["instance_id"] for r in records if r["instance_id"].startswith(running[0][:6])
        ]
        assert await query(("tag:Missing", ["*"])) == []
        with pytest.raises(ClientError) as exc:
            await query(("bogus-filter", ["x"]))
        assert error(exc) == ("InvalidParameterValue", 400)


async def test_instance_ids_and_errors(mock_ec2: Any, ec2_client: Any) -> None:
    mock = await mock_ec2(MockConfig(instances_per_region=5, seed=2))
    first = mock.instances(ACCOUNT, "us-east-1")[0]["instance_id"]
    async with ec2_client(mock, "us-east-1") as ec2:
        assert ids_of(await ec2.describe_instances(InstanceIds=[first])) == [first]
        with pytest.raises(ClientError) as exc:
            await ec2.describe_instances(InstanceIds=[first, "i-0123456789abcdef0"])
        assert error(exc) == ("InvalidInstanceID.NotFound", 400)
        assert "i-0123456789abcdef0" in str(exc.value)
        with pytest.raises(ClientError) as exc:
            await ec2.describe_instances(InstanceIds=["not-an-id"])
        assert error(exc) == ("InvalidInstanceID.Malformed", 400)
        with pytest.raises(ClientError) as exc:
            await ec2.describe_instances(InstanceIds=[first], MaxResults=5)
        assert error(exc) == ("InvalidParameterCombination", 400)
        for bad in (4, 1001):
            with pytest.raises(ClientError) as exc:
                await ec2.describe_instances(MaxResults=bad)
            assert error(exc) == ("InvalidParameterValue", 400)
        with pytest.raises(ClientError) as exc:
            await ec2.describe_instances(MaxResults=5, NextToken="garbage")
        assert error(exc) == ("InvalidParameterValue", 400)
        with pytest.raises(ClientError) as exc:
            await ec2.describe_instances(DryRun=True)
        assert error(exc) == ("DryRunOperation", 412)
    assert mock.count(action="DescribeInstances", outcome="dry_run") == 1


async def test_pagination_with_filters(mock_ec2: Any, ec2_client: Any) -> None:
    mock = await mock_ec2(MockConfig(instances_per_region=53, seed=4))
    records = mock.instances(ACCOUNT, "us-east-1")
    running = [r["instance_id"] for r in records if r["state"] == "running"]
    async with ec2_client(mock, "us-east-1") as ec2:
        pages = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"MaxResults": 5}
            if token:
                kwargs["NextToken"] = token
            resp = await ec2.describe_instances(
                Filters=[{"Name": "instance-state-name", "Values": ["running"]}], **kwargs
            )
            pages.append(ids_of(resp))
            token = resp.get("NextToken")
            if not token:
                break
        assert all(len(p) == 5 for p in pages[:-1]) and 1 <= len(pages[-1]) <= 5
        assert [i for p in pages for i in p] == running
        paginator = ec2.get_paginator("describe_instances")
        seen = [
            i
            async for page in paginator.paginate(PaginationConfig={"PageSize": 7})
            for i in ids_of(page)
        ]
        assert seen == [r["instance_id"] for r in records]


async def test_regions_and_accounts_are_isolated(mock_ec2: Any, ec2_client: Any) -> None:
    mock = await mock_ec2(
        MockConfig(
            regions=("us-east-1", "eu-west-1"), accounts=(ACCOUNT, OTHER), instances_per_region=6
        )
    )
    seen: dict[tuple[str, str], set[str]] = {}
    for account in (ACCOUNT, OTHER):
        for region in ("us-east-1", "eu-west-1"):
            async with ec2_client(mock, region, account) as ec2:
                seen[(account, region)] = set(ids_of(await ec2.describe_instances()))
            assert seen[(account, region)] == {
                r["instance_id"] for r in mock.instances(account, region)
            }
            assert len(seen[(account, region)]) == 6
    all_ids = [i for ids in seen.values() for i in ids]
    assert len(set(all_ids)) == 24
    # A region outside the config exists but is empty; a key without an account id lands in
    # the default account.
    async with ec2_client(mock, "ap-south-1") as ec2:
        assert ids_of(await ec2.describe_instances()) == []
    creds = {"aws_access_key_id": "SOMEKEYWITHOUTACCOUNT", "aws_secret_access_key": "x"}
    async with ec2_client(mock, "eu-west-1", credentials=creds) as ec2:
        assert set(ids_of(await ec2.describe_instances())) == seen[(ACCOUNT, "eu-west-1")]
    assert mock.count(action="DescribeInstances", account=OTHER) == 2


async def test_added_instances_and_state_changes(mock_ec2: Any, ec2_client: Any) -> None:
    mock = await mock_ec2(MockConfig(instances_per_region=0))
    iid = mock.add_instance(ACCOUNT, "us-east-1", tags={"Name": "added"}, volumes=3)
    fixed = mock.add_instance(
        ACCOUNT, "us-east-1", instance_id="i-0123456789abcdef0", state="stopped"
    )
    assert fixed == "i-0123456789abcdef0"
    async with ec2_client(mock, "us-east-1") as ec2:
        resp = await ec2.describe_instances(InstanceIds=[iid])
        inst = resp["Reservations"][0]["Instances"][0]
        assert inst["Tags"] == [{"Key": "Name", "Value": "added"}]
        assert len(inst["BlockDeviceMappings"]) == 3
        mock.set_instance_state(ACCOUNT, "us-east-1", iid, "terminated")
        resp = await ec2.describe_instances(
            Filters=[{"Name": "instance-state-name", "Values": ["terminated", "stopped"]}]
        )
        assert ids_of(resp) == [iid, fixed]
