"""CreateImage, DescribeImages, DeregisterImage, CreateTags, DescribeSnapshots and
DeleteSnapshot on the mock through the real aiobotocore client."""

from __future__ import annotations

import itertools
import statistics
from typing import Any

import anyio
import pytest
from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError

from fleetimage.mock import MockConfig
from fleetimage.mock.fleet import Fleet

ACCOUNT = "123456789012"
OTHER = "210987654321"
REGION = "us-east-1"


def error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    resp: Any = exc.value.response
    return resp["Error"]["Code"], resp["ResponseMetadata"]["HTTPStatusCode"]


def running_mock_config(**kwargs: Any) -> MockConfig:
    defaults: dict[str, Any] = {"instances_per_region": 0, "pending_s": 0.2}
    defaults.update(kwargs)
    return MockConfig(**defaults)


async def test_create_image_records_everything(mock_ec2: Any, ec2_client: Any) -> None:
    mock = await mock_ec2(running_mock_config())
    iid = mock.add_instance(ACCOUNT, REGION, volumes=3)
    async with ec2_client(mock, REGION) as ec2:
        resp = await ec2.create_image(
            InstanceId=iid,
            Name="nightly (web) [1] ./-'@_",
            Description="before <maintenance> & patching",
            NoReboot=True,
            BlockDeviceMappings=[{"DeviceName": "/dev/sdg", "NoDevice": ""}],
            TagSpecifications=[
                {"ResourceType": "image", "Tags": [{"Key": "run", "Value": "r1"}]},
                {"ResourceType": "snapshot", "Tags": [{"Key": "snap", "Value": "yes"}]},
            ],
        )
        image_id = resp["ImageId"]
        assert set(resp) == {"ImageId", "ResponseMetadata"}
        (image,) = (await ec2.describe_images(ImageIds=[image_id]))["Images"]
        assert image["Name"] == "nightly (web) [1] ./-'@_"
        assert image["Description"] == "before <maintenance> & patching"
        assert image["State"] == "pending" and image["OwnerId"] == ACCOUNT
        assert image["SourceInstanceId"] == iid
        assert image["CreationDate"].endswith("Z")
        assert image["Tags"] == [{"Key": "run", "Value": "r1"}]
        assert [b["DeviceName"] for b in image["BlockDeviceMappings"]] == ["/dev/xvda", "/dev/sdf"]
        snap_ids = [b["Ebs"]["SnapshotId"] for b in image["BlockDeviceMappings"]]
        snaps = (await ec2.describe_snapshots(SnapshotIds=snap_ids))["Snapshots"]
        assert [s["SnapshotId"] for s in snaps] == snap_ids
        assert all(s["Tags"] == [{"Key": "snap", "Value": "yes"}] for s in snaps)
        assert all(s["State"] == "pending" and iid in s["Description"] for s in snaps)
    (record,) = mock.images(ACCOUNT, REGION)
    assert record["no_reboot"] and record["snapshot_ids"] == snap_ids
    assert mock.images_per_instance() == {(ACCOUNT, REGION, iid): 1}


