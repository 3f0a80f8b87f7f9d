"""EC2 action handlers for instances: DescribeInstances, CreateImage, CreateTags.

A handler takes the request context and the flat form params and returns the inner XML of the
answer, or raises :class:`~fleetimage.mock.protocol.ApiError`. Shared helpers (filters,
pagination, tag validation) are in ``query.py``; image/snapshot handlers in ``images.py``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from fleetimage.mock.fleet import STATE_CODES, Image, Instance, Snapshot
from fleetimage.mock.protocol import (
    ApiError,
    Params,
    bool_param,
    indexed,
    iso,
    items,
    struct_list,
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
    parse_tags,
    require,
)

__all__ = [
    "AMI_NAME_RE",
    "HANDLERS",
    "create_image",
    "create_tags",
    "describe_instances",
    "tag_specs",
]

AMI_NAME_RE = re.compile(r"^[A-Za-z0-9()\[\] ./\-'@_]{3,128}$")
_INSTANCE_ID_RE = re.compile(r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
_IMAGEABLE = frozenset({"running", "stopping", "stopped"})


# --- DescribeInstances ----------------------------------------------------------------------

_INSTANCE_GETTERS: dict[str, Getter[Instance]] = {
    "instance-id": lambda i: (i.instance_id,),
    "instance-state-name": lambda i: (i.state,),
    "instance-state-code": lambda i: (str(STATE_CODES[i.state]),),
    "instance-type": lambda i: (i.instance_type,),
    "availability-zone": lambda i: (i.availability_zone,),
    "image-id": lambda i: (i.image_id,),
    "reservation-id": lambda i: (i.reservation_id,),
    "private-ip-address": lambda i: (i.private_ip,),
}


def check_instance_ids(ids: Sequence[str]) -> None:
    for iid in ids:
        if not _INSTANCE_ID_RE.match(iid):
            raise ApiError(
                "InvalidInstanceID.Malformed", f'Invalid id: "{iid}" (expecting "i-...")'
            )


def instance_not_found(missing: Sequence[str]) -> ApiError:
    if len(missing) == 1:
        return ApiError(
            "InvalidInstanceID.NotFound", f"The instance ID '{missing[0]}' does not exist"
        )
    joined = ", ".join(missing)
    return ApiError("InvalidInstanceID.NotFound", f"The instance IDs '{joined}' do not exist")


def render_instance(inst: Instance, owner: str) -> str:
    devices = items(
        "blockDeviceMapping",
        (
            f"<deviceName>{v.device}</deviceName><ebs><volumeId>{v.volume_id}</volumeId>"
            f"<status>attached</status><attachTime>{iso(inst.launch_time)}</attachTime>"
            "<deleteOnTermination>true</deleteOnTermination></ebs>"
            for v in inst.volumes
        ),
    )
    ip = inst.private_ip
    return (
        f"<item><reservationId>{inst.reservation_id}</reservationId><ownerId>{owner}</ownerId>"
        "<groupSet/><instancesSet><item>"
        f"<instanceId>{inst.instance_id}</instanceId><imageId>{inst.image_id}</imageId>"
        f"<instanceState><code>{STATE_CODES[inst.state]}</code><name>{inst.state}</name>"
        f"</instanceState><privateDnsName>ip-{ip.replace('.', '-')}.ec2.internal"
        "</privateDnsName><dnsName/><reason/><amiLaunchIndex>0</amiLaunchIndex>"
        f"<instanceType>{inst.instance_type}</instanceType>"
        f"<launchTime>{iso(inst.launch_time)}</launchTime>"
        f"<placement><availabilityZone>{inst.availability_zone}</availabilityZone>"
        "<groupName/><tenancy>default</tenancy></placement>"
        "<monitoring><state>disabled</state></monitoring>"
        f"<privateIpAddress>{ip}</privateIpAddress><architecture>x86_64</architecture>"
        "<rootDeviceType>ebs</rootDeviceType><rootDeviceName>/dev/xvda</rootDeviceName>"
        f"{devices}<virtualizationType>hvm</virtualizationType>{tag_set(inst.tags)}"
        "<hypervisor>xen</hypervisor></item></instancesSet></item>"
    )


def describe_instances(ctx: Ctx, params: Params) -> str:
    ids = indexed(params, "InstanceId")
    if ids and ("MaxResults" in params or "NextToken" in params):
        raise ApiError(
            "InvalidParameterCombination",
            "The parameter instancesSet cannot be used with the parameter maxResults",
        )
    keep = match_filters(params, _INSTANCE_GETTERS, lambda i: i.tags)
    dry_run(params)
    st = ctx.st
    token: str | None = None
    if ids:
        check_instance_ids(ids)
        missing = [iid for iid in ids if iid not in st.instances]
        if missing:
            raise instance_not_found(missing)
        found = [st.instances[iid] for iid in dict.fromkeys(ids)]
        chosen = [i for i in found if keep is None or keep(i)]
    elif "MaxResults" not in params and (fast := exact_ids(params, "instance-id")):
        found = [st.instances[i] for i in dict.fromkeys(fast) if i in st.instances]
        chosen = [i for i in found if keep is None or keep(i)]
    else:
        chosen, token = paginate(st.instance_list, params, keep or (lambda _i: True), "inst")
    body = items("reservationSet", ()) if not chosen else ""
    if chosen:
        body = "<reservationSet>" + "".join(render_instance(i, ctx.account) for i in chosen)
        body += "</reservationSet>"
    return body + next_token_xml(token)


# --- CreateImage ----------------------------------------------------------------------------


def tag_specs(params: Params) -> dict[str, dict[str, str]]:
    """The request's TagSpecifications per resource type (image, snapshot); CopyImage too."""
    specs: dict[str, dict[str, str]] = {}
    for member in struct_list(params, "TagSpecification"):
        rtype = member.get("ResourceType", "")
        if rtype not in ("image", "snapshot"):
            raise ApiError(
                "InvalidParameterValue",
                f"'{rtype}' is not a valid taggable resource type for this operation.",
            )
        if rtype in specs:
            raise ApiError(
                "InvalidParameterValue", f"The resource type '{rtype}' is specified twice."
            )
        specs[rtype] = parse_tags(struct_list(member, "Tag"))
    return specs


