"""``--retry-failed``: a target whose image failed gets a new one, under a new name.

The failed AMI is deregistered first, with its snapshots, and only if it is ours (this run's
``fleetimage:run-id`` and ``fleetimage:instance-id`` tags): a failed AMI holds a name and
quota but is no image anyone can launch. Then the target is created again under its name plus
``-r2``, ``-r3``, ... (a new name, so the name stays the idempotency key of each attempt). A
retry that dies half-way is safe to repeat: an image already gone is not an error, and the new
request is journaled (``requesting``) before it is sent, like every CreateImage.
"""

from __future__ import annotations

import dataclasses

from fleetimage.core.errors import AwsError
from fleetimage.core.models import ImageSpec
from fleetimage.core.naming import AMI_NAME_MAX
from fleetimage.core.tags import INSTANCE_TAG, RUN_TAG
from fleetimage.engine.lane import Lane

__all__ = ["discard_failed_image", "retry_name", "with_retry_name"]

_GONE = frozenset({"InvalidAMIID.NotFound", "InvalidAMIID.Unavailable"})


def retry_name(planned: str, last: str | None) -> str:
    """The next name: ``planned`` (the run's name for the target) + ``-r2``, then ``-r3``, ...
    after ``last`` (the name of the attempt that failed); trimmed to EC2's 128 characters."""
    n = 2
    if last and last != planned:
        rest = last.rsplit("-r", 1)[-1]
        n = int(rest) + 1 if rest.isdigit() else 2
    suffix = f"-r{n}"
    return planned[: AMI_NAME_MAX - len(suffix)] + suffix


def with_retry_name(spec: ImageSpec, last: str | None) -> ImageSpec:
    return dataclasses.replace(spec, name=retry_name(spec.name, last))


async def discard_failed_image(lane: Lane, image_id: str, *, instance_id: str) -> str:
    """Deregister a failed image of this run (with its snapshots); what was done, in words."""
    try:
        answer = await lane.call(
            "DescribeImages",
            {"Filters": [{"Name": "image-id", "Values": [image_id]}]},
            instance_id=instance_id,
        )
    except AwsError as error:
        if error.code in _GONE:
            return f"{image_id} is already gone"
        raise
    images = answer.get("Images", [])
    if not images:
        return f"{image_id} is already gone"
    tags = {t.get("Key"): t.get("Value") for t in images[0].get("Tags", [])}
    if tags.get(RUN_TAG) != lane.run_id or tags.get(INSTANCE_TAG) != instance_id:
        return f"{image_id} is not this run's image: left alone"
    try:
        await lane.call(
            "DeregisterImage",
            {"ImageId": image_id, "DeleteAssociatedSnapshots": True},
            instance_id=instance_id,
        )
    except AwsError as error:
        if error.code in _GONE:
            return f"{image_id} is already gone"
        raise
    return f"{image_id} deregistered with its snapshots"
