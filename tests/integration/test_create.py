"""Idempotent CreateImage (engine/create.py) on one lane, through aiobotocore against the
mock: the name is the idempotency key, so every path that may have applied a request ends
in exactly one image, and a name that is someone else's is never adopted."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from lane_helpers import LIMITS, REGION, RUN_ID, lane_on

from fleetimage.core.errors import AwsError, ErrorKind
from fleetimage.core.models import Event, ImageSpec, Requested, Retried, Target
from fleetimage.core.tags import INSTANCE_TAG, RUN_TAG
from fleetimage.engine.breaker import LaneOutage
from fleetimage.engine.bus import Bus
from fleetimage.engine.create import _adopt, check_dry_run, create_image, create_params
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
        again = await create_image(lane, other, lookup_first=True)  # resumed twice: adopted
    assert (made.adopted, made.attempts) == (False, 1)
    assert (again.image_id, again.adopted) == (made.image_id, True)
    assert lane.create_successes == 3


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
    assert (error.code, error.kind, error.action) == (
        "InvalidAMIName.Duplicate",
        ErrorKind.FATAL,
        "CreateImage",
    )
    assert error.message == (
        f"AMI name {spec.name!r} is already used by {theirs['ImageId']}, which was not "
        "created by this run for this instance; not adopting it. Choose a name_template "
        "with {run_id} or deregister that image."
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
            # A grace far above one lookup's round trip, even on a loaded machine: with
            # 0.2 s, a first lookup slower than the grace left no time to ask again.
            await create_image(lane, spec, grace_s=1.0)
    message = caught.value.message
    assert caught.value.code == "InvalidAMIName.Duplicate"
    assert f"is already used by {hidden['ImageId']}, which stayed invisible" in message
    assert "for 1 s" in message
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
    events: list[Event] = []
    async with lane_on(mock, ec2_client) as lane:
        lane.bus = Bus([events.append])
        created = await create_image(lane, spec)
        (image,) = await images_named(lane, spec.name)
    assert (created.image_id, created.adopted, created.attempts) == (image["ImageId"], True, 1)
    assert mock.count(action="CreateImage") == 1
    # the retry is reported as CreateImage's, for this instance
    retried = [(e.action, e.instance_id) for e in events if isinstance(e, Retried)]
    assert retried == [("CreateImage", spec.target.instance_id)]
    assert not mock.duplicates()


async def test_dry_run_creates_nothing(mock_ec2: Any, ec2_client: Any) -> None:
    mock = await mock_ec2(_mock())
    spec = spec_for(mock)
    async with lane_on(mock, ec2_client) as lane:
        ok, code, _message = await check_dry_run(lane, spec)
        assert await images_named(lane, spec.name) == []
    assert (ok, code) == (True, "DryRunOperation")


@pytest.mark.parametrize("worked_before", [False, True])
async def test_a_lane_where_create_image_never_worked_names_the_requests_options(
    mock_ec2: Any, ec2_client: Any, worked_before: bool
) -> None:
    """CreateImage answers 503 until the lane's outage budget (0.3 s) is spent: if it never
    succeeded in this lane, the outage names the options an endpoint may not support; if it
    did, the options are fine and the outage says nothing about them."""
    mock = await mock_ec2(
        _mock(faults=FaultConfig(unavailable=1.0, actions=frozenset({"CreateImage"})))
    )
    spec = spec_for(mock, tag_snapshots=True, exclude_devices=("/dev/sdb",))
    async with lane_on(mock, ec2_client, retry={"max_outage_s": 0.3}) as lane:
        lane.create_successes = int(worked_before)  # the lane's count of CreateImage successes
        with anyio.fail_after(60), pytest.raises(LaneOutage) as caught:
            await create_image(lane, spec)
    outage = caught.value
    assert outage.requested  # 503s are answers: a request may have reached EC2
    if worked_before:
        assert outage.hint == ""
        return
    assert outage.hint == (
        "CreateImage has not succeeded in this lane yet; if this endpoint always fails it, "
        "check that it supports the request's options: TagSpecifications for snapshots "
        "(image.tag_snapshots); BlockDeviceMappings NoDevice (image.exclude_devices); "
        "NoReboot=True (image.no_reboot)"
    )
    assert mock.count(action="CreateImage") >= 1


async def test_a_resumed_target_whose_lane_stops_before_sending_may_have_been_requested(
    mock_ec2: Any, ec2_client: Any
) -> None:
    """On resume the journal says a request may have reached EC2 in the last run: a lane that
    stops during the first lookup (DescribeImages down) must still say so (the target is
    looked up again next time, never assumed unsent)."""
    mock = await mock_ec2(
        _mock(faults=FaultConfig(unavailable=1.0, actions=frozenset({"DescribeImages"})))
    )
    spec = spec_for(mock)
    async with lane_on(mock, ec2_client, retry={"max_outage_s": 0.3}) as lane:
        with anyio.fail_after(60), pytest.raises(LaneOutage) as caught:
            await create_image(lane, spec, lookup_first=True)
    assert caught.value.requested is True
    assert mock.count(action="CreateImage") == 0  # it stopped before anything was sent


TARGET = Target("123456789012", REGION, "i-0123456789abcdef0")


async def test_an_endpoint_that_ignores_dry_run_is_called_out(
    mock_ec2: Any, ec2_client: Any
) -> None:
    """An endpoint that ignores DryRun applies the CreateImage and answers with an image id:
    the dry run must not pass for a success, and must say what the endpoint did."""
    mock = await mock_ec2(_mock(ignore_dry_run=True))
    spec = spec_for(mock)
    async with lane_on(mock, ec2_client) as lane:
        verdict = await check_dry_run(lane, spec)
        made = await images_named(lane, spec.name)
    assert verdict == (
        False,
        "DryRunIgnored",
        "the endpoint ignored DryRun and answered as if it created an image",
    )
    # what such an endpoint did (EC2 itself applies nothing: test_dry_run_creates_nothing)
    assert [i["Name"] for i in made] == [spec.name]
    assert mock.count(action="CreateImage", outcome="ok") == 1


async def test_a_duplicate_answer_that_names_no_ami_is_still_explained(
    mock_ec2: Any, ec2_client: Any
) -> None:
    """A Duplicate answer whose message names no AMI (an endpoint other than EC2, or a
    wording EC2 may change): when the image stays invisible, the error says so instead of
    failing to parse an id."""
    mock = await mock_ec2(_mock(visibility_lag_s=3600, duplicate_message_without_id=True))
    spec = spec_for(mock)
    async with lane_on(mock, ec2_client) as lane:
        await lane.client.create_image(**create_params(spec))  # applied, still invisible
        with anyio.fail_after(30), pytest.raises(AwsError) as caught:
            await create_image(lane, spec, grace_s=0.1)
    assert caught.value.code == "InvalidAMIName.Duplicate"
    assert caught.value.message.startswith(
        f"AMI name {spec.name!r} is already used by an image this account cannot see yet, "
        "which stayed invisible to DescribeImages for 0.1 s"
    )
    assert "ami-" not in caught.value.message
    assert mock.count(action="CreateImage", outcome="error") == 1


@pytest.mark.parametrize(
    "tags",
    [
        None,  # no Tags at all (EC2 leaves the member out)
        {RUN_TAG: RUN_ID, INSTANCE_TAG: "i-0fffffffffffffff0"},  # this run, another instance
        {RUN_TAG: "another-run", INSTANCE_TAG: TARGET.instance_id},  # another run
    ],
)
def test_only_an_image_of_this_run_and_instance_is_ours(tags: dict[str, str] | None) -> None:
    spec = ImageSpec(TARGET, "nightly-image", "", True, {}, False)
    image: dict[str, Any] = {"ImageId": "ami-0aaaaaaaaaaaaaaa0", "State": "available"}
    if tags is not None:
        image["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
    with pytest.raises(AwsError, match="was not created by this run for this instance"):
        _adopt(spec, RUN_ID, [image])
    # ours is found among others by that name
    ours = {
        "ImageId": "ami-0bbbbbbbbbbbbbbb0",
        "Tags": [
            {"Key": RUN_TAG, "Value": RUN_ID},
            {"Key": INSTANCE_TAG, "Value": TARGET.instance_id},
        ],
    }
    assert _adopt(spec, RUN_ID, [image, ours]) == "ami-0bbbbbbbbbbbbbbb0"
    assert _adopt(spec, RUN_ID, []) is None


async def test_a_deregistered_image_under_the_name_is_not_adopted(
    mock_ec2: Any, ec2_client: Any
) -> None:
    """EC2 lists a deregistered image for a while: resume's lookup by name must not adopt
    it (its snapshots may be gone), but create the image again."""
    mock = await mock_ec2(_mock(deregistered_listed_s=3600))
    spec = spec_for(mock)
    async with lane_on(mock, ec2_client) as lane:
        earlier = await lane.client.create_image(**create_params(spec))
        await lane.client.deregister_image(ImageId=earlier["ImageId"])
        listed = await images_named(lane, spec.name)
        created = await create_image(lane, spec, lookup_first=True)
    assert [(i["ImageId"], i["State"]) for i in listed] == [(earlier["ImageId"], "deregistered")]
    assert created.image_id != earlier["ImageId"]
    assert (created.adopted, created.attempts) == (False, 1)
    assert mock.count(action="CreateImage", outcome="ok") == 2


def _faults_once(kind: str) -> MockConfig:
    """A mock whose first CreateImage gets fault ``kind`` and the next goes through: the
    faults are drawn from a stream seeded by ``seed``, whose first two draws are 0.32, 0.93."""
    return _mock(seed=2, faults=FaultConfig(**{kind: 0.5}, actions=frozenset({"CreateImage"})))


async def test_every_send_is_written_ahead_and_an_ambiguous_one_looked_up_once(
    mock_ec2: Any, ec2_client: Any
) -> None:
    """A 503 to CreateImage may have been applied (no ClientToken): the name is looked up
    once, then the request is sent again; each send is announced (write-ahead) with its
    attempt number before it leaves."""
    mock = await mock_ec2(_faults_once("unavailable"))
    spec = spec_for(mock)
    events: list[Event] = []
    async with lane_on(mock, ec2_client) as lane:
        lane.bus = Bus([events.append])
        created = await create_image(lane, spec)
    (image,) = mock.images(spec.target.account, REGION)
    assert (created.image_id, created.adopted, created.attempts) == (image["image_id"], False, 2)
    assert mock.count(action="CreateImage", outcome="fault") == 1
    assert mock.count(action="CreateImage", outcome="ok") == 1
    assert mock.count(action="DescribeImages") == 1  # the lookup between the two sends
    requested = [e for e in events if isinstance(e, Requested)]
    t = spec.target
    assert [
        (e.run_id, e.account, e.region, e.instance_id, e.image_name, e.attempt) for e in requested
    ] == [(RUN_ID, t.account, REGION, t.instance_id, spec.name, n) for n in (1, 2)]
    assert all(e.at is not None for e in requested)
    assert lane.create_successes == 1


async def test_a_200_without_an_image_id_is_resolved_by_name(
    mock_ec2: Any, ec2_client: Any
) -> None:
    """A success answer that names no image (a proxy, a broken endpoint) may or may not have
    been applied: it is resolved like any ambiguous answer, by looking the name up."""
    mock = await mock_ec2(_mock(create_image_answer_without_id=True))
    spec = spec_for(mock)
    events: list[Event] = []
    async with lane_on(mock, ec2_client) as lane:
        lane.bus = Bus([events.append])
        created = await create_image(lane, spec)
    (image,) = mock.images(spec.target.account, REGION)
    assert (created.image_id, created.adopted, created.attempts) == (image["image_id"], True, 1)
    assert mock.count(action="CreateImage") == 1
    assert mock.count(action="DescribeImages") == 1
    retried = [(e.action, e.error_code) for e in events if isinstance(e, Retried)]
    assert retried == [("CreateImage", "InvalidResponse")]
    # the breaker counted it as a failure of the endpoint, with its cause
    last = lane.breaker.last_error
    assert last is not None and (last.action, last.code) == ("CreateImage", "InvalidResponse")


async def test_a_resume_lookup_that_found_nothing_is_not_repeated_after_a_throttle(
    mock_ec2: Any, ec2_client: Any
) -> None:
    """Resume looks the name up once; when nothing is there and the send is then throttled
    (EC2 applied nothing), the resend goes straight out: no second lookup."""
    mock = await mock_ec2(_faults_once("throttle"))
    spec = spec_for(mock)
    async with lane_on(mock, ec2_client) as lane:
        created = await create_image(lane, spec, lookup_first=True)
    (image,) = mock.images(spec.target.account, REGION)
    assert (created.image_id, created.adopted, created.attempts) == (image["image_id"], False, 2)
    assert mock.count(action="DescribeImages") == 1
    assert mock.count(action="CreateImage", outcome="fault") == 1
    assert mock.count(action="CreateImage", outcome="ok") == 1


async def test_every_token_a_lane_takes_is_heard_of(mock_ec2: Any, ec2_client: Any) -> None:
    """Its bucket waits for the requests it has not heard of before it counts the server full
    again: answers, throttles, 5xx, resets, lost answers and tokens the breaker turned back
    must each be told to it, or a lane would wait for ever."""
    faults = FaultConfig(
        internal_error=0.1, unavailable=0.1, throttle=0.1, reset=0.1, lost_answer=0.1
    )
    mock = await mock_ec2(_mock(faults=faults, seed=3))
    async with lane_on(mock, ec2_client) as lane:
        with anyio.fail_after(60):
            for n in range(2):
                await create_image(lane, spec_for(mock, n))
        buckets = [lane.limiter.bucket(a) for a in ("CreateImage", "DescribeImages")]
    assert mock.count(outcome="ok") >= 2 and mock.count() > mock.count(outcome="ok")
    assert [b._heard.in_flight for b in buckets] == [0, 0]
