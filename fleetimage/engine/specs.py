"""What CreateImage is asked for one target: its name, description and tags, from the config."""

from __future__ import annotations

import functools
from datetime import UTC, datetime

from fleetimage.config import FleetConfig
from fleetimage.core.models import ImageSpec, Target
from fleetimage.core.naming import render_description, render_name
from fleetimage.core.tags import FLEET_TAG, INSTANCE_TAG, RUN_TAG, START_TAG

__all__ = ["MAX_TAGS", "build_spec", "build_tags", "start_tag_value"]

# EC2 allows 50 tags per resource; ours and the user's come first, instance tags fill the rest.
MAX_TAGS = 50


@functools.lru_cache(maxsize=4)  # one run, one start: one string, not one per target
def start_tag_value(started_at: datetime) -> str:
    """The run's start as the START_TAG value: UTC, ISO 8601 (a naive time is taken as UTC)."""
    utc = started_at.replace(tzinfo=UTC) if started_at.tzinfo is None else started_at
    return utc.astimezone(UTC).isoformat()


def build_tags(
    config: FleetConfig, target: Target, run_id: str, started_at: datetime | None = None
) -> dict[str, str]:
    tags: dict[str, str] = {}
    if config.image.copy_instance_tags:
        # Never copy aws:* (EC2 refuses them) nor fleetimage:* (an instance tag must not be
        # able to forge the run tags that adoption trusts).
        for key, value in target.tags.items():
            if not key.lower().startswith(("aws:", "fleetimage:")):
                tags[key] = value
    tags.update(config.image.tags)
    tags[RUN_TAG] = run_id
    tags[INSTANCE_TAG] = target.instance_id
    if config.name is not None:
        tags[FLEET_TAG] = config.name
    if started_at is not None:
        tags[START_TAG] = start_tag_value(started_at)
    if len(tags) > MAX_TAGS:
        own = {**config.image.tags, RUN_TAG: run_id, INSTANCE_TAG: target.instance_id}
        if config.name is not None:
            own[FLEET_TAG] = config.name
        if started_at is not None:
            own[START_TAG] = start_tag_value(started_at)
        extra = [k for k in tags if k not in own][: MAX_TAGS - len(own)]
        tags = {**{k: tags[k] for k in extra}, **own}
    return tags


def build_spec(
    config: FleetConfig,
    target: Target,
    run_id: str,
    started_at: datetime,
    *,
    name: str | None = None,
) -> ImageSpec:
    """The CreateImage request for one target; ``name`` pins a name already journaled."""
    fields = {
        "instance_id": target.instance_id,
        "region": target.region,
        "account": target.account,
        "run_id": run_id,
        "started_at": started_at,
        "tags": target.tags,
    }
    image = config.image
    return ImageSpec(
        target=target,
        name=name or render_name(image.name_template, **fields),  # type: ignore[arg-type]
        description=render_description(image.description, **fields) if image.description else "",  # type: ignore[arg-type]
        no_reboot=image.no_reboot,
        tags=build_tags(config, target, run_id, started_at),
        tag_snapshots=image.tag_snapshots,
        exclude_devices=tuple(image.exclude_devices),
    )
