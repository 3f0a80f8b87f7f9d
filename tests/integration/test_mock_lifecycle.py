"""The mock's end-of-life calls through the real aiobotocore client: DeregisterImage with
DeleteAssociatedSnapshots, DeleteSnapshot, DescribeImageReferences, deregistration
protection, LastLaunchedTime, disabled images, rbin ListRules."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from fleetimage.mock import MockConfig

ACCOUNT = "123456789012"
REGION = "us-east-1"


def code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    resp: Any = exc.value.response
    return str(resp["Error"]["Code"])


async def _image(ec2: Any, iid: str, name: str) -> str:
    image_id: str = (await ec2.create_image(InstanceId=iid, Name=name))["ImageId"]
    return image_id


@pytest.fixture
async def mock(mock_ec2: Any) -> Any:
    return await mock_ec2(MockConfig(instances_per_region=0, pending_s=0, time_scale=3600))


async def test_deregister_deletes_snapshots_and_skips_shared_ones(
    mock: Any, ec2_client: Any
) -> None:
    iid = mock.add_instance(ACCOUNT, REGION, volumes=3)
    async with ec2_client(mock, REGION) as ec2:
        image_id = await _image(ec2, iid, "first")
        record = mock.images(ACCOUNT, REGION)[0]
        shared, failing, plain = record["snapshot_ids"]
        mock.register_image(ACCOUNT, REGION, [shared], "hand-made")
        mock.fail_snapshot_deletion(ACCOUNT, REGION, failing, "internal-error")
        answer = await ec2.deregister_image(ImageId=image_id, DeleteAssociatedSnapshots=True)
        results = {r["SnapshotId"]: r["ReturnCode"] for r in answer["DeleteSnapshotResults"]}
        assert results == {shared: "skipped", failing: "internal-error", plain: "success"}
        assert mock.snapshot_ids(ACCOUNT, REGION) == {shared, failing}
        # the shared one stays in use; the failed one can be deleted on its own
        with pytest.raises(ClientError) as info:
            await ec2.delete_snapshot(SnapshotId=shared)
        assert code(info) == "InvalidSnapshot.InUse"
        await ec2.delete_snapshot(SnapshotId=failing)
        found = await ec2.describe_snapshots(SnapshotIds=[shared])
        assert [s["SnapshotId"] for s in found["Snapshots"]] == [shared]
        with pytest.raises(ClientError) as info:
            await ec2.describe_snapshots(SnapshotIds=[failing])
        assert code(info) == "InvalidSnapshot.NotFound"


async def test_describe_image_references(mock: Any, ec2_client: Any) -> None:
    iid = mock.add_instance(ACCOUNT, REGION, volumes=1)
    async with ec2_client(mock, REGION) as ec2:
        ids = [await _image(ec2, iid, f"img-{n}") for n in range(12)]
        mock.launch_from_image(ACCOUNT, REGION, ids[0])
        mock.launch_from_image(ACCOUNT, REGION, ids[1], state="terminated")
        # version 1 uses ids[2]; 10 newer versions use ids[3]: depth 10 misses ids[2]
        mock.add_launch_template(ACCOUNT, REGION, [ids[2]] + [ids[3]] * 10)
        mock.add_ssm_parameter(ACCOUNT, REGION, "/golden/ami", ids[4])
        types = [
            {
                "ResourceType": "ec2:Instance",
                "ResourceTypeOptions": [
                    {"OptionName": "state-name", "OptionValues": ["running", "stopped"]}
                ],
            },
            {"ResourceType": "ec2:LaunchTemplate"},
            {"ResourceType": "ssm:Parameter"},
        ]
        refs = (await ec2.describe_image_references(ImageIds=ids[:10], ResourceTypes=types))[
            "ImageReferences"
        ]
        found = {(r["ImageId"], r["ResourceType"]) for r in refs}
        assert found == {
            (ids[0], "ec2:Instance"),
            (ids[3], "ec2:LaunchTemplate"),
            (ids[4], "ssm:Parameter"),
        }
        deep = [
            {
                "ResourceType": "ec2:LaunchTemplate",
                "ResourceTypeOptions": [{"OptionName": "version-depth", "OptionValues": ["11"]}],
            }
        ]
        refs = (await ec2.describe_image_references(ImageIds=[ids[2]], ResourceTypes=deep))[
            "ImageReferences"
        ]
        assert [r["ImageId"] for r in refs] == [ids[2]]
        everything = await ec2.describe_image_references(
            ImageIds=[ids[1]], IncludeAllResourceTypes=True
        )
        assert [r["ResourceType"] for r in everything["ImageReferences"]] == ["ec2:Instance"]
        with pytest.raises(ClientError) as info:
            await ec2.describe_image_references(ImageIds=ids[:11], IncludeAllResourceTypes=True)
        assert code(info) == "InvalidParameterValue"
        with pytest.raises(ClientError) as info:
            await ec2.describe_image_references(ImageIds=ids[:1])
        assert code(info) == "MissingParameter"
        (image,) = (await ec2.describe_images(ImageIds=[ids[0]]))["Images"]
        assert image["LastLaunchedTime"] and image["DeregistrationProtection"] == "disabled"


async def test_protection_and_cooldown(mock_ec2: Any, ec2_client: Any) -> None:
    # time_scale 86400: the 24-hour cooldown lasts one wall second
    mock = await mock_ec2(MockConfig(instances_per_region=0, pending_s=0, time_scale=86400))
    iid = mock.add_instance(ACCOUNT, REGION, volumes=1)
    async with ec2_client(mock, REGION) as ec2:
        image_id = await _image(ec2, iid, "protected")
        await ec2.enable_image_deregistration_protection(ImageId=image_id, WithCooldown=True)
        (image,) = (await ec2.describe_images(ImageIds=[image_id]))["Images"]
        assert image["DeregistrationProtection"] == "enabled-with-cooldown"
        with pytest.raises(ClientError) as info:
            await ec2.deregister_image(ImageId=image_id)
        assert code(info) == "InvalidParameterValue"
        await ec2.disable_image_deregistration_protection(ImageId=image_id)
        (image,) = (await ec2.describe_images(ImageIds=[image_id]))["Images"]
        assert image["DeregistrationProtection"].startswith("disabled-until ")
        with pytest.raises(ClientError):
            await ec2.deregister_image(ImageId=image_id)  # still in its cooldown
        deadline = time.monotonic() + 10
        while True:
            try:
                await ec2.deregister_image(ImageId=image_id)
                break
            except ClientError:
                assert time.monotonic() < deadline, "cooldown never ended"
                await asyncio.sleep(0.2)


async def test_disabled_images_need_include_disabled(mock: Any, ec2_client: Any) -> None:
    iid = mock.add_instance(ACCOUNT, REGION, volumes=1)
    async with ec2_client(mock, REGION) as ec2:
        image_id = await _image(ec2, iid, "to-disable")
        mock.set_image_state(ACCOUNT, REGION, image_id, "disabled")
        owned = await ec2.describe_images(Owners=["self"])
        assert owned["Images"] == []
        owned = await ec2.describe_images(Owners=["self"], IncludeDisabled=True)
        assert [(i["ImageId"], i["State"]) for i in owned["Images"]] == [(image_id, "disabled")]


async def test_rbin_list_rules(mock: Any, ec2_client: Any) -> None:
    mock.add_rbin_rule(ACCOUNT, REGION, "EC2_IMAGE", days=14)
    async with ec2_client(mock, REGION, service="rbin") as rbin:
        rules = (await rbin.list_rules(ResourceType="EC2_IMAGE"))["Rules"]
        assert rules[0]["RetentionPeriod"] == {
            "RetentionPeriodValue": 14,
            "RetentionPeriodUnit": "DAYS",
        }
        assert (await rbin.list_rules(ResourceType="EBS_SNAPSHOT"))["Rules"] == []
