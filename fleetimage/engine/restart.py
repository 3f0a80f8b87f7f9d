"""Restarting a run without its journal: the recorded start, and adopted images as records.

See :mod:`fleetimage.engine.adopt` for how a lane finds the images an earlier start of the run
created. Here the plan takes the run's recorded start (every request rendered again from it),
and each adopted image becomes a record of an image already created, so the engine waits for
it and never sends its CreateImage again.
"""

from __future__ import annotations

from datetime import datetime

from fleetimage.config import FleetConfig
from fleetimage.core.models import JournalState, TargetRecord
from fleetimage.engine.plan import LanePlan, Plan
from fleetimage.engine.specs import build_spec

__all__ = ["adopted_records", "recorded_start", "restart_plan"]


def recorded_start(plan: Plan) -> datetime | None:
    """The run's start as its images record it (the earliest, should they disagree)."""
    starts = [
        image.started_at
        for lp in plan.lanes.values()
        for image in lp.adopted.values()
        if image.started_at is not None
    ]
    return min(starts) if starts else None


def restart_plan(plan: Plan, config: FleetConfig) -> Plan:
    """``plan`` with the run's recorded start: every request rendered again from it (names,
    descriptions and the start tag), so names match what the earlier start created."""
    start = recorded_start(plan)
    if start is None or start == plan.started_at:
        return plan
    for lp in plan.lanes.values():
        every = [*lp.specs, *(spec for spec, _ in lp.collisions)]
        lp.specs = [build_spec(config, s.target, plan.run_id, start) for s in every]
        lp.collisions = []
        lp.keep_unique_names()
    plan.started_at = start
    return plan


def adopted_records(lp: LanePlan) -> dict[tuple[str, str, str], TargetRecord]:
    """The lane's adopted images as records of images already created (``pending``)."""
    key = lp.key
    by_instance = {s.target.instance_id: s for s in lp.specs}
    records: dict[tuple[str, str, str], TargetRecord] = {}
    for iid, image in sorted(lp.adopted.items()):
        spec = by_instance.get(iid)
        records[(key.account, key.region, iid)] = TargetRecord(
            key.account,
            key.region,
            iid,
            JournalState.PENDING,
            image_name=image.name or (spec.name if spec else None),
            image_id=image.image_id,
            spec=spec,
        )
    return records
