"""The same scripted calls against the mock and against moto's server (a second opinion on
the wire format, through the same real aiobotocore client).

Where moto follows EC2 the answers must match (codes, HTTP statuses, messages, shapes).
Where moto deviates from EC2 (observed with moto 5.2) the mock must follow EC2, and moto's
behaviour is recorded here, not asserted, so a moto upgrade cannot break the suite:

- duplicate image names are accepted (EC2: ``InvalidAMIName.Duplicate``);
- images are ``available`` at once (EC2: ``pending`` for minutes);
- a ``snapshot`` TagSpecification answers an HTML HTTP 500 (EC2: tags the snapshots);
- CreateImage on a terminated instance succeeds (EC2: ``InvalidParameterValue``);
- malformed AMI names are accepted (EC2: ``InvalidAMIName.Malformed``);
- DryRun on an unknown instance answers ``DryRunOperation`` (the mock, like EC2, validates
  the instance first and answers ``InvalidInstanceID.NotFound``).

Prune's calls (``test_prune_calls_...``): DescribeSnapshots by id and by ``snapshot-id``
filter, and DeregisterImage of a deregistered image (``InvalidAMIID.Unavailable``), match.
moto 5.2.1 deviates, recorded:

- ``DeleteAssociatedSnapshots=true``: moto deregisters the image but answers no
  ``DeleteSnapshotResults`` and leaves the snapshots (EC2 deletes them and reports each);
- ``DescribeImageReferences``: not implemented (an HTML page; EC2: the references);
- ``Enable/DisableImageDeregistrationProtection``: not implemented (an HTML page), so a
  protected image cannot be tried there (EC2 refuses to deregister it);
- ``InvalidSnapshot.NotFound`` comes without a message.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from fleetimage.mock import MockConfig

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account and the mock's default account
UNKNOWN_INSTANCE = "i-0123456789abcdef0"
UNKNOWN_IMAGE = "ami-0123456789abcdef0"


async def outcome(coro: Any) -> tuple[str, int, str] | dict[str, Any]:
    """The parsed answer, or ``(code, status, message)`` of a ClientError."""
    try:
        result: dict[str, Any] = await coro
    except ClientError as exc:
        resp: Any = exc.response
        return (
            resp["Error"]["Code"],
            resp["ResponseMetadata"]["HTTPStatusCode"],
            resp["Error"]["Message"],
        )
    result.pop("ResponseMetadata", None)
    return result


async def setup_moto(ec2: Any) -> tuple[list[str], str]:
    amis = await ec2.describe_images(Owners=["amazon"], MaxResults=5)
    ami = amis["Images"][0]["ImageId"]
    resp = await ec2.run_instances(
        ImageId=ami,
        MinCount=3,
        MaxCount=3,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "web-1"}]}
        ],
    )
    ids = [i["InstanceId"] for i in resp["Instances"]]
    await ec2.terminate_instances(InstanceIds=[ids[2]])
    return ids[:2], ids[2]


def setup_mock(mock: Any) -> tuple[list[str], str]:
    running = [mock.add_instance(ACCOUNT, REGION, tags={"Name": "web-1"}) for _ in range(2)]
    gone = mock.add_instance(ACCOUNT, REGION, state="terminated", tags={"Name": "web-1"}, volumes=0)
    return running, gone


async def script(ec2: Any, running: list[str], gone: str) -> dict[str, Any]:
    """The calls whose answers are compared (EC2 semantics both sides follow)."""
    out: dict[str, Any] = {}
    found = await ec2.describe_instances(
        Filters=[
            {"Name": "tag:Name", "Values": ["web-*"]},
            {"Name": "instance-state-name", "Values": ["running"]},
            {"Name": "instance-id", "Values": [*running, gone]},
        ]
    )
    instances = [i for r in found["Reservations"] for i in r["Instances"]]
    out["filtered_ids"] = sorted(i["InstanceId"] for i in instances)
    out["reservation_keys"] = {"ReservationId", "OwnerId", "Instances"} <= set(
        found["Reservations"][0]
    )
    out["instance_keys"] = sorted(
        {
            "InstanceId",
            "ImageId",
            "State",
            "Tags",
            "BlockDeviceMappings",
            "Placement",
            "InstanceType",
            "LaunchTime",
            "PrivateIpAddress",
            "RootDeviceName",
            "Architecture",
        }
        - set(instances[0])
    )
    out["state"] = instances[0]["State"]
    out["tags"] = instances[0]["Tags"]
    out["ebs_keys"] = sorted(instances[0]["BlockDeviceMappings"][0]["Ebs"])
    out["terminated"] = [
        i["State"]
        for r in (
            await ec2.describe_instances(
                Filters=[{"Name": "instance-state-name", "Values": ["terminated"]}]
            )
        )["Reservations"]
        for i in r["Instances"]
    ]
    out["describe_unknown"] = await outcome(ec2.describe_instances(InstanceIds=[UNKNOWN_INSTANCE]))
    out["ids_with_max_results"] = await outcome(
        ec2.describe_instances(InstanceIds=running[:1], MaxResults=5)
    )
    out["dry_run"] = await outcome(
        ec2.create_image(InstanceId=running[0], Name="cf-dry", DryRun=True)
    )
    out["create_unknown"] = await outcome(
        ec2.create_image(InstanceId=UNKNOWN_INSTANCE, Name="cf-unknown")
    )
    created = await outcome(
        ec2.create_image(
            InstanceId=running[0],
            Name="cf-image",
            Description="conformance",
            TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "k", "Value": "v"}]}],
        )
    )
    assert isinstance(created, dict)
    out["create_keys"] = sorted(created)
    image_id = created["ImageId"]
    (image,) = (await ec2.describe_images(ImageIds=[image_id]))["Images"]
    out["image_keys"] = sorted(
        {
            "ImageId",
            "Name",
            "Description",
            "State",
            "OwnerId",
            "CreationDate",
            "Public",
            "BlockDeviceMappings",
            "Tags",
            "SourceInstanceId",
            "RootDeviceName",
            "ImageType",
            "Architecture",
            "VirtualizationType",
        }
        - set(image)
    )
    out["image_fields"] = (
        image["Name"],
        image["Description"],
        image["OwnerId"],
        image["Tags"],
        image["SourceInstanceId"],
        image["Public"],
        image["ImageType"],
    )
    out["image_state_known"] = image["State"] in {"pending", "available"}
    out["image_snapshots"] = all(
        b["Ebs"]["SnapshotId"].startswith("snap-") for b in image["BlockDeviceMappings"]
    )
    by_name = await ec2.describe_images(
        Owners=["self"], Filters=[{"Name": "name", "Values": ["cf-im*"]}]
    )
    out["by_name"] = [i["ImageId"] == image_id for i in by_name["Images"]]
    by_id = await ec2.describe_images(Filters=[{"Name": "image-id", "Values": [image_id]}])
    out["by_id_filter"] = [i["ImageId"] == image_id for i in by_id["Images"]]
    out["image_unknown"] = await outcome(ec2.describe_images(ImageIds=[UNKNOWN_IMAGE]))
    out["image_id"] = image_id
    return out


async def test_mock_answers_like_moto_where_moto_follows_ec2(
    mock_ec2: Any, ec2_client: Any, moto_url: str
) -> None:
    mock = await mock_ec2(MockConfig(instances_per_region=0, pending_s=60))
    running, gone = setup_mock(mock)
    async with ec2_client(mock, REGION) as ec2:
        ours = await script(ec2, running, gone)
    async with ec2_client(moto_url, REGION) as ec2:
        moto_running, moto_gone = await setup_moto(ec2)
        theirs = await script(ec2, moto_running, moto_gone)

    assert ours["filtered_ids"] == sorted(running)
    assert theirs["filtered_ids"] == sorted(moto_running)
    for key in (
        "reservation_keys",
        "instance_keys",
        "state",
        "tags",
        "terminated",
        "describe_unknown",
        "ids_with_max_results",
        "dry_run",
        "create_unknown",
        "create_keys",
        "image_keys",
        "image_state_known",
        "image_snapshots",
        "by_name",
        "by_id_filter",
        "image_unknown",
    ):
        assert ours[key] == theirs[key], key
    assert set(ours["ebs_keys"]) >= {"VolumeId", "Status", "AttachTime", "DeleteOnTermination"}
    assert set(ours["ebs_keys"]) == set(theirs["ebs_keys"])
    ours_fields = list(ours["image_fields"])
    theirs_fields = list(theirs["image_fields"])
    assert ours_fields[4] == running[0] and theirs_fields[4] == moto_running[0]
    ours_fields[4] = theirs_fields[4] = None
    assert ours_fields == theirs_fields
    assert ours["describe_unknown"] == (
        "InvalidInstanceID.NotFound",
        400,
        f"The instance ID '{UNKNOWN_INSTANCE}' does not exist",
    )
    assert ours["dry_run"][:2] == ("DryRunOperation", 412)


async def test_where_moto_deviates_the_mock_follows_ec2(
    mock_ec2: Any, ec2_client: Any, moto_url: str
) -> None:
    mock = await mock_ec2(MockConfig(instances_per_region=0, pending_s=60))
    running, gone = setup_mock(mock)
    snap_tags = [{"ResourceType": "snapshot", "Tags": [{"Key": "s", "Value": "1"}]}]
    async with ec2_client(mock, REGION) as ec2:
        first = await ec2.create_image(InstanceId=running[0], Name="dev-dup")
        dup = await outcome(ec2.create_image(InstanceId=running[1], Name="dev-dup"))
        assert dup == (
            "InvalidAMIName.Duplicate",
            400,
            f"AMI name dev-dup is already in use by AMI {first['ImageId']}",
        )
        (image,) = (await ec2.describe_images(ImageIds=[first["ImageId"]]))["Images"]
        assert image["State"] == "pending"
        tagged = await ec2.create_image(
            InstanceId=running[1], Name="dev-snap", TagSpecifications=snap_tags
        )
        snaps = await ec2.describe_snapshots(Filters=[{"Name": "tag:s", "Values": ["1"]}])
        assert snaps["Snapshots"] and all(
            tagged["ImageId"] in s["Description"] for s in snaps["Snapshots"]
        )
        terminated = await outcome(ec2.create_image(InstanceId=gone, Name="dev-gone"))
        assert isinstance(terminated, tuple) and terminated[:2] == ("InvalidParameterValue", 400)
        malformed = await outcome(ec2.create_image(InstanceId=running[0], Name="bad*name"))
        assert isinstance(malformed, tuple) and malformed[:2] == ("InvalidAMIName.Malformed", 400)
        dry_unknown = await outcome(
            ec2.create_image(InstanceId=UNKNOWN_INSTANCE, Name="dev-dry", DryRun=True)
        )
        assert isinstance(dry_unknown, tuple) and dry_unknown[0] == "InvalidInstanceID.NotFound"

    # moto's behaviour, recorded (not asserted) for the record of the deviations above
    observed: dict[str, Any] = {}
    async with ec2_client(moto_url, REGION) as ec2:
        moto_running, moto_gone = await setup_moto(ec2)
        await ec2.create_image(InstanceId=moto_running[0], Name="dev-dup")
        observed["duplicate"] = await outcome(
            ec2.create_image(InstanceId=moto_running[1], Name="dev-dup")
        )
        try:
            observed["snapshot_tags"] = await outcome(
                ec2.create_image(
                    InstanceId=moto_running[1], Name="dev-snap", TagSpecifications=snap_tags
                )
            )
        except (BotoCoreError, ResponseParserError) as exc:  # moto 5.2: an HTML 500 page
            observed["snapshot_tags"] = type(exc).__name__
        observed["terminated"] = await outcome(
            ec2.create_image(InstanceId=moto_gone, Name="dev-gone")
        )
    print("moto deviations observed:", observed)


UNKNOWN_SNAPSHOT = "snap-0123456789abcdef0"


async def attempt(coro: Any) -> Any:
    """``outcome``, or the name of a failure that is not an AWS answer (not implemented)."""
    try:
        return await outcome(coro)
    except (BotoCoreError, ResponseParserError) as exc:
        return type(exc).__name__


async def prune_script(ec2: Any, instance: str) -> dict[str, Any]:
    """Prune's calls on two fresh images: A for protection, B for deletion."""
    out: dict[str, Any] = {}
    a = (await ec2.create_image(InstanceId=instance, Name="cf-prune-a"))["ImageId"]
    b = (await ec2.create_image(InstanceId=instance, Name="cf-prune-b"))["ImageId"]
    (image,) = (await ec2.describe_images(ImageIds=[b]))["Images"]
    snaps = [m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"] if "Ebs" in m]
    by_id = (await ec2.describe_snapshots(SnapshotIds=snaps))["Snapshots"]
    out["snapshots_by_id"] = sorted(s["SnapshotId"] for s in by_id) == sorted(snaps)
    by_filter = await ec2.describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": "snapshot-id", "Values": snaps}], MaxResults=1000
    )
    out["snapshot_keys"] = sorted(
        {"SnapshotId", "State", "VolumeId", "VolumeSize", "StartTime", "OwnerId"}
        - set(by_filter["Snapshots"][0])
    )
    unknown = await outcome(ec2.describe_snapshots(SnapshotIds=[UNKNOWN_SNAPSHOT]))
    out["snapshot_unknown"] = unknown[:2] if isinstance(unknown, tuple) else unknown
    out["snapshot_unknown_message"] = unknown[2] if isinstance(unknown, tuple) else None
    types = [{"ResourceType": "ec2:Instance"}, {"ResourceType": "ssm:Parameter"}]
    out["references"] = await attempt(
        ec2.describe_image_references(ImageIds=[a], ResourceTypes=types)
    )
    out["protect"] = await attempt(ec2.enable_image_deregistration_protection(ImageId=a))
    out["deregister_protected"] = await attempt(ec2.deregister_image(ImageId=a))
    answer = await attempt(ec2.deregister_image(ImageId=b, DeleteAssociatedSnapshots=True))
    out["deregister"] = answer.get("Return") if isinstance(answer, dict) else answer
    out["snapshot_results"] = (
        sorted((r["SnapshotId"], r["ReturnCode"]) for r in answer.get("DeleteSnapshotResults", []))
        if isinstance(answer, dict)
        else answer
    )
    out["image_gone"] = not (
        await ec2.describe_images(Filters=[{"Name": "image-id", "Values": [b]}])
    )["Images"]
    again = await outcome(ec2.deregister_image(ImageId=b))
    out["deregister_again"] = again[:2] if isinstance(again, tuple) else again
    left = await ec2.describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": "snapshot-id", "Values": snaps}]
    )
    out["snapshots_left"] = len(left["Snapshots"])
    out["snapshots"] = sorted(snaps)
    out["image_a"] = a
    return out


