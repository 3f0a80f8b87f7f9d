"""Idempotent CreateImage.

EC2's CreateImage has no ClientToken. The AMI name, unique per account and region, is the
idempotency key: names are deterministic per (run, instance), so after any failure that may
have been applied (timeout, reset, 5xx, lost answer) the image is looked up by name *before*
anything is sent again, and ``InvalidAMIName.Duplicate`` adopts the existing image when it
carries this run's tags. An image by that name without them is someone else's: the target
fails with a clear message and nothing is adopted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import anyio

from fleetimage.core.clock import now
from fleetimage.core.errors import AwsError, ErrorKind
from fleetimage.core.models import ImageSpec, Requested
from fleetimage.core.tags import INSTANCE_TAG, RUN_TAG
from fleetimage.engine.breaker import LaneOutage
from fleetimage.engine.lane import Lane

__all__ = [
    "CreatedImage",
    "check_dry_run",
    "create_image",
    "find_image_by_name",
]

_AMI_ID = re.compile(r"\bami-[0-9a-f]{8,17}\b")
_GONE = frozenset({"deregistered", "invalid", "error"})


@dataclass(frozen=True, slots=True)
class CreatedImage:
    image_id: str
    adopted: bool
    attempts: int


def _tags(image: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in image.get("Tags", [])}


def _is_ours(image: dict[str, Any], spec: ImageSpec, run_id: str) -> bool:
    tags = _tags(image)
    return tags.get(RUN_TAG) == run_id and tags.get(INSTANCE_TAG) == spec.target.instance_id


async def find_image_by_name(
    lane: Lane, name: str, *, instance_id: str | None = None
) -> list[dict[str, Any]]:
    """This account's live images called ``name`` (DescribeImages, Owners=self, name filter)."""
    answer = await lane.call(
        "DescribeImages",
        {"Owners": ["self"], "Filters": [{"Name": "name", "Values": [name]}]},
        instance_id=instance_id,
    )
    return [i for i in answer.get("Images", []) if i.get("State") not in _GONE]


def _foreign(spec: ImageSpec, image_id: str, detail: str) -> AwsError:
    return AwsError(
        "InvalidAMIName.Duplicate",
        f"AMI name {spec.name!r} is already used by {image_id}, which {detail}; "
        "not adopting it. Choose a name_template with {run_id} or deregister that image.",
        action="CreateImage",
        kind=ErrorKind.FATAL,
    )


def _adopt(spec: ImageSpec, run_id: str, images: list[dict[str, Any]]) -> str | None:
    """The id of our image among ``images``; raise if the name belongs to someone else."""
    for image in images:
        if _is_ours(image, spec, run_id):
            return str(image["ImageId"])
    if images:
        raise _foreign(
            spec, str(images[0]["ImageId"]), "was not created by this run for this instance"
        )
    return None


async def _resolve_duplicate(
    lane: Lane, spec: ImageSpec, run_id: str, error: AwsError, *, grace_s: float
) -> str:
    """EC2 says the name is taken: find that image (it may not be visible yet) and adopt it."""
    named = _AMI_ID.search(error.message)
    deadline = anyio.current_time() + grace_s
    delay = 0.05
    while True:
        images = await find_image_by_name(lane, spec.name, instance_id=spec.target.instance_id)
        adopted = _adopt(spec, run_id, images)
        if adopted is not None:
            return adopted
        if anyio.current_time() >= deadline:
            shown = named.group(0) if named else "an image this account cannot see yet"
            raise _foreign(spec, shown, f"stayed invisible to DescribeImages for {grace_s:g} s")
        # Eventual consistency: EC2 enforces the name before DescribeImages shows the image.
        await anyio.sleep(delay)
        delay = min(delay * 2, 2.0)


def _options_hint(spec: ImageSpec, params: dict[str, Any]) -> str:
    """For a lane whose CreateImage never succeeded: what the request used, in config terms."""
    options = []
    if spec.tag_snapshots:
        options.append("TagSpecifications for snapshots (image.tag_snapshots)")
    if "BlockDeviceMappings" in params:
        options.append("BlockDeviceMappings NoDevice (image.exclude_devices)")
    options.append(f"NoReboot={spec.no_reboot} (image.no_reboot)")
    return (
        "CreateImage has not succeeded in this lane yet; if this endpoint always fails it, "
        f"check that it supports the request's options: {'; '.join(options)}"
    )


