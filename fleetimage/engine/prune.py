"""``prune_fleet``: plan (per lane: delete, keep and why), confirm, then delete at the rate
limit; ``resume_prune``: finish a prune the journal holds.

Deletion (``prune_delete``) goes through each lane's limiter and retry policy and re-checks
every image right before deleting it. With a journal, the plan is committed before anything
is deleted and each deletion (``deleting``) before it is sent; resume then settles exactly the
items left ``planned`` or ``deleting``: nothing the plan did not show, nothing twice.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import anyio
from aiobotocore.session import AioSession

from fleetimage.aws import clients
from fleetimage.config import FleetConfig
from fleetimage.core.clock import now
from fleetimage.core.errors import AwsError, ConfigError, JournalError
from fleetimage.core.models import LaneKey
from fleetimage.core.naming import new_run_id
from fleetimage.engine.bus import Subscriber
from fleetimage.engine.prune_delete import Deleter, OnItem
from fleetimage.engine.prune_lanes import open_prune_lanes
from fleetimage.engine.prune_plan import (
    Decision,
    FleetImage,
    LanePrunePlan,
    PrunePlan,
    decide,
    describe_fleet_images,
    find_references,
)
from fleetimage.journal import prune as ledger
from fleetimage.journal.store import Journal
from fleetimage.output.prune_report import PruneItem, PruneReport

__all__ = [
    "Confirm",
    "plan_prune",
    "prune_fleet",
    "prune_fleet_sync",
    "resume_prune",
    "resume_prune_sync",
]

Confirm = Callable[[PrunePlan], Awaitable[bool]]
JournalArg = Journal | str | os.PathLike[str] | None


async def _journal(journal: JournalArg, stack: contextlib.AsyncExitStack) -> Journal | None:
    """An open Journal as given, or the one at a path (opened as a prune, closed after)."""
    if journal is None or isinstance(journal, Journal):
        return journal
    return await stack.enter_async_context(await Journal.open(journal, kind="prune"))


def _single_fleet(lanes: Iterable[LanePrunePlan], run_id: str) -> str:
    """The one fleet a run's images carry (a run belongs to one fleet); "" if none found."""
    fleets = {d.image.fleet for lp in lanes for d in lp.decisions}
    if len(fleets) > 1:
        raise ConfigError(
            f"run {run_id}: its images carry several fleet tags ({', '.join(sorted(fleets))}); "
            "pass -c with the fleet's config"
        )
    return fleets.pop() if fleets else ""


async def plan_prune(
    config: FleetConfig,
    lanes: dict[LaneKey, LanePrunePlan],
    *,
    run_id: str | None = None,
    prune_id: str | None = None,
) -> PrunePlan:
    """Decide per lane. Without a ``name`` only a run named explicitly can be pruned: its
    images' own fleet tag is taken (and must be one)."""
    if config.name is None and run_id is None:
        raise ConfigError("the config has no `name:`; prune only touches a named fleet's images")
    at = now()
    retention = config.retention

    async def plan_lane(lp: LanePrunePlan) -> None:
        if lp.lane is None:
            return
        try:
            images = await describe_fleet_images(lp.lane, config.name, run_id=run_id)
            ids = [i.image_id for i in images if i.state != "pending"]
            refs = await find_references(lp.lane, ids, version_depth=retention.version_depth)
        except AwsError as error:
            lp.error = error
            return
        lp.decisions = decide(images, refs, retention, at, one_run=run_id is not None)

    async with anyio.create_task_group() as tg:
        for lp in lanes.values():
            tg.start_soon(plan_lane, lp)
    fleet = config.name or _single_fleet(lanes.values(), run_id or "")
    return PrunePlan(prune_id or new_run_id(at), fleet, at, run_id, lanes)


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


def _notes(lanes: Iterable[LanePrunePlan]) -> list[str]:
    notes = []
    for lp in lanes:
        if lp.error is not None:
            notes.append(f"{lp.key.account}/{lp.key.region}: {lp.error.code}: {lp.error.message}")
        if lp.recycle_bin:
            notes.append(f"{lp.key.account}/{lp.key.region}: {lp.recycle_bin}")
    return notes


async def _delete(
    lanes: Iterable[LanePrunePlan],
    config: FleetConfig,
    prune_id: str,
    fleet: str,
    journal: Journal | None,
    items: dict[str, PruneItem],
    on_item: OnItem | None,
) -> None:
    async with anyio.create_task_group() as tg:
        for lp in lanes:
            if lp.lane is not None and lp.to_delete:
                deleter = Deleter(lp, config, prune_id, fleet, journal, items, on_item)
                tg.start_soon(deleter.run)