async def test_create_image_errors(mock_ec2: Any, ec2_client: Any) -> None:
    mock = await mock_ec2(running_mock_config())
    iid = mock.add_instance(ACCOUNT, REGION)
    gone = mock.add_instance(ACCOUNT, REGION, state="terminated", volumes=0)
    starting = mock.add_instance(ACCOUNT, REGION, state="pending")
    stopped = mock.add_instance(ACCOUNT, REGION, state="stopped")
    # botocore checks the name's length itself; turn that off so the mock's check is tested
    unchecked = AioConfig(retries={"total_max_attempts": 1}, parameter_validation=False)
    async with ec2_client(mock, REGION, config=unchecked) as ec2:

        async def code_of(**kwargs: Any) -> tuple[str, int]:
            with pytest.raises(ClientError) as exc:
                await ec2.create_image(**kwargs)
            return error(exc)

        for bad in ("ab", "x" * 129, "bad*name", "emoji-\u2603"):
            assert await code_of(InstanceId=iid, Name=bad) == ("InvalidAMIName.Malformed", 400)
        assert await code_of(InstanceId="i-0123456789abcdef0", Name="abc") == (
            "InvalidInstanceID.NotFound",
            400,
        )
        for state_id in (gone, starting):
            assert await code_of(InstanceId=state_id, Name="abc") == ("InvalidParameterValue", 400)
        bad_spec = [{"ResourceType": "instance", "Tags": [{"Key": "a", "Value": "b"}]}]
        assert await code_of(InstanceId=iid, Name="abc", TagSpecifications=bad_spec) == (
            "InvalidParameterValue",
            400,
        )
        assert await code_of(InstanceId=iid, Name="abc", DryRun=True) == ("DryRunOperation", 412)
        assert not mock.images(ACCOUNT, REGION)
        first = (await ec2.create_image(InstanceId=stopped, Name="taken"))["ImageId"]
        with pytest.raises(ClientError) as exc:
            await ec2.create_image(InstanceId=iid, Name="taken")
        assert error(exc) == ("InvalidAMIName.Duplicate", 400)
        assert exc.value.response["Error"]["Message"] == (
            f"AMI name taken is already in use by AMI {first}"
        )
        # the name is free in another region and another account
        async with ec2_client(mock, "eu-west-1") as other_region:
            eu = other_region  # an instance there is needed
            eu_iid = mock.add_instance(ACCOUNT, "eu-west-1")
            await eu.create_image(InstanceId=eu_iid, Name="taken")
        other_iid = mock.add_instance(OTHER, REGION)
        async with ec2_client(mock, REGION, OTHER) as other_account:
            await other_account.create_image(InstanceId=other_iid, Name="taken")
            assert len((await other_account.describe_images(Owners=["self"]))["Images"]) == 1
        # deregistering frees the name
        await ec2.deregister_image(ImageId=first)
        await ec2.create_image(InstanceId=iid, Name="taken")
    assert mock.count(action="CreateImage", outcome="dry_run") == 1
    assert mock.count(action="CreateImage", outcome="error") == 9
    assert mock.count(action="CreateImage", outcome="ok", region=REGION, account=ACCOUNT) == 2


async def test_state_machine_pending_available_and_failed(mock_ec2: Any, ec2_client: Any) -> None:
    # pending for 1.5 s of wall time: the pending check right after CreateImage (~20 ms of
    # work) has 50x its expected time, and the end of pending is awaited, not slept for
    mock = await mock_ec2(running_mock_config(pending_s=15.0, time_scale=10.0))
    failing = await mock_ec2(running_mock_config(pending_s=0.0, failure_rate=1.0))
    iid = mock.add_instance(ACCOUNT, REGION)
    fid = failing.add_instance(ACCOUNT, REGION)
    async with ec2_client(mock, REGION) as ec2, ec2_client(failing, REGION) as fec2:
        image_id = (await ec2.create_image(InstanceId=iid, Name="sm-1"))["ImageId"]
        failed_id = (await fec2.create_image(InstanceId=fid, Name="sm-2"))["ImageId"]
        flt = [{"Name": "state", "Values": ["pending"]}]
        assert [i["ImageId"] for i in (await ec2.describe_images(Filters=flt))["Images"]] == [
            image_id
        ]
        with anyio.fail_after(30):  # due after 1.5 s
            for _ in itertools.count():  # polled, as a client would
                (image,) = (await ec2.describe_images(ImageIds=[image_id]))["Images"]
                if image["State"] != "pending":
                    break
                await anyio.sleep(0.05)
        assert image["State"] == "available" and "StateReason" not in image
        (bad,) = (await fec2.describe_images(ImageIds=[failed_id]))["Images"]
        assert bad["State"] == "failed"
        assert bad["StateReason"]["Code"] and bad["StateReason"]["Message"]
        snaps = await ec2.describe_snapshots(Filters=[{"Name": "status", "Values": ["completed"]}])
        assert len(snaps["Snapshots"]) == 2
        mock.set_image_state(ACCOUNT, REGION, image_id, "failed", ("Client.Test", "forced"))
        (image,) = (await ec2.describe_images(ImageIds=[image_id]))["Images"]
        assert image["State"] == "failed" and image["StateReason"]["Code"] == "Client.Test"
        assert mock.image_state(ACCOUNT, REGION, image_id) == "failed"


