"""CopyImage: called in the destination region, the source named by ``SourceRegion``.

What the mock holds to AWS's word (the CopyImage API reference):

- ``ClientToken`` (<= 64 ASCII characters): the same token with the same parameters answers
  the image id of the first copy and copies nothing; the same token with other parameters is
  ``IdempotentParameterMismatch``. A token is remembered per (account, destination region).
- Each destination region caps its pending copies (``CopyConfig.max_concurrent``); one more
  is ``ResourceLimitExceeded``, nothing applied.
- ``KmsKeyId`` needs ``Encrypted``; a malformed reference is refused at once, while a
  well-formed key that does not exist fails the copy later: the image ends ``failed`` with a
  state reason.
- ``CopyImageTags`` copies the source's user tags; ``TagSpecifications`` (image only) add to
  them. The copy's snapshots are made in the destination like CreateImage's.
- ``SnapshotCopyCompletionDurationMinutes``: multiples of 15 from 15 to 2,880.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from fleetimage.mock.buckets import Buckets
from fleetimage.mock.clock import MockClock
from fleetimage.mock.ec2 import AMI_NAME_RE, tag_specs
from fleetimage.mock.fleet import Fleet, Image, Snapshot
from fleetimage.mock.protocol import ApiError, Params, bool_param
from fleetimage.mock.query import Ctx, Handler, dry_run, require

__all__ = ["HANDLERS", "KMS_REF", "copy_image", "copy_stats"]

#: A key id (UUID or multi-Region mrk-), a key ARN, an alias name or an alias ARN.
KMS_REF = re.compile(
    r"^(?:(?:mrk-[0-9a-f]{32})|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"|alias/[A-Za-z0-9/_-]{1,250}"
    r"|arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(?:key/(?:mrk-[0-9a-f]{32}|[0-9a-f-]{36})"
    r"|alias/[A-Za-z0-9/_-]{1,250}))$"
)
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_AMI_ID = re.compile(r"^ami-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
# What makes two requests with one token "the same request".
_SIGNIFICANT = (
    "SourceRegion",
    "SourceImageId",
    "Name",
    "Description",
    "Encrypted",
    "KmsKeyId",
    "CopyImageTags",
    "SnapshotCopyCompletionDurationMinutes",
)


def _check(params: Params) -> tuple[str, str, str]:
    source_region = require(params, "SourceRegion")
    source_id = require(params, "SourceImageId")
    name = require(params, "Name")
    if not _REGION.match(source_region):
        raise ApiError("InvalidParameterValue", f"Invalid source region: {source_region}")
    if not _AMI_ID.match(source_id):
        raise ApiError("InvalidAMIID.Malformed", f'Invalid id: "{source_id}" (expecting "ami-...")')
    if not AMI_NAME_RE.match(name):
        raise ApiError(
            "InvalidAMIName.Malformed", "AMI names must be between 3 and 128 characters long"
        )
    token = params.get("ClientToken", "")
    if len(token) > 64 or not token.isascii():
        raise ApiError(
            "InvalidParameterValue", "ClientToken must be at most 64 ASCII characters long"
        )
    key = params.get("KmsKeyId")
    if key is not None:
        if not bool_param(params, "Encrypted"):
            raise ApiError(
                "InvalidParameterCombination",
                "KmsKeyId can only be specified when Encrypted is true",
            )
        if not KMS_REF.match(key):
            raise ApiError("InvalidKMSKey.Id", f"The KMS key reference '{key}' is malformed")
    minutes = params.get("SnapshotCopyCompletionDurationMinutes")
    if minutes is not None and (
        not minutes.isdigit() or not 15 <= int(minutes) <= 2880 or int(minutes) % 15
    ):
        raise ApiError(
            "InvalidParameterValue",
            "SnapshotCopyCompletionDurationMinutes must be a multiple of 15 "
            f"between 15 and 2880, got {minutes}",
        )
    return source_region, source_id, name


def copy_image(ctx: Ctx, params: Params) -> str:
    source_region, source_id, name = _check(params)
    specs = tag_specs(params)
    if "snapshot" in specs:
        raise ApiError(
            "InvalidParameterValue",
            "'snapshot' is not a valid taggable resource type for this operation.",
        )
    fleet, st = ctx.fleet, ctx.st
    copies = fleet.copies
    token = params.get("ClientToken", "")
    signature = tuple((k, params.get(k, "")) for k in _SIGNIFICANT)
    signature += tuple(sorted((k, v) for k, v in params.items() if k.startswith("TagSpec")))
    known = copies.tokens.get((ctx.account, ctx.region, token)) if token else None
    if known is not None:
        if known[0] != signature:
            raise ApiError(
                "IdempotentParameterMismatch",
                f"The client token {token} was already used with different parameters",
            )
        dry_run(params)
        return f"<imageId>{known[1]}</imageId>"
    source = fleet.state(ctx.account, source_region).images.get(source_id)
    if source is None or source.deregistered:
        raise ApiError("InvalidAMIID.NotFound", f"The image id '[{source_id}]' does not exist")
    if source.state(ctx.now) != "available":
        raise ApiError(
            "IncorrectState",
            f"Image {source_id} is not in a valid state for copying "
            f"(current state: {source.state(ctx.now)})",
        )
    if name in st.names:
        raise ApiError(
            "InvalidAMIName.Duplicate", f"AMI name {name} is already in use by AMI {st.names[name]}"
        )
    pending = sum(1 for i in st.image_list if i.source_image_id and i.state(ctx.now) == "pending")
    if pending >= fleet.config.copies.max_concurrent:
        copies.limit_refused[(ctx.account, ctx.region)] += 1
        raise ApiError(
            "ResourceLimitExceeded",
            f"You have reached the limit of {fleet.config.copies.max_concurrent} concurrent "
            "AMI copies in this region",
        )
    dry_run(params)
    image = _new_copy(ctx, params, source, name)
    peak = copies.peak_pending
    peak[(ctx.account, ctx.region)] = max(peak[(ctx.account, ctx.region)], pending + 1)
    if token:
        copies.tokens[(ctx.account, ctx.region, token)] = (signature, image.image_id)
    copies.by_token[(ctx.account, ctx.region, token)] += 1
    copies.by_name[(ctx.account, ctx.region, name)] += 1
    copies.by_source[(ctx.account, ctx.region, source_region, source_id)] += 1
    return f"<imageId>{image.image_id}</imageId>"


def _new_copy(ctx: Ctx, params: Params, source: Image, name: str) -> Image:
    fleet, st = ctx.fleet, ctx.st
    cfg = fleet.config.copies
    key = params.get("KmsKeyId")
    fail_reason = None
    if key is not None and cfg.kms_keys is not None and key not in cfg.kms_keys:
        fail_reason = ("Client.InvalidKMSKey.NotFound", f"The KMS key {key} does not exist")
    elif cfg.failure_rate > 0 and fleet.rng.random() < cfg.failure_rate:
        fail_reason = ("Server.InternalError", "Internal error: snapshot copy failed")
    tags = {k: v for k, v in source.tags.items()} if bool_param(params, "CopyImageTags") else {}
    tags.update(tag_specs(params).get("image", {}))
    delay = fleet.config.scaled(
        fleet.copy_pending_aws_s(
            ctx.account, source.region, source.source_instance_id or source.image_id, ctx.region
        )
    )
    image = Image(
        image_id=fleet.new_id("ami"),
        name=name,
        description=params.get("Description", ""),
        owner=ctx.account,
        region=ctx.region,
        source_instance_id="",
        created_at=ctx.wall,
        ready_at=ctx.now + delay,
        visible_at=ctx.now + fleet.config.scaled(fleet.config.visibility_lag_s),
        fails=fail_reason is not None,
        devices=[],
        tags=tags,
        root_device=source.root_device,
        no_reboot=source.no_reboot,
        source_region=source.region,
        source_image_id=source.image_id,
        fail_reason=fail_reason,
    )
    for device, snap_id, size in source.devices:
        if snap_id is None:
            continue
        snap = Snapshot(
            snapshot_id=fleet.new_id("snap"),
            volume_id="vol-ffffffff",
            size_gib=size,
            owner=ctx.account,
            description=f"Copied for DestinationAmi {image.image_id} from SourceAmi "
            f"{source.image_id} for SourceSnapshot {snap_id}",
            started_at=ctx.wall,
            image=image,
        )
        st.add_snapshot(snap)
        image.devices.append((device, snap.snapshot_id, size))
    st.add_image(image)
    return image


def copy_stats(
    fleet: Fleet,
    counters: Mapping[tuple[str, str, str, str], int],
    buckets: Buckets,
    clock: MockClock,
) -> list[dict[str, Any]]:
    """CopyImage per (account, destination region), for tests that share one destination
    between several clients (shards). Times are AWS seconds since the mock started.

    ``passed_at_s``/``throttled_at_s``: when each request passed the token bucket (whatever
    the handler answered next) or was refused by it; ``bucket``: its ``burst`` and
    ``rate_per_s`` per AWS second (None: unlimited); ``throttled``: the requests it refused
    (faults injected as throttles not included); ``made``: copies created;
    ``limit_refused``: ``ResourceLimitExceeded`` answers; ``peak_pending``: the most copies
    pending at once, against the cap ``max_concurrent``.
    """
    c = fleet.copies
    decisions = {
        (a, r): d for (a, r, action), d in buckets.decisions.items() if action == "CopyImage"
    }
    keys = set(decisions) | {(a, r) for a, r, _, _ in c.by_source} | set(c.limit_refused)
    shape = buckets.shape("CopyImage")
    bucket = (
        None if shape is None else {"burst": shape[0], "rate_per_s": shape[1] / clock.time_scale}
    )
    made: dict[tuple[str, str], int] = {}
    for (account, region, _, _), n in c.by_source.items():
        made[(account, region)] = made.get((account, region), 0) + n
    out = []
    for account, region in sorted(keys):
        seen = decisions.get((account, region), [])
        out.append(
            {
                "account": account,
                "region": region,
                "passed_at_s": [clock.aws_now(t) for t, ok in seen if ok],
                "throttled_at_s": [clock.aws_now(t) for t, ok in seen if not ok],
                "bucket": bucket,
                "throttled": counters.get((account, region, "CopyImage", "throttled"), 0),
                "made": made.get((account, region), 0),
                "limit_refused": c.limit_refused[(account, region)],
                "peak_pending": c.peak_pending[(account, region)],
                "max_concurrent": fleet.config.copies.max_concurrent,
            }
        )
    return out


HANDLERS: dict[str, Handler] = {"CopyImage": copy_image}
