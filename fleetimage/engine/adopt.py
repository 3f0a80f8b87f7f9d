"""A run that starts again without its journal: find what an earlier start already created.

A restarted shard (a Kubernetes pod rescheduled, an AWS Batch retry) loses its local disk, so
its journal is gone; it is started again under the same run id (``--run-id``). Before anything
is created, each lane asks EC2 for this account's images tagged with the run id
(DescribeImages, ``Owners=self``, ``tag:fleetimage:run-id``, paged). Every image that carries
this run id and one of the lane's instance ids is adopted: its target is waited for, never
created again — even if its instance has been stopped or terminated since. Copies are not: one
made into this region carries its source's run and instance ids, but is another lane's.

Names containing ``{date}``/``{time}`` come from the run's start. Every image carries that start
(tag ``fleetimage:run-start``), so a restart renders every name from the *recorded* start, not
from its own clock: a target whose image exists but is not yet visible to DescribeImages
(eventual consistency) then gets the same name again, and CreateImage's
``InvalidAMIName.Duplicate`` adopts it (create.py). Planning calls :func:`find_run_images` per
lane; :mod:`fleetimage.engine.restart` turns what it found into the run's start and records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fleetimage.core.tags import INSTANCE_TAG, RUN_TAG, SOURCE_IMAGE_TAG, START_TAG
from fleetimage.engine.lane import Lane

__all__ = ["RunImage", "find_run_images"]

# Images in these states are no image at all (create.py's rule).
_GONE = frozenset({"deregistered", "invalid", "error"})


@dataclass(frozen=True, slots=True)
class RunImage:
    """An image an earlier start of this run created for one instance."""

    instance_id: str
    image_id: str
    name: str
    state: str
    started_at: datetime | None  # the START_TAG it carries, if readable


def _tags(image: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in image.get("Tags", [])}


def _start(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


async def find_run_images(lane: Lane, run_id: str) -> dict[str, RunImage]:
    """The lane's live images of run ``run_id``, by instance id (paged DescribeImages by tag).

    Two images for one instance cannot come from one run (names are unique per instance);
    should EC2 show two anyway, the older one (lower id order as EC2 lists them) is kept."""
    params: dict[str, Any] = {
        "Owners": ["self"],
        "Filters": [{"Name": f"tag:{RUN_TAG}", "Values": [run_id]}],
        "MaxResults": 1000,
    }
    found: dict[str, RunImage] = {}
    while True:
        answer = await lane.call("DescribeImages", params)
        for raw in answer.get("Images", []):
            tags = _tags(raw)
            instance_id = tags.get(INSTANCE_TAG)
            # The filter is the server's word; check the tags ourselves. A copy carries its
            # source image's run and instance (prune and copies need them) but is an image of
            # another lane: one into a region that is also a source must not be taken for an
            # image of one of its instances (a restart finds its copies by their token, copy.py).
            if (
                tags.get(RUN_TAG) != run_id
                or not instance_id
                or SOURCE_IMAGE_TAG in tags
                or raw.get("State") in _GONE
            ):
                continue
            found.setdefault(
                instance_id,
                RunImage(
                    instance_id,
                    str(raw["ImageId"]),
                    str(raw.get("Name", "")),
                    str(raw.get("State", "pending")),
                    _start(tags.get(START_TAG)),
                ),
            )
        token = answer.get("NextToken")
        if not token:
            return found
        params = {**params, "NextToken": token}
