"""The mock held to references other than our own belief of EC2.

1. botocore's service models (the installed botocore's ``ec2`` and ``sts``): for a scripted
   call of every action the mock serves, every XML element the mock sends must be a member
   of that operation's output shape, with a value of the member's type (and one of its
   enum values, where the model has them). botocore's parser silently drops what it does
   not know, so a misnamed member would otherwise pass every test and mean nothing to a
   real client.
2. AWS's documentation (and real EC2 answers quoted in public issue threads, for message
   texts the documentation does not spell out), quoted below with their sources, for the
   answers the engine relies on most; moto as a second opinion where it implements them.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import botocore
import pytest
from botocore.exceptions import ClientError
from botocore.model import Shape

from fleetimage.core.errors import ErrorKind, classify
from fleetimage.mock import FaultConfig, MockConfig

REGION = "us-east-1"
# What every answer carries besides its output shape's members.
_ENVELOPE = {"requestId", "ResponseMetadata"}


def _tag(element: ElementTree.Element) -> str:
    return element.tag.rsplit("}", 1)[-1]


def check_against(element: ElementTree.Element, shape: Shape, path: str) -> list[str]:
    """Every child of ``element`` a member of ``shape`` with the member's type."""
    problems: list[str] = []
    kind = shape.type_name
    text = (element.text or "").strip()
    if kind == "structure":
        members = {m.serialization.get("name", n): m for n, m in shape.members.items()}  # type: ignore[attr-defined]
        for child in element:
            tag = _tag(child)
            if tag not in members:
                problems.append(f"{path}/{tag}: not a member of {shape.name}")
            else:
                problems += check_against(child, members[tag], f"{path}/{tag}")
    elif kind == "list":
        member = shape.member  # type: ignore[attr-defined]
        item = member.serialization.get("name", "member")
        for child in element:
            if _tag(child) != item:
                problems.append(f"{path}/{_tag(child)}: list items are <{item}>")
            problems += check_against(child, member, f"{path}/{item}")
    elif kind in {"integer", "long"}:
        if not re.fullmatch(r"-?\d+", text):
            problems.append(f"{path}: {text!r} is not an {kind}")
    elif kind in {"double", "float"}:
        try:
            float(text)
        except ValueError:
            problems.append(f"{path}: {text!r} is not a number")
    elif kind == "boolean":
        if text not in {"true", "false"}:
            problems.append(f"{path}: {text!r} is not a boolean")
    elif kind == "timestamp":
        try:
            datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            problems.append(f"{path}: {text!r} is not an ISO 8601 timestamp")
    elif kind == "string":
        if len(element):
            problems.append(f"{path}: a string member with child elements")
        enum = shape.enum  # type: ignore[attr-defined]
        if enum and text not in enum:
            problems.append(f"{path}: {text!r} is not one of {shape.name}'s values")
    else:
        problems.append(f"{path}: the mock sends a {kind}, which this check does not know")
    return problems


class Recorder:
    """Keeps the raw body of every answer a client parses (botocore's before-parse event)."""

    def __init__(self) -> None:
        self.answers: list[tuple[Any, int, bytes]] = []

    def __call__(self, operation_model: Any, response_dict: dict[str, Any], **_: Any) -> None:
        self.answers.append(
            (operation_model, response_dict["status_code"], bytes(response_dict["body"]))
        )

    def problems(self) -> list[str]:
        found: list[str] = []
        for operation, status, body in self.answers:
            if status >= 300:
                continue  # error answers are checked below against the documentation
            root = ElementTree.fromstring(body)
            name = operation.name
            shape = operation.output_shape
            if shape is None:
                # botocore models no output for CreateTags (and other write-only actions),
                # but EC2 answers ``<return>true</return>``: AWS's CreateTags example
                # response (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateTags.html)
                # is <requestId>...</requestId> <return>true</return>.
                extra = [_tag(c) for c in root if _tag(c) not in _ENVELOPE]
                if extra != ["return"] or root.find("{*}return").text != "true":  # type: ignore[union-attr]
                    found.append(f"{name}: {extra} where EC2 answers only <return>true</return>")
                continue
            assert _tag(root) == f"{name}Response", (name, _tag(root))
            wrapper = shape.serialization.get("resultWrapper") if shape is not None else None
            for child in root:
                tag = _tag(child)
                if tag in _ENVELOPE:
                    continue
                if wrapper is not None and tag == wrapper:
                    found += check_against(child, shape, f"{name}/{tag}")
                elif shape is not None and wrapper is None:
                    members = {m.serialization.get("name", n): m for n, m in shape.members.items()}
                    if tag in members:
                        found += check_against(child, members[tag], f"{name}/{tag}")
                    else:
                        found.append(f"{name}/{tag}: not a member of {shape.name}")
                else:
                    found.append(f"{name}/{tag}: unexpected")
        return found


