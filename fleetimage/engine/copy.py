"""Idempotent CopyImage: a deterministic, journaled ClientToken, and a lookup before resending
on resume.

CopyImage is sent in the destination region (``SourceRegion`` names the source) with a
``ClientToken`` (:func:`~fleetimage.core.copies.client_token`): the same token with the same
parameters answers the first copy's image id and copies nothing, so within a run an ambiguous
failure (timeout, reset, 5xx, lost answer) is simply resent with the same token. AWS does not
document how long it remembers a token, so a resume first looks the copy up by name and tags
(``lookup_first``). ``IdempotentParameterMismatch`` means the same token went out with other
parameters: a bug in fleetimage, reported as such, never retried. ``ResourceLimitExceeded``
is not retried here either: the destination's copy lane pauses (see ``copy_lanes.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fleetimage.config import FleetConfig
from fleetimage.config.copying import copy_template
from fleetimage.core.clock import now
from fleetimage.core.copies import CopyKey, CopyRequested, client_token
from fleetimage.core.errors import AwsError, ErrorKind, FleetImageError
from fleetimage.core.models import ImageSpec
from fleetimage.core.naming import render_name
from fleetimage.core.tags import (
    INSTANCE_TAG,
    OWN_TAGS,
    RUN_TAG,
    SOURCE_IMAGE_TAG,
    SOURCE_REGION_TAG,
)
from fleetimage.engine.create import find_image_by_name
from fleetimage.engine.lane import Lane

__all__ = [
    "CopyLimitReached",
    "CopySpec",
    "CreatedCopy",
    "build_copy_spec",
    "copy_destinations",
    "copy_image",
    "copy_params",
]


@dataclass(frozen=True, slots=True)
class CopySpec:
    """The CopyImage request for one (target, destination)."""

    key: CopyKey
    source_image_id: str
    name: str
    token: str
    description: str
    tags: dict[str, str]
    copy_tags: bool
    encrypted: bool
    kms_key_id: str | None
    completion_minutes: int | None


@dataclass(frozen=True, slots=True)
class CreatedCopy:
    image_id: str
    adopted: bool
    attempts: int


class CopyLimitReached(FleetImageError):
    """``ResourceLimitExceeded`` from CopyImage: the destination's concurrent copies (or its
    AMI quota) are full. Nothing was copied; the copy lane pauses and sends it again."""

    def __init__(self, error: AwsError) -> None:
        super().__init__(f"{error.code}: {error.message}")
        self.error = error


def copy_destinations(config: FleetConfig, source_region: str) -> list[str]:
    """Where an image made in ``source_region`` is copied (never into its own region)."""
    return [r for r in config.copy_.regions if r != source_region]


def build_copy_spec(
    config: FleetConfig,
    spec: ImageSpec,
    source_image_id: str,
    destination: str,
    run_id: str,
    started_at: datetime,
) -> CopySpec:
    target = spec.target
    opts = config.copy_
    name = spec.name
    if opts.name_template is not None:
        name = render_name(
            copy_template(opts.name_template, target.region),
            instance_id=target.instance_id,
            region=destination,
            account=target.account,
            run_id=run_id,
            started_at=started_at,
            tags=target.tags,
        )
    # Our own tags always (adoption and prune trust them), then the extra ones, then where
    # the copy came from.
    tags = {k: v for k, v in spec.tags.items() if k in OWN_TAGS}
    tags.update(opts.tags)
    tags.update({SOURCE_IMAGE_TAG: source_image_id, SOURCE_REGION_TAG: target.region})
    return CopySpec(
        key=CopyKey(target.account, target.region, target.instance_id, destination),
        source_image_id=source_image_id,
        name=name,
        token=client_token(run_id, target.instance_id, destination, source_image_id),
        description=f"fleetimage copy of {source_image_id} from {target.region}"[:255],
        tags=tags,
        copy_tags=opts.copy_tags,
        encrypted=opts.encrypted,
        kms_key_id=opts.kms_key_id.get(destination),
        completion_minutes=opts.snapshot_copy_completion_minutes,
    )


def copy_params(spec: CopySpec) -> dict[str, Any]:
    params: dict[str, Any] = {
        "SourceRegion": spec.key.source_region,
        "SourceImageId": spec.source_image_id,
        "Name": spec.name,
        "Description": spec.description,
        "ClientToken": spec.token,
        "CopyImageTags": spec.copy_tags,
        "TagSpecifications": [
            {
                "ResourceType": "image",
                "Tags": [{"Key": k, "Value": v} for k, v in spec.tags.items()],
            }
        ],
    }
    if spec.encrypted:
        params["Encrypted"] = True
    if spec.kms_key_id is not None:
        params["KmsKeyId"] = spec.kms_key_id
    if spec.completion_minutes is not None:
        params["SnapshotCopyCompletionDurationMinutes"] = spec.completion_minutes
    return params


def _ours(image: dict[str, Any], spec: CopySpec, run_id: str) -> bool:
    tags = {t["Key"]: t["Value"] for t in image.get("Tags", [])}
    return (
        tags.get(RUN_TAG) == run_id
        and tags.get(INSTANCE_TAG) == spec.key.instance_id
        and tags.get(SOURCE_IMAGE_TAG) == spec.source_image_id
    )


async def find_copy(lane: Lane, spec: CopySpec) -> str | None:
    """The id of this copy if the destination has it (by name, then by our tags); raise if the
    name is taken by an image that is not this copy."""
    images = await find_image_by_name(lane, spec.name, instance_id=spec.key.instance_id)
    for image in images:
        if _ours(image, spec, lane.run_id):
            return str(image["ImageId"])
    if images:
        raise AwsError(
            "InvalidAMIName.Duplicate",
            f"AMI name {spec.name!r} is already used in {spec.key.destination} by "
            f"{images[0]['ImageId']}, which is not this run's copy of {spec.source_image_id}; "
            "not adopting it (set copy.name_template with {run_id} or deregister that image)",
            action="CopyImage",
            kind=ErrorKind.FATAL,
        )
    return None


def _mismatch(error: AwsError, spec: CopySpec) -> AwsError:
    return AwsError(
        error.code,
        f"CopyImage's ClientToken {spec.token[:12]}… was used with other parameters; this is "
        "a fleetimage bug (a token must only ever carry one request), please report it with "
        f"the journal: {error.message}",
        action="CopyImage",
        kind=ErrorKind.FATAL,
    )


async def copy_image(lane: Lane, spec: CopySpec, *, lookup_first: bool = False) -> CreatedCopy:
    """Copy (or adopt) one (target, destination); never two copies of one, whatever fails.

    ``lane`` is the destination's. ``lookup_first``: a resume, where a CopyImage may have gone
    out in the last process. The ledger commits ``requesting`` (with the token) before each
    send. Raises :class:`CopyLimitReached` on ``ResourceLimitExceeded`` (nothing copied),
    :class:`~fleetimage.engine.breaker.LaneOutage` when the lane stops, AwsError for EC2's
    word about the request.
    """
    params = copy_params(spec)
    key = spec.key
    sent = 0
    must_look = lookup_first
    try:
        async for attempt in lane.retrying("CopyImage", key.instance_id):
            with attempt:
                if must_look:
                    found = await find_copy(lane, spec)
                    if found is not None:
                        return CreatedCopy(found, adopted=True, attempts=sent)
                    must_look = False
                sent += 1
                request = CopyRequested(
                    lane.run_id,
                    key.account,
                    key.source_region,
                    key.instance_id,
                    now(),
                    key.destination,
                    spec.source_image_id,
                    spec.name,
                    spec.token,
                    sent,
                )
                try:
                    answer = await lane.send(
                        "CopyImage", params, instance_id=key.instance_id, write_ahead=request
                    )
                except AwsError as error:
                    if error.code == "ResourceLimitExceeded":
                        raise CopyLimitReached(error) from None
                    if error.code == "IdempotentParameterMismatch":
                        raise _mismatch(error, spec) from None
                    if error.kind is ErrorKind.DUPLICATE_NAME:
                        # Our earlier request (its answer lost beyond the token's memory) or
                        # someone else's image: only ours is adopted.
                        found = await find_copy(lane, spec)
                        if found is not None:
                            return CreatedCopy(found, adopted=True, attempts=sent)
                    raise
                image_id = answer.get("ImageId") if isinstance(answer, dict) else None
                if not image_id:
                    raise AwsError(
                        "InvalidResponse",
                        "CopyImage answered without an ImageId",
                        action="CopyImage",
                        kind=ErrorKind.AMBIGUOUS,  # resent with the same token: no second copy
                    )
                return CreatedCopy(str(image_id), adopted=False, attempts=sent)
    except AwsError as error:
        raise await lane.gave_up(error) from None
    raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover
