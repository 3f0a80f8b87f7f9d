"""CopyImage on the mock through the real aiobotocore client: ClientToken semantics, the
per-destination concurrency cap, copy pending times, KMS keys failing late, copied tags."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from botocore.exceptions import ClientError

from fleetimage.mock import MockConfig
from fleetimage.mock.copy_config import CopyConfig

ACCOUNT = "123456789012"
SRC = "us-east-1"
DST = "eu-west-1"


def error(exc: pytest.ExceptionInfo[ClientError]) -> str:
    resp: Any = exc.value.response
    return str(resp["Error"]["Code"])


def config(**copies: Any) -> MockConfig:
    return MockConfig(
        regions=(SRC, DST),
        instances_per_region=0,
        pending_s=0.0,
        time_scale=100.0,
        copies=CopyConfig(**{"pending_s": 20.0, **copies}),
    )


async def source_image(mock: Any, ec2_client: Any, name: str = "src-1") -> str:
    iid = mock.add_instance(ACCOUNT, SRC, volumes=2)
    async with ec2_client(mock, SRC) as ec2:
        resp = await ec2.create_image(
            InstanceId=iid,
            Name=name,
            TagSpecifications=[
                {"ResourceType": "image", "Tags": [{"Key": "Team", "Value": "data"}]}
            ],
        )
    await asyncio.sleep(0.01)
    return str(resp["ImageId"])


async def wait_state(ec2: Any, image_id: str, states: set[str]) -> dict[str, Any]:
    for _ in range(500):
        answer = await ec2.describe_images(Filters=[{"Name": "image-id", "Values": [image_id]}])
        if answer["Images"] and answer["Images"][0]["State"] in states:
            return dict(answer["Images"][0])
        await asyncio.sleep(0.02)
    raise AssertionError(f"{image_id} never reached {states}")


async def test_client_token_same_params_same_image(mock_ec2: Any, ec2_client: Any) -> None:
    mock = await mock_ec2(config())
    src = await source_image(mock, ec2_client)
    async with ec2_client(mock, DST) as ec2:
        kwargs: dict[str, Any] = {
            "SourceRegion": SRC,
            "SourceImageId": src,
            "Name": "copy-1",
            "ClientToken": "tok-1",
            "CopyImageTags": True,
            "TagSpecifications": [
                {"ResourceType": "image", "Tags": [{"Key": "fleetimage:run-id", "Value": "r"}]}
            ],
        }
        first = (await ec2.copy_image(**kwargs))["ImageId"]
        again = (await ec2.copy_image(**kwargs))["ImageId"]
        assert first == again
        with pytest.raises(ClientError) as exc:
            await ec2.copy_image(**{**kwargs, "Name": "copy-2"})
        assert error(exc) == "IdempotentParameterMismatch"
        image = await wait_state(ec2, first, {"available"})
        tags = {t["Key"]: t["Value"] for t in image["Tags"]}
        assert tags == {"Team": "data", "fleetimage:run-id": "r"}
        assert len(image["BlockDeviceMappings"]) == 2
        assert (image["SourceImageId"], image["SourceImageRegion"]) == (src, SRC)
    (record,) = mock.images(ACCOUNT, DST)
    assert record["source_image_id"] == src and record["source_region"] == SRC
    assert mock.copy_duplicates() == {"by_token": {}, "by_name": {}, "by_source": {}}
    assert mock.fleet.copies.by_token[(ACCOUNT, DST, "tok-1")] == 1
    async with (
        aiohttp.ClientSession() as http,
        http.get(mock.endpoint_url + "/_mock/copy_duplicates") as resp,
    ):
        assert await resp.json() == {"by_token": [], "by_name": [], "by_source": []}
    assert mock.count("CopyImage", "ok") == 2 and mock.count("CopyImage", "error") == 1


async def test_tags_not_copied_unless_asked(mock_ec2: Any, ec2_client: Any) -> None:
    mock = await mock_ec2(config())
    src = await source_image(mock, ec2_client)
    async with ec2_client(mock, DST) as ec2:
        copy = (await ec2.copy_image(SourceRegion=SRC, SourceImageId=src, Name="plain"))["ImageId"]
        image = await wait_state(ec2, copy, {"pending", "available"})
        assert image.get("Tags", []) == []


async def test_concurrency_cap_per_destination(mock_ec2: Any, ec2_client: Any) -> None:
    mock = await mock_ec2(config(max_concurrent=2, pending_s=3600.0))
    src = await source_image(mock, ec2_client)
    async with ec2_client(mock, DST) as ec2:
        for n in range(2):
            await ec2.copy_image(SourceRegion=SRC, SourceImageId=src, Name=f"c-{n}")
        with pytest.raises(ClientError) as exc:
            await ec2.copy_image(SourceRegion=SRC, SourceImageId=src, Name="c-2")
        assert error(exc) == "ResourceLimitExceeded"
    # Another destination has its own cap.
    async with ec2_client(mock, "us-west-2") as ec2:
        await ec2.copy_image(SourceRegion=SRC, SourceImageId=src, Name="c-2")
    assert len(mock.images(ACCOUNT, DST)) == 2


async def test_unknown_kms_key_fails_the_copy_later(mock_ec2: Any, ec2_client: Any) -> None:
    mock = await mock_ec2(config(kms_keys=frozenset({"alias/dr"})))
    src = await source_image(mock, ec2_client)
    async with ec2_client(mock, DST) as ec2:
        good = await ec2.copy_image(
            SourceRegion=SRC, SourceImageId=src, Name="k-good", Encrypted=True, KmsKeyId="alias/dr"
        )
        bad = await ec2.copy_image(
            SourceRegion=SRC,
            SourceImageId=src,
            Name="k-bad",
            Encrypted=True,
            KmsKeyId="alias/nope",
        )
        failed = await wait_state(ec2, bad["ImageId"], {"failed", "available"})
        assert failed["State"] == "failed"
        assert failed["StateReason"]["Code"] == "Client.InvalidKMSKey.NotFound"
        assert (await wait_state(ec2, good["ImageId"], {"failed", "available"}))[
            "State"
        ] == "available"


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ({"KmsKeyId": "alias/dr"}, "InvalidParameterCombination"),
        ({"Encrypted": True, "KmsKeyId": "not a key"}, "InvalidKMSKey.Id"),
        ({"SnapshotCopyCompletionDurationMinutes": 20}, "InvalidParameterValue"),
        ({"SourceImageId": "ami-0123456789abcdef0"}, "InvalidAMIID.NotFound"),
        ({"ClientToken": "x" * 65}, "InvalidParameterValue"),
    ],
)
async def test_refusals_apply_nothing(
    mock_ec2: Any, ec2_client: Any, extra: dict[str, Any], code: str
) -> None:
    mock = await mock_ec2(config())
    src = await source_image(mock, ec2_client)
    async with ec2_client(mock, DST) as ec2:
        with pytest.raises(ClientError) as exc:
            await ec2.copy_image(
                **{"SourceRegion": SRC, "SourceImageId": src, "Name": "x-1", **extra}
            )
        assert error(exc) == code
    assert mock.images(ACCOUNT, DST) == []


async def test_copy_pending_times_are_deterministic(mock_ec2: Any, ec2_client: Any) -> None:
    mock = await mock_ec2(config(pending_sigma=0.5))
    fleet = mock.fleet
    a = fleet.copy_pending_aws_s(ACCOUNT, SRC, "i-0123456789abcdef0", DST)
    b = fleet.copy_pending_aws_s(ACCOUNT, SRC, "i-0123456789abcdef0", DST)
    c = fleet.copy_pending_aws_s(ACCOUNT, SRC, "i-0123456789abcdef0", "us-west-2")
    assert a == b and a != c and a > 0