def create_params(spec: ImageSpec, *, dry_run: bool = False) -> dict[str, Any]:
    tags = [{"Key": k, "Value": v} for k, v in spec.tags.items()]
    tag_specs = [{"ResourceType": "image", "Tags": tags}]
    if spec.tag_snapshots:
        tag_specs.append({"ResourceType": "snapshot", "Tags": tags})
    params: dict[str, Any] = {
        "InstanceId": spec.target.instance_id,
        "Name": spec.name,
        "NoReboot": spec.no_reboot,
        "TagSpecifications": tag_specs,
    }
    if spec.description:
        params["Description"] = spec.description
    if spec.exclude_devices:
        params["BlockDeviceMappings"] = [
            {"DeviceName": d, "NoDevice": ""} for d in spec.exclude_devices
        ]
    if dry_run:
        params["DryRun"] = True
    return params


async def create_image(
    lane: Lane, spec: ImageSpec, *, lookup_first: bool = False, grace_s: float = 60.0
) -> CreatedImage:
    """Create (or adopt) the image for ``spec``; exactly one image per target, ever.

    ``lookup_first`` is for resume: the journal says a request may have been sent.
    The ledger commits ``requesting`` (the Requested event) before each send.

    Transient failures, timeouts and resets never fail the target: they are retried through
    the lane's breaker (which pauses the lane and probes) until the lane stops after
    ``retry.max_outage_s``; then :class:`~fleetimage.engine.breaker.LaneOutage` is raised (the
    target did not start; its name still makes a resend safe). Only EC2's answer about the
    request (a fatal code, a quota once its budget is spent) is raised as a failure.
    """
    params = create_params(spec)
    sent = _Sent(lookup_first)
    try:
        return await _create(lane, spec, params, sent, lookup_first=lookup_first, grace_s=grace_s)
    except LaneOutage as outage:
        last = outage.last_error
        never = lane.create_successes == 0 and last is not None and last.action == "CreateImage"
        hint = _options_hint(spec, params) if never else None
        raise outage.again(hint=hint, requested=sent.maybe) from None


@dataclass(slots=True)
class _Sent:
    """Whether a CreateImage for the target may have reached EC2 (this run or the last)."""

    maybe: bool


async def _create(
    lane: Lane,
    spec: ImageSpec,
    params: dict[str, Any],
    sent_to_ec2: _Sent,
    *,
    lookup_first: bool,
    grace_s: float,
) -> CreatedImage:
    run_id = lane.run_id
    target = spec.target
    must_look = lookup_first
    sent = 0
    try:
        async for attempt in lane.retrying("CreateImage", target.instance_id):
            with attempt:
                if must_look:
                    images = await find_image_by_name(
                        lane, spec.name, instance_id=target.instance_id
                    )
                    found = _adopt(spec, run_id, images)
                    if found is not None:
                        lane.create_successes += 1
                        return CreatedImage(found, adopted=True, attempts=sent)
                    must_look = False
                sent += 1
                request = Requested(
                    run_id,
                    target.account,
                    target.region,
                    target.instance_id,
                    now(),
                    image_name=spec.name,
                    attempt=sent,
                )
                try:
                    answer = await lane.send(
                        "CreateImage", params, instance_id=target.instance_id, write_ahead=request
                    )
                except AwsError as error:
                    if not isinstance(error, LaneOutage):  # only the breaker answers before
                        sent_to_ec2.maybe = True  # the request leaves; this is EC2's answer
                    if error.kind is ErrorKind.DUPLICATE_NAME:
                        image_id = await _resolve_duplicate(
                            lane, spec, run_id, error, grace_s=grace_s
                        )
                        lane.create_successes += 1
                        return CreatedImage(image_id, adopted=True, attempts=sent)
                    if error.kind is ErrorKind.AMBIGUOUS:
                        must_look = True
                    raise
                sent_to_ec2.maybe = True
                new_id = answer.get("ImageId") if isinstance(answer, dict) else None
                if not new_id:
                    # A 200 without an image id (a proxy, a broken endpoint): it may or may
                    # not have been applied, so resolve it like any ambiguous answer, by name.
                    must_look = True
                    invalid = AwsError(
                        "InvalidResponse",
                        "CreateImage answered without an ImageId",
                        action="CreateImage",
                        kind=ErrorKind.AMBIGUOUS,
                    )
                    await lane.breaker.report_failure("CreateImage", invalid)
                    raise invalid
                lane.create_successes += 1
                return CreatedImage(str(new_id), adopted=False, attempts=sent)
    except AwsError as error:
        raise await lane.gave_up(error) from None
    raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover


async def check_dry_run(lane: Lane, spec: ImageSpec) -> tuple[bool, str, str]:
    """CreateImage with DryRun: (would succeed, code, message). Nothing is created."""
    try:
        await lane.call(
            "CreateImage", create_params(spec, dry_run=True), instance_id=spec.target.instance_id
        )
    except AwsError as error:
        return error.code == "DryRunOperation", error.code, error.message
    # A server that ignores DryRun would have created an image: say so loudly.
    return (
        False,
        "DryRunIgnored",
        "the endpoint ignored DryRun and answered as if it created an image",
    )
