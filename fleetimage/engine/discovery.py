"""Selectors → targets: DescribeInstances per lane, always filtered and paginated.

Filtered or paginated DescribeInstances calls get the larger bucket (100 burst, 20/s) and
never fail as a whole on one unknown id, so explicit ``instance_ids`` go through the
``instance-id`` filter (in chunks) rather than ``InstanceIds``; the ids that do not come back
are reported as missing.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import anyio

from fleetimage.config import TargetSpec
from fleetimage.core.models import Target
from fleetimage.engine.lane import Lane

__all__ = ["IMAGEABLE_STATES", "LaneDiscovery", "Turn", "discover_lane"]

# CreateImage answers InvalidParameterValue for an instance in any other state.
IMAGEABLE_STATES = frozenset({"running", "stopping", "stopped"})
PAGE_SIZE = 1000
# A lane's first page is small: the lane starts imaging once ~100 instances are parsed, not a
# whole page of 1,000, and (taking turns, see Turn) before any lane's second page. It covers
# a CreateImage burst (50) twice over.
FIRST_PAGE_SIZE = 100
ID_CHUNK = 200


@dataclass(slots=True)
class LaneDiscovery:
    """What one lane's selectors resolved to."""

    targets: dict[str, Target] = field(default_factory=dict)  # by instance id, deduplicated
    missing: set[str] = field(default_factory=set)  # explicit instance ids not found


class Turn:
    """A lane's turns at the discovery slots the lanes share. The slot taken for opening the
    lane's client is kept for its first DescribeInstances page; each later page (entering
    the turn again) waits for a slot of its own, behind the lanes still waiting to open. So
    no lane asks for a second page before every lane has had its first turn: a lane that
    starts late finishes late (its bucket's refill is not stored up for it)."""

    def __init__(self, slots: anyio.Semaphore) -> None:
        self._slots = slots
        self._held = False

    async def take(self) -> None:
        """Wait for a slot, unless this turn holds one."""
        if not self._held:
            await self._slots.acquire()
            self._held = True

    def give_back(self) -> None:
        """Release the slot this turn holds, if any."""
        if self._held:
            self._held = False
            self._slots.release()

    async def __aenter__(self) -> None:
        await self.take()

    async def __aexit__(self, *exc: object) -> None:
        self.give_back()


def _filters(spec: TargetSpec) -> list[dict[str, Any]]:
    return [{"Name": name, "Values": list(values)} for name, values in spec.filters.items()]


async def _describe(
    lane: Lane,
    filters: list[dict[str, Any]],
    slot: AbstractAsyncContextManager[Any],
    first_size: int,
) -> AsyncIterator[list[dict[str, Any]]]:
    """The instances, a page at a time as they arrive (a page is converted before the next one
    is asked for, and the raw answer is let go first, so raw answers never pile up). Each
    page's request is made holding ``slot``."""
    params: dict[str, Any] = {"MaxResults": first_size}
    if filters:
        params["Filters"] = filters
    while True:
        async with slot:
            answer = await lane.call("DescribeInstances", params)
        instances = [i for r in answer.get("Reservations", []) for i in r.get("Instances", [])]
        token = answer.get("NextToken")
        del answer
        yield instances
        if not token:
            return
        params = {**params, "NextToken": token, "MaxResults": PAGE_SIZE}


def _target(lane: Lane, instance: dict[str, Any], role_arn: str | None) -> Target:
    # Only members in aws.model.DESCRIBED_INSTANCE_MEMBERS are parsed from the answer. The
    # parser makes a new string per element: the few states and tag keys, repeated on every
    # target of a fleet, are interned (one object each instead of one per target).
    return Target(
        account=lane.key.account,
        region=lane.key.region,
        instance_id=instance["InstanceId"],
        state=sys.intern(instance.get("State", {}).get("Name", "unknown")),
        tags={sys.intern(t["Key"]): t["Value"] for t in instance.get("Tags", []) if "Key" in t},
        role_arn=role_arn,
    )


async def discover_lane(
    lane: Lane,
    specs: list[TargetSpec],
    *,
    role_arn: str | None,
    into: LaneDiscovery | None = None,
    on_page: Callable[[list[Target]], Awaitable[None]] | None = None,
    slot: AbstractAsyncContextManager[Any] | None = None,
) -> LaneDiscovery:
    """Resolve every selector that covers this lane; an instance found twice counts once.

    ``on_page``: called after each page with the targets it found first, in order (the
    engine images them while the next pages are asked for). ``slot``: held for each page's
    request (the lane's :class:`Turn` at the slots the lanes share)."""
    found = into if into is not None else LaneDiscovery()
    held: AbstractAsyncContextManager[Any] = slot if slot is not None else nullcontext()

    async def take(page: list[dict[str, Any]]) -> None:
        new = []
        for instance in page:
            iid = instance["InstanceId"]
            if iid not in found.targets:
                found.targets[iid] = target = _target(lane, instance, role_arn)
                new.append(target)
        if on_page is not None and new:
            await on_page(new)

    for spec in specs:
        base = _filters(spec)
        if spec.instance_ids:
            ids = list(dict.fromkeys(spec.instance_ids))
            seen: set[str] = set()
            for start in range(0, len(ids), ID_CHUNK):
                chunk = ids[start : start + ID_CHUNK]
                id_filter = {"Name": "instance-id", "Values": chunk}
                async for page in _describe(lane, [*base, id_filter], held, PAGE_SIZE):
                    seen.update(i["InstanceId"] for i in page)
                    await take(page)
            if not base:  # with other filters too, an absent id may just not match them
                found.missing.update(i for i in ids if i not in seen and i not in found.targets)
        else:
            # Small until the lane has found something to image (chunks of ids are small anyway).
            first = PAGE_SIZE if found.targets else FIRST_PAGE_SIZE
            async for page in _describe(lane, base, held, first):
                await take(page)
    found.missing.difference_update(found.targets)
    return found
