"""Prune's plan: find this fleet's images per lane and decide, per image, delete or keep (why).

Selection (never anything else): owner ``self``; tags ``fleetimage:run-id`` and
``fleetimage:instance-id``; ``fleetimage:fleet`` equal to the config's ``name``; in the
config's accounts, target regions and copy regions (a copy carries the same tags, so it is
an image of its own region); disabled images included (``IncludeDisabled``).
Pending images are never touched. The rules (:func:`decide`) are pure; the reference,
protection and launch checks are repeated right before each deletion (``prune.py``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import anyio

from fleetimage.aws.clients import parse_timestamp
from fleetimage.config import RetentionOptions
from fleetimage.core.errors import AwsError
from fleetimage.core.models import LaneKey
from fleetimage.core.tags import FLEET_TAG, INSTANCE_TAG, RUN_TAG
from fleetimage.engine.lane import Lane

__all__ = [
    "REFERENCE_BATCH",
    "Decision",
    "FleetImage",
    "LanePrunePlan",
    "PrunePlan",
    "decide",
    "describe_fleet_images",
    "find_references",
    "from_wire",
]

REFERENCE_BATCH = 10  # DescribeImageReferences takes at most 10 image ids per call
REFERENCE_CALLS_IN_FLIGHT = 4
LIVE_INSTANCE_STATES = ("pending", "running", "shutting-down", "stopping", "stopped")
DELETABLE_STATES = frozenset({"available", "failed", "invalid", "error", "disabled"})


@dataclass(frozen=True, slots=True)
class FleetImage:
    """One of this fleet's images, as DescribeImages showed it at plan time."""

    account: str
    region: str
    image_id: str
    name: str
    state: str
    created_at: datetime
    run_id: str
    instance_id: str
    snapshot_ids: tuple[str, ...]
    size_gib: int
    tags: dict[str, str]
    last_launched: datetime | None = None
    protection: str = "disabled"
    fleet: str = ""  # its fleetimage:fleet tag

    @property
    def protected(self) -> bool:
        return self.protection not in ("", "disabled")


@dataclass(frozen=True, slots=True)
class Decision:
    image: FleetImage
    delete: bool
    reason: str  # why it is kept; "" for a deletion


@dataclass(slots=True)
class LanePrunePlan:
    key: LaneKey
    lane: Lane | None = None
    decisions: list[Decision] = field(default_factory=list)
    recycle_bin: str = ""  # "", or what the Recycle Bin rules mean for this lane
    error: AwsError | None = None

    @property
    def to_delete(self) -> list[FleetImage]:
        return [d.image for d in self.decisions if d.delete]

    @property
    def kept(self) -> list[Decision]:
        return [d for d in self.decisions if not d.delete]


@dataclass(slots=True)
class PrunePlan:
    prune_id: str
    fleet: str
    planned_at: datetime
    run_id: str | None
    lanes: dict[LaneKey, LanePrunePlan]

    @property
    def to_delete(self) -> list[FleetImage]:
        return [i for lp in self.lanes.values() for i in lp.to_delete]

    @property
    def kept(self) -> list[Decision]:
        return [d for lp in self.lanes.values() for d in lp.kept]


def from_wire(account: str, region: str, image: dict[str, Any]) -> FleetImage:
    # Only members in aws.model.DESCRIBED_IMAGE_MEMBERS are parsed from the answer.
    tags = {t["Key"]: t.get("Value", "") for t in image.get("Tags", [])}
    snaps, size = [], 0
    for mapping in image.get("BlockDeviceMappings", []):
        ebs = mapping.get("Ebs") or {}
        if ebs.get("SnapshotId"):
            snaps.append(ebs["SnapshotId"])
            size += int(ebs.get("VolumeSize") or 0)
    launched = image.get("LastLaunchedTime")
    return FleetImage(
        account=account,
        region=region,
        image_id=image["ImageId"],
        name=image.get("Name", ""),
        state=image.get("State", ""),
        created_at=parse_timestamp(image["CreationDate"]),
        run_id=tags.get(RUN_TAG, ""),
        instance_id=tags.get(INSTANCE_TAG, ""),
        snapshot_ids=tuple(snaps),
        size_gib=size,
        tags=tags,
        last_launched=parse_timestamp(launched) if launched else None,
        protection=image.get("DeregistrationProtection") or "disabled",
        fleet=tags.get(FLEET_TAG, ""),
    )


def is_ours(image: FleetImage, fleet: str | None) -> bool:
    """Made by fleetimage for ``fleet`` (None: for some fleet; only with a run named)."""
    made = bool(image.run_id and image.instance_id and image.fleet)
    return made and (fleet is None or image.fleet == fleet)