def test_log_normal_pending_time_has_the_configured_median() -> None:
    fleet = Fleet(MockConfig(pending_s=10.0, pending_sigma=0.5, time_scale=2.0, seed=3))
    delays = [fleet.pending_delay("123456789012", "us-east-1", f"i-{n:017x}") for n in range(4000)]
    assert 4.6 < statistics.median(delays) < 5.4  # 10 s / time_scale 2
    assert min(delays) < 3 < 8 < max(delays)
    fixed = Fleet(MockConfig(pending_s=10.0, time_scale=4.0))
    assert {fixed.pending_delay("123456789012", "us-east-1", f"i-{n}") for n in range(10)} == {2.5}


def test_pending_time_is_a_pure_function_of_seed_account_region_and_instance() -> None:
    config = MockConfig(pending_s=10.0, pending_sigma=0.5, seed=3)
    one, other = Fleet(config), Fleet(config)
    keys = [
        ("123456789012", r, f"i-{n:017x}") for r in ("us-east-1", "eu-west-1") for n in range(50)
    ]
    forward = [one.pending_aws_s(*k) for k in keys]
    backward = [other.pending_aws_s(*k) for k in reversed(keys)][::-1]
    assert forward == backward  # the order of creation changes nothing
    assert len(set(forward)) == len(forward)  # and each instance gets its own
    reseeded = Fleet(MockConfig(pending_s=10.0, pending_sigma=0.5, seed=4))
    assert [reseeded.pending_aws_s(*k) for k in keys] != forward


async def test_visibility_lag(mock_ec2: Any, ec2_client: Any) -> None:
    # hidden for 1.5 s: the four calls that must see it hidden take ~50 ms (30x margin),
    # and the end of the lag is awaited, not slept for
    mock = await mock_ec2(running_mock_config(visibility_lag_s=1.5, pending_s=0.0))
    iid = mock.add_instance(ACCOUNT, REGION)
    async with ec2_client(mock, REGION) as ec2:
        image_id = (await ec2.create_image(InstanceId=iid, Name="lag-1"))["ImageId"]
        with pytest.raises(ClientError) as exc:
            await ec2.describe_images(ImageIds=[image_id])
        assert error(exc) == ("InvalidAMIID.NotFound", 400)
        flt = [{"Name": "image-id", "Values": [image_id]}]
        assert (await ec2.describe_images(Filters=flt))["Images"] == []
        # the name is taken at once, though (EC2 checks names strongly)
        with pytest.raises(ClientError) as exc:
            await ec2.create_image(InstanceId=iid, Name="lag-1")
        assert error(exc) == ("InvalidAMIName.Duplicate", 400)
        with anyio.fail_after(30):  # visible after 1.5 s
            for _ in itertools.count():  # polled, as a client would
                if (await ec2.describe_images(Filters=flt))["Images"]:
                    break
                await anyio.sleep(0.05)
        assert [i["ImageId"] for i in (await ec2.describe_images(Filters=flt))["Images"]] == [
            image_id
        ]


