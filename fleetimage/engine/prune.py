"""``prune_fleet``: plan (per lane: delete, keep and why), confirm, then delete at the rate limit.

Deletion goes through each lane's limiter and retry policy. Right before each batch of ≤ 10
images is deleted, their references, protection, last launch and state are read again; an
image that has become unsafe is kept. ``DeregisterImage`` deletes the image and its snapshots
(``DeleteAssociatedSnapshots``); each ``DeleteSnapshotResults`` entry is checked: ``skipped``
(shared with another AMI) is kept, other failures are retried with ``DeleteSnapshot``. Last,
a paged ``DescribeSnapshots`` by id proves none of the deleted snapshots is left.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from aiobotocore.session import AioSession

from fleetimage.aws import clients
from fleetimage.config import FleetConfig
from fleetimage.core.clock import now
from fleetimage.core.errors import AwsError, ConfigError, ErrorKind
from fleetimage.core.models import LaneKey
from fleetimage.core.naming import new_run_id
from fleetimage.engine.prune_lanes import open_prune_lanes
from fleetimage.engine.prune_plan import (
    REFERENCE_BATCH,
    FleetImage,
    LanePrunePlan,
    PrunePlan,
    decide,
    describe_fleet_images,
    find_references,
    safety_reason,
)
from fleetimage.engine.retry import retrying
from fleetimage.journal import prune as ledger
from fleetimage.journal.store import Journal
from fleetimage.output.prune_report import PruneItem, PruneReport

__all__ = ["Confirm", "plan_prune", "prune_fleet", "prune_fleet_sync"]

Confirm = Callable[[PrunePlan], Awaitable[bool]]
SNAPSHOT_CHECK_BATCH = 200


async def plan_prune(
    config: FleetConfig,
    lanes: dict[LaneKey, LanePrunePlan],
    *,
    run_id: str | None = None,
    prune_id: str | None = None,
) -> PrunePlan:
    if config.name is None:
        raise ConfigError("the config has no `name:`; prune only touches a named fleet's images")
    at = now()
    retention = config.retention

    async def plan_lane(lp: LanePrunePlan) -> None:
        if lp.lane is None:
            return
        try:
            images = await describe_fleet_images(lp.lane, config.name or "", run_id=run_id)
            ids = [i.image_id for i in images if i.state != "pending"]
            refs = await find_references(lp.lane, ids, version_depth=retention.version_depth)
        except AwsError as error:
            lp.error = error
            return
        lp.decisions = decide(images, refs, retention, at, one_run=run_id is not None)

    async with anyio.create_task_group() as tg:
        for lp in lanes.values():
            tg.start_soon(plan_lane, lp)
    return PrunePlan(prune_id or new_run_id(at), config.name, at, run_id, lanes)


class _Deleter:
    """Deletes one lane's planned images; fills the report's items."""

    def __init__(
        self,
        lp: LanePrunePlan,
        config: FleetConfig,
        plan: PrunePlan,
        journal: Journal | None,
        items: dict[str, PruneItem],
    ) -> None:
        assert lp.lane is not None
        self.lp, self.lane, self.config, self.plan = lp, lp.lane, config, plan
        self.journal, self.items = journal, items
        self.gate = anyio.Semaphore(config.concurrency.max_in_flight_per_region)

    async def mark(self, image: FleetImage, state: str, detail: str = "") -> None:
        if self.journal is not None:
            await ledger.mark_item(
                self.journal,
                self.plan.prune_id,
                image.account,
                image.region,
                image.image_id,
                state,
                detail,
            )

    async def run(self) -> None:
        todo = self.lp.to_delete
        async with anyio.create_task_group() as tg:
            for start in range(0, len(todo), REFERENCE_BATCH):
                tg.start_soon(self.batch, todo[start : start + REFERENCE_BATCH])
        await self.verify_snapshots()

    async def batch(self, images: list[FleetImage]) -> None:
        async with self.gate:
            ids = [i.image_id for i in images]
            try:  # right before deleting: read state, protection, launches, references again
                fresh = {
                    i.image_id: i
                    for i in await describe_fleet_images(self.lane, self.plan.fleet, image_ids=ids)
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
                    self.lane, self.plan.fleet, image_ids=[image.image_id]
                ):
                    return None  # the earlier request went through; sweep the snapshots
                try:
                    answer: dict[str, Any] = await self.lane.send("DeregisterImage", params)
                    return answer
                except AwsError as error:
                    if error.code == "InvalidAMIID.NotFound":
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


def _item(image: FleetImage, outcome: str, reason: str = "") -> PruneItem:
    return PruneItem(
        image.account,
        image.region,
        image.image_id,
        image.name,
        image.instance_id,
        image.run_id,
        outcome,
        reason,
        size_gib=image.size_gib,
    )


async def prune_fleet(
    config: FleetConfig,
    *,
    endpoint_url: str | None = None,
    session: AioSession | None = None,
    run_id: str | None = None,
    dry_run: bool = False,
    confirm: Confirm | None = None,
    journal: Journal | None = None,
    on_plan: Callable[[PrunePlan], Awaitable[None]] | None = None,
) -> PruneReport:
    """Plan, then (unless ``dry_run`` or ``confirm`` says no) delete; returns the report.

    ``run_id``: prune only that run's images (keep_last, min_age, max_age do not apply;
    references, protection and recent launches still do). ``journal``: the plan is committed
    to it before anything is deleted, and each deletion before it is sent.
    """
    started = now()
    async with contextlib.AsyncExitStack() as stack:
        lanes = await open_prune_lanes(
            config, session or clients.new_session(), endpoint_url, stack
        )
        plan = await plan_prune(config, lanes, run_id=run_id)
        if on_plan is not None:
            await on_plan(plan)
        report = PruneReport(plan.prune_id, plan.fleet, started, dry_run=dry_run, run_id=run_id)
        for lp in lanes.values():
            if lp.error is not None:
                report.notes.append(
                    f"{lp.key.account}/{lp.key.region}: {lp.error.code}: {lp.error.message}"
                )
            if lp.recycle_bin:
                report.notes.append(f"{lp.key.account}/{lp.key.region}: {lp.recycle_bin}")
        items = {
            d.image.image_id: _item(d.image, "planned" if d.delete else "kept", d.reason)
            for lp in lanes.values()
            for d in lp.decisions
        }
        report.items = list(items.values())
        go = not dry_run and (confirm is None or await confirm(plan))
        if not go:
            if not dry_run:
                for item in report.items:
                    if item.outcome == "planned":
                        item.outcome, item.reason = "kept", "not confirmed"
            report.finished_at = now()
            return report
        if journal is not None:
            rows = [
                (
                    d.image.account,
                    d.image.region,
                    d.image.image_id,
                    d.image.name,
                    d.image.instance_id,
                    d.image.run_id,
                    list(d.image.snapshot_ids),
                    "planned" if d.delete else "kept",
                    d.reason,
                )
                for lp in lanes.values()
                for d in lp.decisions
            ]
            await ledger.record_plan(journal, plan.prune_id, plan.fleet, run_id, rows)
        async with anyio.create_task_group() as tg:
            for lp in lanes.values():
                if lp.lane is not None and lp.to_delete:
                    tg.start_soon(_Deleter(lp, config, plan, journal, items).run)
        report.finished_at = now()
        if journal is not None:
            await ledger.finish_prune(journal, plan.prune_id, "finished" if report.ok else "failed")
    return report


def prune_fleet_sync(config: FleetConfig, **kwargs: Any) -> PruneReport:
    """``prune_fleet`` in a fresh event loop; same keyword arguments."""
    return anyio.run(functools.partial(prune_fleet, config, **kwargs))