def create_image(ctx: Ctx, params: Params) -> str:
    iid = require(params, "InstanceId")
    name = require(params, "Name")
    if not AMI_NAME_RE.match(name):
        raise ApiError(
            "InvalidAMIName.Malformed",
            "AMI names must be between 3 and 128 characters long, and may contain letters, "
            "numbers, '(', ')', '.', '-', '/' and '_'",
        )
    description = params.get("Description", "")
    if len(description) > 255:
        raise ApiError("InvalidParameterValue", "The description exceeds 255 characters")
    no_reboot = bool_param(params, "NoReboot")
    specs = tag_specs(params)
    excluded = {
        m["DeviceName"] for m in struct_list(params, "BlockDeviceMapping") if "NoDevice" in m
    }
    check_instance_ids((iid,))
    st = ctx.st
    inst = st.instances.get(iid)
    if inst is None:
        raise instance_not_found((iid,))
    if inst.state not in _IMAGEABLE:
        raise ApiError(
            "InvalidParameterValue",
            f"Instance '{iid}' is not in a valid state for this operation "
            f"(current state: {inst.state}); it must be running, stopping or stopped.",
        )
    existing = st.names.get(name)
    if existing is not None:
        message = f"AMI name {name} is already in use by AMI {existing}"
        if ctx.fleet.config.duplicate_message_without_id:  # an endpoint that is not EC2
            message = f"AMI name {name} is already in use by another AMI"
        raise ApiError("InvalidAMIName.Duplicate", message)
    dry_run(params)

    fleet = ctx.fleet
    image_id = fleet.new_id("ami")
    delay = fleet.pending_delay(ctx.account, ctx.region, iid)
    image = Image(
        image_id=image_id,
        name=name,
        description=description,
        owner=ctx.account,
        region=ctx.region,
        source_instance_id=iid,
        created_at=ctx.wall,
        ready_at=ctx.now + delay,
        visible_at=ctx.now + fleet.config.scaled(fleet.config.visibility_lag_s),
        fails=fleet.fails(ctx.account, ctx.region, iid),
        devices=[],
        tags=dict(specs.get("image", {})),
        root_device=inst.volumes[0].device if inst.volumes else "/dev/xvda",
        no_reboot=no_reboot,
    )
    snap_tags = specs.get("snapshot", {})
    for vol in inst.volumes:
        if vol.device in excluded:
            continue
        snap = Snapshot(
            snapshot_id=fleet.new_id("snap"),
            volume_id=vol.volume_id,
            size_gib=vol.size_gib,
            owner=ctx.account,
            description=f"Created by CreateImage({iid}) for {image_id} from {vol.volume_id}",
            started_at=ctx.wall,
            image=image,
            tags=dict(snap_tags),
        )
        st.add_snapshot(snap)
        image.devices.append((vol.device, snap.snapshot_id, vol.size_gib))
    st.add_image(image)
    fleet.images_created[(ctx.account, ctx.region, iid)] += 1
    if fleet.config.create_image_answer_without_id:  # an endpoint that is not EC2
        return ""
    return f"<imageId>{image_id}</imageId>"


# --- CreateTags -----------------------------------------------------------------------------


def create_tags(ctx: Ctx, params: Params) -> str:
    resources = indexed(params, "ResourceId")
    if not resources:
        raise ApiError("MissingParameter", "The request must contain the parameter resourceIdSet")
    tags = parse_tags(struct_list(params, "Tag"))
    st = ctx.st
    targets: list[dict[str, str]] = []
    for rid in resources:
        obj: Instance | Image | Snapshot | None
        if rid.startswith("i-"):
            obj = st.instances.get(rid)
            if obj is None:
                raise instance_not_found((rid,))
        elif rid.startswith("ami-"):
            obj = st.images.get(rid)
            if obj is None or obj.deregistered:
                raise ApiError("InvalidAMIID.NotFound", f"The image id '[{rid}]' does not exist")
        elif rid.startswith("snap-"):
            obj = st.snapshots.get(rid)
            if obj is None:
                raise ApiError("InvalidSnapshot.NotFound", f"The snapshot '{rid}' does not exist.")
        else:
            raise ApiError("InvalidID", f'The ID "{rid}" is not valid')
        targets.append(obj.tags)
    dry_run(params)
    for existing in targets:
        if len(existing.keys() | tags.keys()) > 50:
            raise ApiError("TagLimitExceeded", "The maximum number of tags per resource is 50")
    for existing in targets:
        existing.update(tags)
    return "<return>true</return>"


HANDLERS: dict[str, Handler] = {
    "DescribeInstances": describe_instances,
    "CreateImage": create_image,
    "CreateTags": create_tags,
}