def test_the_check_catches_what_it_claims_to() -> None:
    """The checker itself: a misnamed member, a wrong type and an unknown enum value."""
    from botocore.session import get_session

    model = get_session().get_service_model("ec2")
    shape = model.operation_model("DescribeImages").output_shape
    assert shape is not None
    bad = ElementTree.fromstring(
        "<x><imagesSet><item><imageId>ami-1</imageId><imageState>sleeping</imageState>"
        "<isPublic>yes</isPublic><colour>red</colour></item></imagesSet></x>"
    )
    problems = check_against(bad, shape, "DescribeImages")
    assert len(problems) == 3, problems
    assert any("colour: not a member" in p for p in problems)
    assert any("'sleeping' is not one of" in p for p in problems)
    assert any("'yes' is not a boolean" in p for p in problems)


async def test_every_answer_of_the_mock_fits_botocores_model(
    mock_ec2: Any, ec2_client: Any, sts_client: Any
) -> None:
    mock = await mock_ec2(
        MockConfig(regions=(REGION,), instances_per_region=3, pending_s=3600, seed=1)
    )
    account = mock.config.accounts[0]
    recorder = Recorder()
    async with ec2_client(mock, REGION) as ec2, sts_client(mock) as sts:
        ec2.meta.events.register("before-parse.ec2.*", recorder)
        sts.meta.events.register("before-parse.sts.*", recorder)
        instances = (await ec2.describe_instances())["Reservations"]
        running = [
            i["InstanceId"]
            for r in instances
            for i in r["Instances"]
            if i["State"]["Name"] in {"running", "stopped"}
        ]
        assert running, "the seed must give at least one imageable instance"
        tags = [{"Key": "k", "Value": "v"}]
        made = await ec2.create_image(
            InstanceId=running[0],
            Name="reference-1",
            Description="d",
            NoReboot=True,
            TagSpecifications=[
                {"ResourceType": "image", "Tags": tags},
                {"ResourceType": "snapshot", "Tags": tags},
            ],
        )
        image_id = made["ImageId"]
        await ec2.describe_images(Owners=["self"])  # pending
        mock.set_image_state(account, REGION, image_id, "failed", ("Client.X", "broken"))
        await ec2.describe_images(ImageIds=[image_id])  # failed, with its StateReason
        mock.set_image_state(account, REGION, image_id, "available")
        await ec2.describe_images(
            Filters=[{"Name": "image-id", "Values": [image_id]}], IncludeDisabled=True
        )
        await ec2.describe_snapshots(OwnerIds=["self"])
        await ec2.create_tags(Resources=[image_id], Tags=[{"Key": "more", "Value": "x"}])
        await ec2.describe_image_references(ImageIds=[image_id], IncludeAllResourceTypes=True)
        await ec2.enable_image_deregistration_protection(ImageId=image_id)
        await ec2.disable_image_deregistration_protection(ImageId=image_id)
        await ec2.deregister_image(ImageId=image_id, DeleteAssociatedSnapshots=True)
        await sts.get_caller_identity()
        await sts.assume_role(
            RoleArn=f"arn:aws:iam::{account}:role/fleetimage", RoleSessionName="reference"
        )
    answered = {op.name for op, status, _ in recorder.answers if status < 300}
    assert answered == {
        "DescribeInstances",
        "CreateImage",
        "DescribeImages",
        "DescribeSnapshots",
        "CreateTags",
        "DescribeImageReferences",
        "EnableImageDeregistrationProtection",
        "DisableImageDeregistrationProtection",
        "DeregisterImage",
        "GetCallerIdentity",
        "AssumeRole",
    }
    assert recorder.problems() == []


# --- AWS's word on the answers the engine relies on ----------------------------------------


