"""EC2 action handlers for images and snapshots: DescribeImages, DescribeSnapshots.

DeregisterImage and DeleteSnapshot are in ``lifecycle.py``."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from fleetimage.mock.fleet import Image, Snapshot
from fleetimage.mock.lifecycle import protection_text
from fleetimage.mock.protocol import (
    ApiError,
    Params,
    bool_param,
    esc,
    indexed,
    iso,
    items,
    tag_set,
)
from fleetimage.mock.query import (
    Ctx,
    Getter,
    Handler,
    dry_run,
    exact_ids,
    match_filters,
    next_token_xml,
    paginate,
)

__all__ = ["HANDLERS", "render_image"]

_AMI_ID_RE = re.compile(r"^ami-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
_SNAP_ID_RE = re.compile(r"^snap-(?:[0-9a-f]{8}|[0-9a-f]{17})$")


def _owned(ctx: Ctx, params: Params) -> bool:
    """Whether the ``Owner.N`` list (if any) selects the caller's own resources."""
    owners = indexed(params, "Owner")
    return not owners or "self" in owners or ctx.account in owners


# --- DescribeImages -------------------------------------------------------------------------


def _image_state(ctx: Ctx) -> Getter[Image]:
    return lambda i: (i.state(ctx.now),)


def render_image(image: Image, now: float) -> str:
    state = image.state(now)
    devices = items(
        "blockDeviceMapping",
        (
            f"<deviceName>{dev}</deviceName><ebs><snapshotId>{snap}</snapshotId>"
            f"<volumeSize>{size}</volumeSize><deleteOnTermination>true</deleteOnTermination>"
            "<volumeType>gp3</volumeType><encrypted>false</encrypted></ebs>"
            for dev, snap, size in image.devices
            if snap is not None
        ),
    )
    launched = image.last_launched
    launched_xml = f"<lastLaunchedTime>{iso(launched)}</lastLaunchedTime>" if launched else ""
    protection = protection_text(image, now, time.time())
    reason = image.state_reason(now)
    reason_xml = (
        f"<stateReason><code>{esc(reason[0])}</code><message>{esc(reason[1])}</message>"
        "</stateReason>"
        if reason
        else ""
    )
    return (
        f"<imageId>{image.image_id}</imageId>"
        f"<imageLocation>{image.owner}/{esc(image.name)}</imageLocation>"
        f"<imageState>{state}</imageState><imageOwnerId>{image.owner}</imageOwnerId>"
        f"<creationDate>{iso(image.created_at)}</creationDate><isPublic>false</isPublic>"
        "<architecture>x86_64</architecture><imageType>machine</imageType>"
        f"<sourceInstanceId>{image.source_instance_id}</sourceInstanceId>{_copied_from(image)}"
        f"<name>{esc(image.name)}</name><description>{esc(image.description)}</description>"
        f"<rootDeviceType>ebs</rootDeviceType><rootDeviceName>{image.root_device}"
        f"</rootDeviceName>{devices}<virtualizationType>hvm</virtualizationType>"
        "<hypervisor>xen</hypervisor><enaSupport>true</enaSupport>"
        "<platformDetails>Linux/UNIX</platformDetails><usageOperation>RunInstances"
        f"</usageOperation>{reason_xml}{launched_xml}"
        f"<deregistrationProtection>{protection}</deregistrationProtection>{tag_set(image.tags)}"
    )


def _copied_from(image: Image) -> str:
    """CopyImage's images name their source (DescribeImages' SourceImageId/Region)."""
    if not image.source_image_id:
        return ""
    return (
        f"<sourceImageId>{image.source_image_id}</sourceImageId>"
        f"<sourceImageRegion>{image.source_region}</sourceImageRegion>"
    )


def image_not_found(missing: Sequence[str]) -> ApiError:
    joined = ", ".join(missing)
    if len(missing) == 1:
        return ApiError("InvalidAMIID.NotFound", f"The image id '[{joined}]' does not exist")
    return ApiError("InvalidAMIID.NotFound", f"The image ids '[{joined}]' do not exist")


def _check_ids(ids: Sequence[str], regex: re.Pattern[str], code: str, prefix: str) -> None:
    for rid in ids:
        if not regex.match(rid):
            raise ApiError(code, f'Invalid id: "{rid}" (expecting "{prefix}-...")')