async def test_prune_calls_on_the_mock_and_on_moto(
    mock_ec2: Any, ec2_client: Any, moto_url: str
) -> None:
    mock = await mock_ec2(MockConfig(instances_per_region=0, pending_s=0))
    running, _ = setup_mock(mock)
    async with ec2_client(mock, REGION) as ec2:
        ours = await prune_script(ec2, running[0])
    # moto loads its AMI catalogue on the first call: slow on a loaded machine
    slow = AioConfig(retries={"total_max_attempts": 1}, read_timeout=120)
    async with ec2_client(moto_url, REGION, config=slow) as ec2:
        moto_running, _ = await setup_moto(ec2)
        theirs = await prune_script(ec2, moto_running[0])

    for key in (
        "snapshots_by_id",
        "snapshot_keys",
        "snapshot_unknown",
        "image_gone",
        "deregister_again",
    ):
        assert ours[key] == theirs[key], key
    assert ours["snapshot_unknown"] == ("InvalidSnapshot.NotFound", 400)
    assert ours["deregister_again"] == ("InvalidAMIID.Unavailable", 400)
    # EC2's semantics, on the mock (moto does not implement them; recorded below)
    assert ours["references"] == {"ImageReferences": []}
    assert ours["protect"] == {"Return": "true"}
    assert ours["deregister_protected"] == (
        "InvalidParameterValue",
        400,
        f"The image {ours['image_a']} cannot be deregistered because deregistration protection "
        "is enabled (or in its cooldown period).",
    )
    assert ours["deregister"] is True
    assert ours["snapshot_results"] == [(s, "success") for s in ours["snapshots"]]
    assert ours["snapshots_left"] == 0
    deviations = {
        k: theirs[k]
        for k in (
            "references",
            "protect",
            "deregister_protected",
            "snapshot_results",
            "snapshots_left",
            "snapshot_unknown_message",
        )
    }
    print("moto deviations observed (prune):", deviations)