async def test_describe_images_ids_owners_filters_pagination(
    mock_ec2: Any, ec2_client: Any
) -> None:
    mock = await mock_ec2(running_mock_config())
    iids = [mock.add_instance(ACCOUNT, REGION, volumes=1) for _ in range(3)]
    async with ec2_client(mock, REGION) as ec2:
        created = []
        for n in range(12):
            resp = await ec2.create_image(
                InstanceId=iids[n % 3],
                Name=f"img-{n:02d}",
                TagSpecifications=[
                    {"ResourceType": "image", "Tags": [{"Key": "batch", "Value": str(n % 2)}]}
                ],
            )
            created.append(resp["ImageId"])

        async def names(**kwargs: Any) -> list[str]:
            return [i["Name"] for i in (await ec2.describe_images(**kwargs))["Images"]]

        everything = [f"img-{n:02d}" for n in range(12)]
        assert await names() == everything
        assert await names(Owners=["self"]) == everything
        assert await names(Owners=[ACCOUNT]) == everything
        assert await names(Owners=["amazon"]) == []
        assert await names(Owners=[OTHER]) == []
        assert await names(ImageIds=[created[3], created[1]]) == ["img-03", "img-01"]
        with pytest.raises(ClientError) as exc:
            await ec2.describe_images(ImageIds=[created[0], "ami-0123456789abcdef0"])
        assert error(exc) == ("InvalidAMIID.NotFound", 400)
        with pytest.raises(ClientError) as exc:
            await ec2.describe_images(ImageIds=["ami-nope"])
        assert error(exc) == ("InvalidAMIID.Malformed", 400)

        def flt(name: str, *values: str) -> list[dict[str, Any]]:
            return [{"Name": name, "Values": list(values)}]

        assert await names(Filters=flt("name", "img-0?")) == everything[:10]
        assert await names(Filters=flt("name", "img-11", "img-10")) == ["img-11", "img-10"]
        assert await names(Filters=flt("image-id", created[5], "ami-0123456789abcdef0")) == [
            "img-05"
        ]
        assert await names(Filters=flt("image-id", "ami-*")) == everything
        assert await names(Filters=flt("tag:batch", "1")) == everything[1::2]
        assert await names(Filters=flt("tag-key", "batch")) == everything
        assert await names(Filters=flt("source-instance-id", iids[1])) == everything[1::3]
        assert await names(Filters=flt("state", "pending", "available")) == everything
        assert await names(Filters=flt("state", "failed")) == []
        with pytest.raises(ClientError) as exc:
            await ec2.describe_images(Filters=flt("bogus", "x"))
        assert error(exc) == ("InvalidParameterValue", 400)

        paged: list[str] = []
        paginator = ec2.get_paginator("describe_images")
        async for page in paginator.paginate(
            Filters=flt("tag:batch", "0"), PaginationConfig={"PageSize": 5}
        ):
            assert len(page["Images"]) <= 5
            paged += [i["Name"] for i in page["Images"]]
        assert paged == everything[0::2]
        with pytest.raises(ClientError) as exc:
            await ec2.describe_images(ImageIds=[created[0]], MaxResults=5)
        assert error(exc) == ("InvalidParameterCombination", 400)