async def describe_fleet_images(
    lane: Lane, fleet: str | None, *, run_id: str | None = None, image_ids: Sequence[str] = ()
) -> list[FleetImage]:
    """This fleet's images in the lane (or those of ``image_ids``), paged, disabled included.

    ``fleet`` None (a run named without a config): the run's images of whichever fleet."""
    if fleet is None and run_id is None:
        raise ValueError("describe_fleet_images: a fleet or a run is needed")
    filters = (
        [{"Name": f"tag:{FLEET_TAG}", "Values": [fleet]}]
        if fleet is not None
        else [{"Name": "tag-key", "Values": [FLEET_TAG]}]
    )
    if run_id is not None:
        filters.append({"Name": f"tag:{RUN_TAG}", "Values": [run_id]})
    if image_ids:
        filters.append({"Name": "image-id", "Values": list(image_ids)})
    params: dict[str, Any] = {"Owners": ["self"], "Filters": filters, "IncludeDisabled": True}
    if not image_ids:
        params["MaxResults"] = 1000
    found: list[FleetImage] = []
    while True:
        answer = await lane.call("DescribeImages", params)
        for raw in answer.get("Images", []):
            image = from_wire(lane.key.account, lane.key.region, raw)
            if is_ours(image, fleet):  # the filter is the server's word; check it ourselves
                found.append(image)
        token = answer.get("NextToken")
        if not token:
            return found
        params = {**params, "NextToken": token}


async def find_references(
    lane: Lane, image_ids: Sequence[str], *, version_depth: int
) -> dict[str, list[str]]:
    """image id -> what references it ("ec2:Instance arn:..."), ≤ 10 ids per call, paged."""
    types = [
        {
            "ResourceType": "ec2:Instance",
            "ResourceTypeOptions": [
                {"OptionName": "state-name", "OptionValues": list(LIVE_INSTANCE_STATES)}
            ],
        },
        {
            "ResourceType": "ec2:LaunchTemplate",
            "ResourceTypeOptions": [
                {"OptionName": "version-depth", "OptionValues": [str(version_depth)]}
            ],
        },
        {"ResourceType": "ssm:Parameter"},
        {"ResourceType": "imagebuilder:ImageRecipe"},
    ]
    refs: dict[str, list[str]] = defaultdict(list)
    batches = iter(
        [
            list(image_ids[i : i + REFERENCE_BATCH])
            for i in range(0, len(image_ids), REFERENCE_BATCH)
        ]
    )

    async def worker() -> None:
        for ids in batches:  # shared: each worker takes the next batch
            params: dict[str, Any] = {"ImageIds": ids, "ResourceTypes": types}
            while True:
                answer = await lane.call("DescribeImageReferences", params)
                for ref in answer.get("ImageReferences", []):
                    refs[ref["ImageId"]].append(f"{ref['ResourceType']} {ref.get('Arn', '')}")
                token = answer.get("NextToken")
                if not token:
                    break
                params = {**params, "NextToken": token}

    # A few calls in flight: 10 ids a call makes a big fleet's plan hundreds of calls, and one
    # at a time would wait out each round trip; the lane's limiter paces them.
    async with anyio.create_task_group() as tg:
        for _ in range(REFERENCE_CALLS_IN_FLIGHT):
            tg.start_soon(worker)
    return dict(refs)


def safety_reason(
    image: FleetImage,
    references: Iterable[str],
    retention: RetentionOptions,
    now: datetime,
) -> str:
    """Why ``image`` must be kept whatever the rules say, or "" (checked again before delete)."""
    refs = list(references)
    if refs:
        more = f" (+{len(refs) - 1} more)" if len(refs) > 1 else ""
        return f"referenced by {refs[0]}{more}"
    if image.protected:
        return f"deregistration protection: {image.protection}"
    if image.last_launched is not None and now - image.last_launched < timedelta(
        seconds=retention.min_unused
    ):
        return f"launched {image.last_launched:%Y-%m-%dT%H:%M:%SZ}, within min_unused"
    if image.state not in DELETABLE_STATES:
        return f"state {image.state}: never touched"
    kept_by = [k for k in retention.keep_tagged if k in image.tags]
    if kept_by:
        return f"tagged {kept_by[0]} (keep_tagged)"
    return ""


def decide(
    images: Sequence[FleetImage],
    references: dict[str, list[str]],
    retention: RetentionOptions,
    now: datetime,
    *,
    one_run: bool = False,
) -> list[Decision]:
    """Delete or keep, per image. ``one_run``: a run named explicitly (no keep_last, min_age)."""
    by_instance: dict[str, list[FleetImage]] = defaultdict(list)
    for image in images:
        by_instance[image.instance_id].append(image)
    out: list[Decision] = []
    for group in by_instance.values():
        group.sort(key=lambda i: (i.created_at, i.image_id), reverse=True)
        newest = [i for i in group if i.state == "available"][: retention.keep_last]
        newest_ids = {i.image_id for i in newest}
        for image in group:
            reason = safety_reason(image, references.get(image.image_id, ()), retention, now)
            age = (now - image.created_at).total_seconds()
            if reason or one_run:
                pass
            elif image.image_id in newest_ids:
                reason = f"among the {retention.keep_last} newest available (keep_last)"
            elif age < retention.min_age:
                reason = "younger than min_age"
            elif retention.max_age is not None and age < retention.max_age:
                reason = "younger than max_age"
            out.append(Decision(image, not reason, reason))
    return out
