"""EC2's answers parsed by fleetimage's lean parser are what botocore's own parser makes of them.

The answers are the mock's, fetched through a real aiobotocore client from fleetimage's session
(its lean model and parser): every operation the engine reads, images in every state (pending,
available, failed with a reason), tags, block devices, launch times, protection, pages, and
error answers. Each raw body is parsed again by botocore's stock EC2 parser and compared.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiobotocore.parsers import AioEC2QueryParser

from fleetimage.aws import clients
from fleetimage.aws.model import DESCRIBED_IMAGE_MEMBERS
from fleetimage.aws.parsing import LeanEC2Parser, reading_only
from fleetimage.engine.wait import READ_IMAGE_MEMBERS
from fleetimage.mock import MockConfig


async def test_the_lean_parser_reads_every_answer_as_botocore_does(mock_ec2: Any) -> None:
    mock = await mock_ec2(
        MockConfig(
            instances_per_region=30,
            state_mix={"running": 0.6, "stopped": 0.2, "terminated": 0.2},
            pending_s=0.0,
            pending_sigma=0.0,
            failure_rate=0.3,
            time_scale=100.0,
            throttling=False,
        )
    )
    session = clients.new_session()
    answers: list[tuple[Any, dict[str, Any]]] = []

    def record(operation_model: Any, response_dict: dict[str, Any], **_: Any) -> None:
        answers.append((operation_model, dict(response_dict)))

    session.register("before-parse.ec2", record)
    config = clients.client_config(max_pool_connections=4, request_timeout_s=10.0)
    async with clients.ec2_client(
        session,
        region="us-east-1",
        endpoint_url=mock.endpoint_url,
        config=config,
        credentials=clients.Credentials(**_keys(mock.credentials())),
    ) as ec2:
        assert isinstance(
            ec2._endpoint._response_parser_factory.create_parser("ec2"), LeanEC2Parser
        )
        pages = [await ec2.describe_instances(MaxResults=5)]
        pages.append(await ec2.describe_instances(MaxResults=5, NextToken=pages[0]["NextToken"]))
        running = [
            i["InstanceId"]
            for r in (await ec2.describe_instances())["Reservations"]
            for i in r["Instances"]
            if i["State"]["Name"] == "running"
        ]
        assert running and all(
            i["Tags"] for p in pages for r in p["Reservations"] for i in r["Instances"]
        )
        made = [
            (
                await ec2.create_image(
                    InstanceId=iid,
                    Name=f"parse-{iid}",
                    NoReboot=True,
                    TagSpecifications=[
                        {
                            "ResourceType": "image",
                            # an empty element: a string, never None
                            "Tags": [{"Key": "k", "Value": iid}, {"Key": "blank", "Value": ""}],
                        }
                    ],
                )
            )["ImageId"]
            for iid in running[:12]
        ]
        images = (await ec2.describe_images(ImageIds=made))["Images"]
        states = {i["State"] for i in images}
        assert {"available", "failed"} <= states, states  # the mock's failure_rate at work
        assert any(i.get("StateReason") for i in images)
        assert all(i["Tags"] and i["BlockDeviceMappings"] for i in images)
        assert all({"Key": "blank", "Value": ""} in i["Tags"] for i in images)
        await ec2.describe_images(Filters=[{"Name": "name", "Values": ["parse-*"]}])
        await ec2.describe_images(Filters=[{"Name": "state", "Values": ["pending"]}])  # none
        with pytest.raises(Exception, match="InvalidAMIID"):
            await ec2.describe_images(ImageIds=["ami-0123456789abcdef0"])
        with pytest.raises(Exception, match="InvalidInstanceID"):
            await ec2.create_image(InstanceId="i-00000000000000000", Name="none")

    seen = {(op.name, a["status_code"] == 200) for op, a in answers}
    assert {
        ("DescribeInstances", True),
        ("CreateImage", True),
        ("DescribeImages", True),
        ("DescribeImages", False),
        ("CreateImage", False),
    } <= seen
    for operation, answer in answers:
        shape = operation.output_shape
        lean = await LeanEC2Parser(timestamp_parser=clients.parse_timestamp).parse(answer, shape)
        stock = await AioEC2QueryParser(timestamp_parser=clients.parse_timestamp).parse(
            answer, shape
        )
        assert lean == stock, operation.name
        if operation.name == "DescribeImages" and answer["status_code"] == 200:
            # The waiter's calls: only the members it reads, the same values.
            with reading_only("Image", READ_IMAGE_MEMBERS):
                cut = await LeanEC2Parser(timestamp_parser=clients.parse_timestamp).parse(
                    answer, shape
                )
            assert cut["Images"] == [
                {k: v for k, v in image.items() if k in READ_IMAGE_MEMBERS}
                for image in stock["Images"]
            ]
            # ...and outside such a block, every member again.
            again = await LeanEC2Parser(timestamp_parser=clients.parse_timestamp).parse(
                answer, shape
            )
            assert again == stock
    assert READ_IMAGE_MEMBERS <= DESCRIBED_IMAGE_MEMBERS


def _keys(creds: dict[str, str]) -> dict[str, Any]:
    return {
        "access_key_id": creds["aws_access_key_id"],
        "secret_access_key": creds["aws_secret_access_key"],
        "session_token": creds.get("aws_session_token"),
    }
