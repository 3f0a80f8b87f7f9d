"""Idempotent CreateImage (engine/create.py) on one lane, through aiobotocore against the
mock: the name is the idempotency key, so every path that may have applied a request ends
in exactly one image, and a name that is someone else's is never adopted."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from aiohttp import web
from lane_helpers import LIMITS, REGION, RUN_ID, _config, lane_on

from fleetimage.core.errors import AwsError, ErrorKind
from fleetimage.core.models import Event, ImageSpec, LaneKey, Requested, Retried, Target
from fleetimage.core.tags import INSTANCE_TAG, RUN_TAG
from fleetimage.engine.breaker import LaneOutage
from fleetimage.engine.bus import Bus
from fleetimage.engine.create import _adopt, check_dry_run, create_image, create_params
from fleetimage.engine.lane import Lane
from fleetimage.engine.limiter import Limiter
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


@asynccontextmanager
async def fake_ec2(
    ec2_client: Any, answer: Callable[[str], tuple[int, str]]
) -> AsyncIterator[Lane]:
    """A lane on a minimal EC2 stand-in on loopback: ``answer(action) -> (status, xml)``.
    For endpoints that behave in ways the mock (rightly) does not."""

    async def handle(request: web.Request) -> web.Response:
        form = await request.post()
        status, body = answer(str(form.get("Action")))
        return web.Response(status=status, text=body, content_type="text/xml")

    app = web.Application()
    app.router.add_post("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        async with ec2_client(f"http://127.0.0.1:{port}", REGION) as client:
            yield Lane(
                LaneKey("123456789012", REGION),
                client,
                Limiter.from_limits(LIMITS),
                _config().wall_retry,
                run_id=RUN_ID,
                bus=Bus([]),
            )
    finally:
        await runner.cleanup()


_NS = 'xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"'
TARGET = Target("123456789012", REGION, "i-0123456789abcdef0")


async def test_an_endpoint_that_ignores_dry_run_is_called_out(ec2_client: Any) -> None:
    """An endpoint that answers every CreateImage as if it made an image: the dry run must
    not pass for a success."""

    def answer(action: str) -> tuple[int, str]:
        return 200, (
            f"<CreateImageResponse {_NS}><requestId>r-1</requestId>"
            "<imageId>ami-0123456789abcdef0</imageId></CreateImageResponse>"
        )

    spec = ImageSpec(TARGET, "nightly-image", "", True, {"Purpose": "test"}, False)
    async with fake_ec2(ec2_client, answer) as lane:
        verdict = await check_dry_run(lane, spec)
    assert verdict == (
        False,
        "DryRunIgnored",
        "the endpoint ignored DryRun and answered as if it created an image",
    )


async def test_a_duplicate_answer_that_names_no_ami_is_still_explained(ec2_client: Any) -> None:
    """A Duplicate answer whose message names no AMI (an endpoint other than EC2, or a
    wording EC2 may change): when the image stays invisible, the error says so instead of
    failing to parse an id."""

    def answer(action: str) -> tuple[int, str]:
        if action == "CreateImage":
            return 400, (
                "<Response><Errors><Error><Code>InvalidAMIName.Duplicate</Code><Message>"
                "The specified AMI name is already in use by another AMI.</Message></Error>"
                "</Errors><RequestID>r-2</RequestID></Response>"
            )
        return 200, (
            f"<DescribeImagesResponse {_NS}><requestId>r-3</requestId><imagesSet/>"
            "</DescribeImagesResponse>"
        )

    spec = ImageSpec(TARGET, "nightly-image", "", True, {RUN_TAG: RUN_ID}, False)
    async with fake_ec2(ec2_client, answer) as lane:
        with anyio.fail_after(30), pytest.raises(AwsError) as caught:
            await create_image(lane, spec, grace_s=0.1)
    assert caught.value.code == "InvalidAMIName.Duplicate"
    assert "is already used by an image this account cannot see yet, which stayed" in (
        caught.value.message
    )


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


async def test_a_deregistered_image_under_the_name_is_not_adopted(ec2_client: Any) -> None:
    """EC2 lists a deregistered image for a while: resume's lookup by name must not adopt
    it (its snapshots may be gone), but create the image again."""
    tags = {RUN_TAG: RUN_ID, INSTANCE_TAG: TARGET.instance_id}

    def answer(action: str) -> tuple[int, str]:
        if action == "CreateImage":
            return 200, (
                f"<CreateImageResponse {_NS}><requestId>r-4</requestId>"
                "<imageId>ami-0ccccccccccccccc0</imageId></CreateImageResponse>"
            )
        tag_set = "".join(f"<item><key>{k}</key><value>{v}</value></item>" for k, v in tags.items())
        return 200, (
            f"<DescribeImagesResponse {_NS}><requestId>r-5</requestId><imagesSet><item>"
            "<imageId>ami-0dddddddddddddddd0</imageId><name>nightly-image</name>"
            f"<imageState>deregistered</imageState><tagSet>{tag_set}</tagSet>"
            "</item></imagesSet></DescribeImagesResponse>"
        )

    spec = ImageSpec(TARGET, "nightly-image", "", True, tags, False)
    async with fake_ec2(ec2_client, answer) as lane:
        created = await create_image(lane, spec, lookup_first=True)
    assert (created.image_id, created.adopted, created.attempts) == (
        "ami-0ccccccccccccccc0",
        False,
        1,
    )


def _stateful(*create_answers: tuple[int, str], images: str = "") -> Any:
    """``fake_ec2`` answers: CreateImage answers in turn; DescribeImages lists ``images``."""
    queue = list(create_answers)
    calls: list[str] = []

    def answer(action: str) -> tuple[int, str]:
        calls.append(action)
        if action == "CreateImage":
            return queue.pop(0)
        return 200, (
            f"<DescribeImagesResponse {_NS}><requestId>r</requestId><imagesSet>{images}"
            "</imagesSet></DescribeImagesResponse>"
        )

    answer.calls = calls  # type: ignore[attr-defined]
    return answer


_OK = (
    200,
    (
        f"<CreateImageResponse {_NS}><requestId>r</requestId>"
        "<imageId>ami-0eeeeeeeeeeeeeee0</imageId></CreateImageResponse>"
    ),
)
_UNAVAILABLE = (
    503,
    (
        "<Response><Errors><Error><Code>Unavailable</Code><Message>try again</Message></Error>"
        "</Errors><RequestID>r</RequestID></Response>"
    ),
)


async def test_every_send_is_written_ahead_and_an_ambiguous_one_looked_up_once(
    ec2_client: Any,
) -> None:
    """A 503 to CreateImage may have been applied (no ClientToken): the name is looked up
    once, then the request is sent again; each send is announced (write-ahead) with its
    attempt number before it leaves."""
    answer = _stateful(_UNAVAILABLE, _OK)
    spec = ImageSpec(TARGET, "nightly-image", "", True, {RUN_TAG: RUN_ID}, False)
    events: list[Event] = []
    async with fake_ec2(ec2_client, answer) as lane:
        lane.bus = Bus([events.append])
        created = await create_image(lane, spec)
    assert (created.image_id, created.adopted, created.attempts) == (
        "ami-0eeeeeeeeeeeeeee0",
        False,
        2,
    )
    assert answer.calls == ["CreateImage", "DescribeImages", "CreateImage"]
    requested = [e for e in events if isinstance(e, Requested)]
    assert [
        (e.run_id, e.account, e.region, e.instance_id, e.image_name, e.attempt) for e in requested
    ] == [(RUN_ID, TARGET.account, REGION, TARGET.instance_id, "nightly-image", n) for n in (1, 2)]
    assert all(e.at is not None for e in requested)
    assert lane.create_successes == 1


async def test_a_200_without_an_image_id_is_resolved_by_name(ec2_client: Any) -> None:
    """A success answer that names no image (a proxy, a broken endpoint) may or may not have
    been applied: it is resolved like any ambiguous answer, by looking the name up."""
    tags = {RUN_TAG: RUN_ID, INSTANCE_TAG: TARGET.instance_id}
    tag_set = "".join(f"<item><key>{k}</key><value>{v}</value></item>" for k, v in tags.items())
    ours = (
        "<item><imageId>ami-0fffffffffffffff0</imageId><name>nightly-image</name>"
        f"<imageState>pending</imageState><tagSet>{tag_set}</tagSet></item>"
    )
    no_id = 200, f"<CreateImageResponse {_NS}><requestId>r</requestId></CreateImageResponse>"
    answer = _stateful(no_id, images=ours)
    spec = ImageSpec(TARGET, "nightly-image", "", True, tags, False)
    events: list[Event] = []
    async with fake_ec2(ec2_client, answer) as lane:
        lane.bus = Bus([events.append])
        created = await create_image(lane, spec)
    assert (created.image_id, created.adopted, created.attempts) == (
        "ami-0fffffffffffffff0",
        True,
        1,
    )
    assert answer.calls == ["CreateImage", "DescribeImages"]
    retried = [(e.action, e.error_code) for e in events if isinstance(e, Retried)]
    assert retried == [("CreateImage", "InvalidResponse")]
    # the breaker counted it as a failure of the endpoint, with its cause
    last = lane.breaker.last_error
    assert last is not None and (last.action, last.code) == ("CreateImage", "InvalidResponse")


_THROTTLED = (
    503,
    (
        "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit "
        "exceeded.</Message></Error></Errors><RequestID>r</RequestID></Response>"
    ),
)


async def test_a_resume_lookup_that_found_nothing_is_not_repeated_after_a_throttle(
    ec2_client: Any,
) -> None:
    """Resume looks the name up once; when nothing is there and the send is then throttled
    (EC2 applied nothing), the resend goes straight out: no second lookup."""
    answer = _stateful(_THROTTLED, _OK)
    spec = ImageSpec(TARGET, "nightly-image", "", True, {RUN_TAG: RUN_ID}, False)
    async with fake_ec2(ec2_client, answer) as lane:
        created = await create_image(lane, spec, lookup_first=True)
    assert (created.image_id, created.adopted, created.attempts) == (
        "ami-0eeeeeeeeeeeeeee0",
        False,
        2,
    )
    assert answer.calls == ["DescribeImages", "CreateImage", "CreateImage"]