async def prune_fleet(
    config: FleetConfig,
    *,
    endpoint_url: str | None = None,
    session: AioSession | None = None,
    run_id: str | None = None,
    dry_run: bool = False,
    confirm: Confirm | None = None,
    journal: JournalArg = None,
    on_plan: Callable[[PrunePlan], Awaitable[None]] | None = None,
    on_item: OnItem | None = None,
    subscribers: Sequence[Subscriber] = (),
) -> PruneReport:
    """Plan, then (unless ``dry_run`` or ``confirm`` says no) delete; returns the report.

    ``run_id``: prune only that run's images (keep_last, min_age, max_age do not apply;
    references, protection and recent launches still do). ``journal`` (a path, or a Journal
    opened with ``kind="prune"``; an imaging run may hold the same file): the plan is committed to it
    before anything is deleted, and each deletion before it is sent. ``on_item`` is told each
    time an item settles; ``subscribers`` get the lanes' events (e.g. Throttled).
    """
    started = now()
    async with contextlib.AsyncExitStack() as stack:
        journal = None if dry_run else await _journal(journal, stack)
        lanes = await open_prune_lanes(
            config, session or clients.new_session(), endpoint_url, stack, subscribers
        )
        plan = await plan_prune(config, lanes, run_id=run_id)
        if on_plan is not None:
            await on_plan(plan)
        report = PruneReport(plan.prune_id, plan.fleet, started, dry_run=dry_run, run_id=run_id)
        report.notes = _notes(lanes.values())
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
            snapshot = config.model_dump(mode="json")
            snapshot["name"] = plan.fleet  # a run named without a config: its images' fleet
            await ledger.record_plan(
                journal, plan.prune_id, plan.fleet, run_id, rows, config_snapshot=snapshot
            )
        await _delete(lanes.values(), config, plan.prune_id, plan.fleet, journal, items, on_item)
        report.finished_at = now()
        if journal is not None:
            await ledger.finish_prune(journal, plan.prune_id, _status(report, lanes.values()))
    return report


def _status(report: PruneReport, lanes: Iterable[LanePrunePlan]) -> str:
    if not report.ok:
        return "failed"
    if report.count("planned") or any(lp.error is not None and lp.to_delete for lp in lanes):
        return "incomplete"  # a lane could not be reached: resume finishes it
    return "finished"


def _from_record(rec: ledger.PruneItemRecord, fleet: str, at: datetime) -> FleetImage:
    # What the plan recorded; state, protection, launches and references are read again
    # right before deleting, so only the identity and the snapshot ids matter here.
    return FleetImage(
        account=rec.account,
        region=rec.region,
        image_id=rec.image_id,
        name=rec.name,
        state="available",
        created_at=at,
        run_id=rec.run_id,
        instance_id=rec.instance_id,
        snapshot_ids=rec.snapshot_ids,
        size_gib=0,
        tags={},
        fleet=fleet,
    )


ConfirmResume = Callable[[ledger.PruneRunRecord, list[ledger.PruneItemRecord]], Awaitable[bool]]


async def resume_prune(
    prune_id: str,
    *,
    journal: Journal | str | os.PathLike[str],
    endpoint_url: str | None = None,
    session: AioSession | None = None,
    confirm: ConfirmResume | None = None,
    on_item: OnItem | None = None,
    subscribers: Sequence[Subscriber] = (),
) -> PruneReport:
    """Finish the prune ``prune_id`` from the journal: its ``planned`` and ``deleting`` items,
    each re-checked right before deletion; an image a dead process already deregistered is not
    deregistered again (its snapshots are swept). Settled items are reported as journaled."""
    async with contextlib.AsyncExitStack() as stack:
        opened = await _journal(journal, stack)
        assert opened is not None
        return await _resume(prune_id, opened, endpoint_url, session, confirm, on_item, subscribers)


async def _resume(
    prune_id: str,
    journal: Journal,
    endpoint_url: str | None,
    session: AioSession | None,
    confirm: ConfirmResume | None,
    on_item: OnItem | None,
    subscribers: Sequence[Subscriber],
) -> PruneReport:
    record = await ledger.prune_run(journal, prune_id)
    if record is None:
        raise JournalError(f"unknown prune id {prune_id}; `fleetimage runs` lists them")
    config = FleetConfig.from_snapshot(record.config)
    records = await ledger.read_items(journal, prune_id)
    started = now()
    report = PruneReport(prune_id, record.fleet, started, run_id=record.run_id)
    items = {
        r.image_id: PruneItem(
            r.account,
            r.region,
            r.image_id,
            r.name,
            r.instance_id,
            r.run_id,
            "planned" if r.state in ledger.OPEN_ITEM_STATES else r.state,
            r.detail,
        )
        for r in records
    }
    report.items = list(items.values())
    todo = [r for r in records if r.state in ledger.OPEN_ITEM_STATES]
    if confirm is not None and not await confirm(record, todo):
        report.finished_at = now()
        return report
    await ledger.restart_prune(journal, prune_id)
    async with contextlib.AsyncExitStack() as stack:
        lanes = await open_prune_lanes(
            config, session or clients.new_session(), endpoint_url, stack, subscribers
        )
        for rec in todo:
            lp = lanes.get(LaneKey(rec.account, rec.region))
            if lp is None:
                items[rec.image_id].reason = "its lane is no longer in the prune's config"
                continue
            lp.decisions.append(Decision(_from_record(rec, record.fleet, started), True, ""))
        report.notes = _notes(lanes.values())
        await _delete(lanes.values(), config, prune_id, record.fleet, journal, items, on_item)
        report.finished_at = now()
        await ledger.finish_prune(journal, prune_id, _status(report, lanes.values()))
    return report


def prune_fleet_sync(config: FleetConfig, **kwargs: Any) -> PruneReport:
    """``prune_fleet`` in a fresh event loop; same keyword arguments."""
    return anyio.run(functools.partial(prune_fleet, config, **kwargs))


def resume_prune_sync(prune_id: str, **kwargs: Any) -> PruneReport:
    """``resume_prune`` in a fresh event loop; same keyword arguments."""
    return anyio.run(functools.partial(resume_prune, prune_id, **kwargs))