async def test_a_duplicate_name_answer_names_the_existing_ami(
    mock_ec2: Any, ec2_client: Any
) -> None:
    """engine/create.py parses the AMI id out of InvalidAMIName.Duplicate's message.

    AWS's "Error codes for the Amazon EC2 API" table
    (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html) lists the
    code for a name already in use by another AMI (paraphrased: its wording was not
    verified verbatim for this test, and it gives no message format).
    The message text: real EC2 answers, as quoted verbatim in public issue threads:
    "InvalidAMIName.Duplicate: AMI name consul-ubuntu-2019-03-29T12-28-48Z is already in use
    by AMI ami-0f589d96558469b10" (https://github.com/hashicorp/terraform-aws-consul/pull/131),
    "AMI name Wazuh_v5.0.0-latest_aarch64 is already in use by AMI ami-0acbb1b1d983269eb"
    (https://github.com/wazuh/wazuh-virtual-machines/issues/654). HTTP 400 ("status code:
    400", https://github.com/nanovms/ops/issues/392).
    """
    real = (
        "AMI name consul-ubuntu-2019-03-29T12-28-48Z is already in use by AMI ami-0f589d96558469b10"
    )
    pattern = re.compile(r"^AMI name (?P<name>.+) is already in use by AMI (?P<ami>ami-[0-9a-f]+)$")
    assert pattern.match(real)
    mock = await mock_ec2(MockConfig(regions=(REGION,), state_mix={"running": 1.0}))
    iid = mock.instances(mock.config.accounts[0], REGION)[0]["instance_id"]
    async with ec2_client(mock, REGION) as ec2:
        first = (await ec2.create_image(InstanceId=iid, Name="dup-1"))["ImageId"]
        with pytest.raises(ClientError) as caught:
            await ec2.create_image(InstanceId=iid, Name="dup-1")
    error = caught.value.response
    assert error["Error"]["Code"] == "InvalidAMIName.Duplicate"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    match = pattern.match(error["Error"]["Message"])
    assert match and (match["name"], match["ami"]) == ("dup-1", first)
    # and the engine's own parser finds the id in both texts
    from fleetimage.engine.create import _AMI_ID

    assert _AMI_ID.findall(real) == ["ami-0f589d96558469b10"]
    assert _AMI_ID.findall(error["Error"]["Message"]) == [first]


def _botocore_ec2_throttle_rule() -> dict[str, Any]:
    """botocore's retry rules for EC2 (botocore/data/_retry.json, the installed botocore)."""
    rules = json.loads((Path(botocore.__file__).parent / "data" / "_retry.json").read_text())
    policy = rules["retry"]["ec2"]["__default__"]["policies"]["request_limit_exceeded"]
    rule: dict[str, Any] = policy["applies_when"]["response"]
    return rule


async def test_throttling_is_503_request_limit_exceeded(mock_ec2: Any, ec2_client: Any) -> None:
    """AWS, "Request throttling for the Amazon EC2 API"
    (https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html): "If you exceed
    an API throttling limit, you get the RequestLimitExceeded error code." The page does not
    give the HTTP status; botocore's retry rules for EC2 do: RequestLimitExceeded with HTTP
    503 (botocore/data/_retry.json, ``retry.ec2.__default__.policies.request_limit_exceeded``).
    """
    assert _botocore_ec2_throttle_rule() == {
        "service_error_code": "RequestLimitExceeded",
        "http_status_code": 503,
    }
    mock = await mock_ec2(
        MockConfig(
            regions=(REGION,),
            faults=FaultConfig(throttle=1.0, actions=frozenset({"DescribeImages"})),
        )
    )
    async with ec2_client(mock, REGION) as ec2:
        with pytest.raises(ClientError) as caught:
            await ec2.describe_images(Owners=["self"])
    error = caught.value.response
    assert error["Error"]["Code"] == "RequestLimitExceeded"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert classify("RequestLimitExceeded", 503) is ErrorKind.THROTTLE


async def test_a_state_filter_combines_with_image_id(mock_ec2: Any, ec2_client: Any) -> None:
    """The waiter asks for settled images only: ``image-id`` and ``state`` filters together.

    AWS, DescribeImages (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeImages.html):
    "If you specify multiple filters, the filters are joined with an AND, and the request
    returns only results that match all of the specified filters." and lists the filters
    "image-id - The ID of the image." and "state - The state of the image (available |
    pending | failed)."
    """
    mock = await mock_ec2(
        MockConfig(
            regions=(REGION,), instances_per_region=3, pending_s=3600, state_mix={"running": 1.0}
        )
    )
    account = mock.config.accounts[0]
    ids = [i["instance_id"] for i in mock.instances(account, REGION)]
    async with ec2_client(mock, REGION) as ec2:
        images = [
            (await ec2.create_image(InstanceId=iid, Name=f"flt-{n}"))["ImageId"]
            for n, iid in enumerate(ids)
        ]
        mock.set_image_state(account, REGION, images[0], "available")
        mock.set_image_state(account, REGION, images[1], "failed", ("Client.X", "broken"))
        answer = await ec2.describe_images(
            Filters=[
                {"Name": "image-id", "Values": [*images[:2], "ami-0123456789abcdef0"]},
                {"Name": "state", "Values": ["available", "failed"]},
            ]
        )
        pending = await ec2.describe_images(
            Filters=[
                {"Name": "image-id", "Values": images},
                {"Name": "state", "Values": ["pending"]},
            ]
        )
    # AND of the two filters; an unknown id in a filter is just absent (no error)
    assert sorted(i["ImageId"] for i in answer["Images"]) == sorted(images[:2])
    assert [i["ImageId"] for i in pending["Images"]] == [images[2]]
