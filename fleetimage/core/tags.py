"""The tag keys fleetimage writes on every image it makes: what adoption, prune and copies trust.

Instance tags never copy them over (an instance tag must not forge a run's ownership).
"""

from __future__ import annotations

__all__ = [
    "COPY_TAGS",
    "FLEET_TAG",
    "INSTANCE_TAG",
    "OWN_TAGS",
    "RUN_TAG",
    "SOURCE_IMAGE_TAG",
    "SOURCE_REGION_TAG",
    "START_TAG",
]

RUN_TAG = "fleetimage:run-id"
INSTANCE_TAG = "fleetimage:instance-id"
# The fleet's name (config ``name:``): prune touches only images of its own fleet.
FLEET_TAG = "fleetimage:fleet"
# The run's start (ISO 8601, UTC): a shard restarted without its journal renders {date} and
# {time} in names from it, never from its own clock (engine/adopt.py).
START_TAG = "fleetimage:run-start"
OWN_TAGS = (RUN_TAG, INSTANCE_TAG, FLEET_TAG, START_TAG)
# On a cross-region copy: the image it was copied from, and that image's region.
SOURCE_IMAGE_TAG = "fleetimage:source-image"
SOURCE_REGION_TAG = "fleetimage:source-region"
COPY_TAGS = (SOURCE_IMAGE_TAG, SOURCE_REGION_TAG)