async def test_deregister_tags_and_snapshots(mock_ec2: Any, ec2_client: Any) -> None:
    mock = await mock_ec2(running_mock_config(pending_s=0.0))
    iid = mock.add_instance(ACCOUNT, REGION, volumes=2)
    async with ec2_client(mock, REGION) as ec2:
        keep = (await ec2.create_image(InstanceId=iid, Name="keep-snaps"))["ImageId"]
        drop = (await ec2.create_image(InstanceId=iid, Name="drop-snaps"))["ImageId"]
        await ec2.create_tags(
            Resources=[keep, iid], Tags=[{"Key": "k", "Value": "v"}, {"Key": "e", "Value": ""}]
        )
        (image,) = (await ec2.describe_images(ImageIds=[keep]))["Images"]
        assert {t["Key"]: t["Value"] for t in image["Tags"]} == {"k": "v", "e": ""}
        keep_snaps = [b["Ebs"]["SnapshotId"] for b in image["BlockDeviceMappings"]]
        await ec2.create_tags(Resources=keep_snaps[:1], Tags=[{"Key": "s", "Value": "1"}])
        tagged = await ec2.describe_snapshots(Filters=[{"Name": "tag:s", "Values": ["1"]}])
        assert [s["SnapshotId"] for s in tagged["Snapshots"]] == keep_snaps[:1]
        by_id = await ec2.describe_snapshots(
            Filters=[{"Name": "snapshot-id", "Values": [keep_snaps[1]]}], OwnerIds=["self"]
        )
        assert [s["SnapshotId"] for s in by_id["Snapshots"]] == keep_snaps[1:]
        for bad_resource, code in (
            ("ami-0123456789abcdef0", "InvalidAMIID.NotFound"),
            ("i-0123456789abcdef0", "InvalidInstanceID.NotFound"),
            ("snap-0123456789abcdef0", "InvalidSnapshot.NotFound"),
            ("vpc-123", "InvalidID"),
        ):
            with pytest.raises(ClientError) as exc:
                await ec2.create_tags(Resources=[bad_resource], Tags=[{"Key": "a", "Value": "b"}])
            assert error(exc) == (code, 400)

        with pytest.raises(ClientError) as exc:
            await ec2.delete_snapshot(SnapshotId=keep_snaps[0])
        assert error(exc) == ("InvalidSnapshot.InUse", 400)
        assert keep in exc.value.response["Error"]["Message"]

        resp = await ec2.deregister_image(ImageId=keep)
        assert resp["Return"] is True and not resp.get("DeleteSnapshotResults")
        await ec2.delete_snapshot(SnapshotId=keep_snaps[0])
        with pytest.raises(ClientError) as exc:
            await ec2.describe_snapshots(SnapshotIds=[keep_snaps[0]])
        assert error(exc) == ("InvalidSnapshot.NotFound", 400)
        with pytest.raises(ClientError) as exc:
            await ec2.delete_snapshot(SnapshotId=keep_snaps[0])
        assert error(exc) == ("InvalidSnapshot.NotFound", 400)

        resp = await ec2.deregister_image(ImageId=drop, DeleteAssociatedSnapshots=True)
        results = resp["DeleteSnapshotResults"]
        assert len(results) == 2 and {r["ReturnCode"] for r in results} == {"success"}
        left = (await ec2.describe_snapshots())["Snapshots"]
        assert [s["SnapshotId"] for s in left] == keep_snaps[1:]
        assert (await ec2.describe_images())["Images"] == []
        with pytest.raises(ClientError) as exc:
            await ec2.describe_images(ImageIds=[keep])
        assert error(exc) == ("InvalidAMIID.NotFound", 400)
        # Deregistering again: EC2's "InvalidAMIID.Unavailable — the specified AMI has been
        # deregistered" (error codes reference), as moto answers too.
        with pytest.raises(ClientError) as exc:
            await ec2.deregister_image(ImageId=keep)
        assert error(exc) == ("InvalidAMIID.Unavailable", 400)
        with pytest.raises(ClientError) as exc:
            await ec2.deregister_image(ImageId=drop, DryRun=True)
        assert error(exc) == ("InvalidAMIID.Unavailable", 400)
    assert [r["deregistered"] for r in mock.images(ACCOUNT, REGION)] == [True, True]
    assert mock.images_per_instance() == {(ACCOUNT, REGION, iid): 2}
    assert mock.duplicates() == {(ACCOUNT, REGION, iid): 2}


async def test_snapshot_pagination(mock_ec2: Any, ec2_client: Any) -> None:
    mock = await mock_ec2(running_mock_config())
    iid = mock.add_instance(ACCOUNT, REGION, volumes=4)
    async with ec2_client(mock, REGION) as ec2:
        for n in range(3):
            await ec2.create_image(InstanceId=iid, Name=f"snap-page-{n}")
        paginator = ec2.get_paginator("describe_snapshots")
        sizes = [
            len(page["Snapshots"])
            async for page in paginator.paginate(PaginationConfig={"PageSize": 5})
        ]
        assert sizes == [5, 5, 2]


async def test_test_controls(mock_ec2: Any, ec2_client: Any) -> None:
    mock = await mock_ec2(running_mock_config())
    iid = mock.add_instance(ACCOUNT, REGION)
    async with ec2_client(mock, REGION) as ec2:
        image_id = (await ec2.create_image(InstanceId=iid, Name="ctl-1"))["ImageId"]
        mock.set_image_state(ACCOUNT, REGION, image_id, "available")
        assert (await ec2.describe_images(ImageIds=[image_id]))["Images"][0]["State"] == "available"
        mock.deregister_image(ACCOUNT, REGION, image_id)
        assert (await ec2.describe_images())["Images"] == []
        await ec2.create_image(InstanceId=iid, Name="ctl-1")
    mock.reset()
    assert mock.images(ACCOUNT, REGION) == [] and mock.counters == {}
