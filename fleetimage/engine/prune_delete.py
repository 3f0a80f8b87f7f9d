"""Prune's deletion: one lane's planned images, re-checked and deleted at the rate limit.

Right before each batch of ≤ 10 images is deleted, their references, protection, last launch
and state are read again; an image that has become unsafe is kept. An image already gone (a
DeregisterImage that went through before a crash) is not deregistered again: only its
snapshots are swept. ``DeregisterImage`` deletes the image and its snapshots
(``DeleteAssociatedSnapshots``); each ``DeleteSnapshotResults`` entry is checked: ``skipped``
(shared with another AMI) is kept, other failures are retried with ``DeleteSnapshot``. Last,
a paged ``DescribeSnapshots`` by id proves none of the deleted snapshots is left.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from fleetimage.config import FleetConfig
from fleetimage.core.clock import now
from fleetimage.core.errors import AwsError, ErrorKind
from fleetimage.engine.prune_plan import (
    REFERENCE_BATCH,
    FleetImage,
    LanePrunePlan,
    describe_fleet_images,
    find_references,
    safety_reason,
)
from fleetimage.engine.retry import retrying
from fleetimage.journal import prune as ledger
from fleetimage.journal.store import Journal
from fleetimage.output.prune_report import PruneItem

__all__ = ["BATCHES_IN_FLIGHT", "SNAPSHOT_CHECK_BATCH", "Deleter", "OnItem"]

SNAPSHOT_CHECK_BATCH = 200
GONE = frozenset({"InvalidAMIID.NotFound", "InvalidAMIID.Unavailable"})
# Batches re-checked ahead of the DeregisterImage bucket, per lane: enough to keep the bucket
# busy (80 deletions queued), few enough that a check is seconds old when its deletion is sent
# (80 / 5 per s: ~16 s at AWS's rate), not as old as the prune (checking every batch up front
# would leave the last ones waiting minutes for tokens after their check).
BATCHES_IN_FLIGHT = 8
OnItem = Callable[[PruneItem], None]  # told each time an item settles (progress)


class Deleter:
    """Deletes one lane's planned images; fills the report's items."""

    def __init__(
        self,
        lp: LanePrunePlan,
        config: FleetConfig,
        prune_id: str,
        fleet: str,
        journal: Journal | None,
        items: dict[str, PruneItem],
        on_item: OnItem | None = None,
    ) -> None:
        assert lp.lane is not None
        self.lp, self.lane, self.config = lp, lp.lane, config
        self.prune_id, self.fleet = prune_id, fleet
        self.journal, self.items, self.on_item = journal, items, on_item
        self.gate = anyio.Semaphore(config.concurrency.max_in_flight_per_region)

    async def mark(self, image: FleetImage, state: str, detail: str = "") -> None:
        if self.journal is not None:
            await ledger.mark_item(
                self.journal,
                self.prune_id,
                image.account,
                image.region,
                image.image_id,
                state,
                detail,
            )

    async def run(self) -> None:
        todo = self.lp.to_delete
        batches = iter(
            [todo[i : i + REFERENCE_BATCH] for i in range(0, len(todo), REFERENCE_BATCH)]
        )

        async def worker() -> None:
            for images in batches:  # shared: each worker takes the next batch
                await self.batch(images)

        async with anyio.create_task_group() as tg:
            for _ in range(BATCHES_IN_FLIGHT):
                tg.start_soon(worker)
        await self.verify_snapshots()

    async def batch(self, images: list[FleetImage]) -> None:
        async with self.gate:
            ids = [i.image_id for i in images]
            try:  # right before deleting: read state, protection, launches, references again
                fresh = {
                    i.image_id: i
                    for i in await describe_fleet_images(self.lane, self.fleet, image_ids=ids)
                }
                refs = await find_references(
                    self.lane, list(fresh), version_depth=self.config.retention.version_depth
                )
            except AwsError as error:
                for image in images:
                    await self.settle(image, "failed", f"re-check failed: {error.code}")
                return
        async with anyio.create_task_group() as tg:
            for image in images:
                current = fresh.get(image.image_id)
                if current is None:  # gone already (e.g. an earlier attempt): sweep snapshots
                    tg.start_soon(self.delete, image, False)
                    continue
                why = safety_reason(
                    current, refs.get(image.image_id, ()), self.config.retention, now()
                )
                if why:
                    await self.settle(image, "kept", f"at deletion: {why}")
                else:
                    tg.start_soon(self.delete, image, True)

    async def settle(self, image: FleetImage, outcome: str, reason: str = "") -> None:
        item = self.items[image.image_id]
        item.outcome, item.reason = outcome, reason
        await self.mark(image, outcome, reason)
        if self.on_item is not None:
            self.on_item(item)

    async def delete(self, image: FleetImage, registered: bool) -> None:
        async with self.gate:
            await self.mark(image, "deleting")  # committed before DeregisterImage is sent
            results: dict[str, str] = {}
            if registered:
                try:
                    answer = await self.deregister(image)
                except AwsError as error:
                    await self.settle(image, "failed", f"{error.code}: {error.message}")
                    return
                if answer is not None:
                    results = {
                        r["SnapshotId"]: r["ReturnCode"]
                        for r in answer.get("DeleteSnapshotResults", [])
                    }
            item = self.items[image.image_id]
            for snap in image.snapshot_ids:
                code = results.get(snap)
                if code == "success":
                    item.snapshots[snap] = "deleted"
                elif code == "skipped":
                    item.snapshots[snap] = "kept-shared"
                else:
                    item.snapshots[snap] = await self.delete_snapshot(snap)
            failed = [s for s, o in item.snapshots.items() if o.startswith("failed")]
            await self.settle(
                image,
                "failed" if failed else "deleted",
                f"snapshot {failed[0]}: {item.snapshots[failed[0]]}" if failed else "",
            )

    async def deregister(self, image: FleetImage) -> dict[str, Any] | None:
        """DeregisterImage, retried; an ambiguous failure is resolved by looking the image up."""
        params = {"ImageId": image.image_id, "DeleteAssociatedSnapshots": True}
        ambiguous = False
        async for attempt in retrying(
            self.lane.retry_policy,
            on_retry=self.lane.on_retry("DeregisterImage", image.instance_id),
        ):
            with attempt:
                if ambiguous and not await describe_fleet_images(
                    self.lane, self.fleet, image_ids=[image.image_id]
                ):
                    return None  # the earlier request went through; sweep the snapshots
                try:
                    answer: dict[str, Any] = await self.lane.send("DeregisterImage", params)
                    return answer
                except AwsError as error:
                    if error.code in GONE:  # an earlier attempt (or someone) deregistered it
                        return None
                    ambiguous = ambiguous or error.kind is ErrorKind.AMBIGUOUS
                    raise
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def delete_snapshot(self, snap: str) -> str:
        try:
            await self.lane.call("DeleteSnapshot", {"SnapshotId": snap})
        except AwsError as error:
            if error.code == "InvalidSnapshot.NotFound":
                return "deleted"
            if error.code == "InvalidSnapshot.InUse":
                return "kept-shared"
            return f"failed: {error.code}"
        return "deleted"

    async def verify_snapshots(self) -> None:
        """A paged DescribeSnapshots by id: every snapshot reported deleted must be gone."""
        claimed = {
            s: iid
            for iid, item in self.items.items()
            if item.region == self.lp.key.region and item.account == self.lp.key.account
            for s, o in item.snapshots.items()
            if o == "deleted"
        }
        ids = sorted(claimed)
        for start in range(0, len(ids), SNAPSHOT_CHECK_BATCH):
            params: dict[str, Any] = {
                "OwnerIds": ["self"],
                "MaxResults": 1000,
                "Filters": [
                    {"Name": "snapshot-id", "Values": ids[start : start + SNAPSHOT_CHECK_BATCH]}
                ],
            }
            while True:
                answer = await self.lane.call("DescribeSnapshots", params)
                for snap in answer.get("Snapshots", []):
                    item = self.items[claimed[snap["SnapshotId"]]]
                    item.snapshots[snap["SnapshotId"]] = "failed: still exists"
                    item.outcome, item.reason = (
                        "failed",
                        f"snapshot {snap['SnapshotId']} still exists",
                    )
                token = answer.get("NextToken")
                if not token:
                    break
                params = {**params, "NextToken": token}