@pytest.mark.slow  # moto's DescribeImages over its AMI catalogue: 10-20 s on a loaded machine
async def test_moto_agrees_on_the_combined_filter(moto_url: str, ec2_client: Any) -> None:
    """The waiter's poll (``image-id`` AND ``state`` filters; AWS's DescribeImages reference:
    "If you specify multiple filters, the filters are joined with an AND"), which the mock
    answers as test_mock_reference.py checks: moto implements both filters, and an image of
    its (available at once) is found by the pair and not by a state it is not in."""
    patient = AioConfig(retries={"total_max_attempts": 1}, read_timeout=120)  # moto is slow
    async with ec2_client(moto_url, REGION, config=patient) as ec2:
        amis = await ec2.describe_images(Owners=["amazon"], MaxResults=5)
        run = await ec2.run_instances(ImageId=amis["Images"][0]["ImageId"], MinCount=1, MaxCount=1)
        iid = run["Instances"][0]["InstanceId"]
        image_id = (await ec2.create_image(InstanceId=iid, Name="moto-flt"))["ImageId"]
        found = await ec2.describe_images(
            Filters=[
                {"Name": "image-id", "Values": [image_id, "ami-0123456789abcdef0"]},
                {"Name": "state", "Values": ["available"]},
            ]
        )
        none = await ec2.describe_images(
            Filters=[
                {"Name": "image-id", "Values": [image_id]},
                {"Name": "state", "Values": ["failed"]},
            ]
        )
    assert [i["ImageId"] for i in found["Images"]] == [image_id]
    assert none["Images"] == []