def describe_images(ctx: Ctx, params: Params) -> str:
    ids = indexed(params, "ImageId")
    if ids and ("MaxResults" in params or "NextToken" in params):
        raise ApiError(
            "InvalidParameterCombination",
            "The parameter imagesSet cannot be used with the parameter maxResults",
        )
    getters: dict[str, Getter[Image]] = {
        "image-id": lambda i: (i.image_id,),
        "name": lambda i: (i.name,),
        "state": _image_state(ctx),
        "source-instance-id": lambda i: (i.source_instance_id,),
        "description": lambda i: (i.description,),
        "owner-id": lambda i: (i.owner,),
        "block-device-mapping.snapshot-id": lambda i: i.snapshot_ids(),
    }
    keep = match_filters(params, getters, lambda i: i.tags)
    dry_run(params)
    st, now = ctx.st, ctx.now
    owned = _owned(ctx, params)
    include_disabled = bool_param(params, "IncludeDisabled")
    listed_s = ctx.fleet.config.scaled(ctx.fleet.config.deregistered_listed_s)

    def visible(image: Image) -> bool:
        if image.deregistered and now >= image.deregistered_at + listed_s:
            return False  # EC2 lists a deregistered image for a short while only
        if now < image.visible_at:
            return False
        return include_disabled or image.state_override != "disabled"

    token: str | None = None
    if ids:
        _check_ids(ids, _AMI_ID_RE, "InvalidAMIID.Malformed", "ami")
        missing = [i for i in ids if i not in st.images or not visible(st.images[i])]
        if missing:
            raise image_not_found(missing)
        candidates = [st.images[i] for i in dict.fromkeys(ids)]
    elif "MaxResults" not in params and (fast := exact_ids(params, "image-id")):
        candidates = [st.images[i] for i in dict.fromkeys(fast) if i in st.images]
    elif "MaxResults" not in params and not listed_s and (names := exact_ids(params, "name")):
        candidates = [st.images[st.names[n]] for n in dict.fromkeys(names) if n in st.names]
    else:
        candidates = []
        if owned:
            candidates, token = paginate(
                st.image_list,
                params,
                lambda i: visible(i) and (keep is None or keep(i)),
                "img",
            )
    chosen = [i for i in candidates if owned and visible(i) and (keep is None or keep(i))]
    body = items("imagesSet", (render_image(i, now) for i in chosen))
    return body + next_token_xml(token)


# --- DescribeSnapshots / DeleteSnapshot -----------------------------------------------------


def render_snapshot(snap: Snapshot, now: float) -> str:
    state = snap.state(now)
    progress = "100%" if state == "completed" else "0%"
    return (
        f"<snapshotId>{snap.snapshot_id}</snapshotId><volumeId>{snap.volume_id}</volumeId>"
        f"<status>{state}</status><startTime>{iso(snap.started_at)}</startTime>"
        f"<progress>{progress}</progress><ownerId>{snap.owner}</ownerId>"
        f"<volumeSize>{snap.size_gib}</volumeSize><description>{esc(snap.description)}"
        f"</description><encrypted>false</encrypted><storageTier>standard</storageTier>"
        f"{tag_set(snap.tags)}"
    )


def describe_snapshots(ctx: Ctx, params: Params) -> str:
    ids = indexed(params, "SnapshotId")
    getters: dict[str, Getter[Snapshot]] = {
        "snapshot-id": lambda s: (s.snapshot_id,),
        "volume-id": lambda s: (s.volume_id,),
        "status": lambda s: (s.state(ctx.now),),
        "owner-id": lambda s: (s.owner,),
        "description": lambda s: (s.description,),
    }
    keep = match_filters(params, getters, lambda s: s.tags)
    dry_run(params)
    st = ctx.st
    owned = _owned(ctx, params)
    token: str | None = None
    if ids:
        _check_ids(ids, _SNAP_ID_RE, "InvalidSnapshotID.Malformed", "snap")
        missing = [s for s in ids if s not in st.snapshots]
        if missing:
            raise ApiError(
                "InvalidSnapshot.NotFound", f"The snapshot '{missing[0]}' does not exist."
            )
        chosen = [st.snapshots[s] for s in dict.fromkeys(ids)]
    else:
        chosen, token = paginate(
            st.snapshot_list, params, lambda s: owned and (keep is None or keep(s)), "snap"
        )
    chosen = [s for s in chosen if owned and (keep is None or keep(s))]
    body = items("snapshotSet", (render_snapshot(s, ctx.now) for s in chosen))
    return body + next_token_xml(token)


HANDLERS: dict[str, Handler] = {
    "DescribeImages": describe_images,
    "DescribeSnapshots": describe_snapshots,
}
