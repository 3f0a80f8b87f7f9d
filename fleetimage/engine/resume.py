"""Resume works from the journal: what a run planned, it finishes, whatever discovery says now.

- A lane whose discovery completed (the journal marks it ``planned``) is not discovered again:
  its targets are exactly the requests the journal holds (``spec_json``). ``rediscover`` adds
  instances found since (the caller shows them and asks first).
- A lane without that mark (the run stopped or crashed during its discovery) is discovered.
- Every target the journal has seen sent (requesting, pending, unknown, timed_out) is finished
  even if its instance is now gone, stopped or untagged: a known image is waited for, a
  ``requesting`` one is looked up by name first. A created image is never relabelled.
- A journaled request (name, tags, description) wins over a re-rendered one: tags may have
  changed since, and the name is the idempotency key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from fleetimage.config import FleetConfig
from fleetimage.core.models import ImageSpec, JournalState, LaneKey, Target, TargetRecord
from fleetimage.core.states import OPEN, SENT
from fleetimage.engine.plan import LanePlan, Plan
from fleetimage.engine.specs import build_spec

__all__ = ["Prior", "complete_from_journal", "journal_plan", "new_targets"]

Prior = Mapping[tuple[str, str, str], TargetRecord]


def _spec(rec: TargetRecord, config: FleetConfig, run_id: str, started_at: datetime) -> ImageSpec:
    """The journaled request; for a journal that predates requests, one built from the config
    with the journaled name (the idempotency key)."""
    if rec.spec is not None:
        return rec.spec
    target = Target(rec.account, rec.region, rec.instance_id, state="unknown")
    return build_spec(config, target, run_id, started_at, name=rec.image_name)


def journal_plan(
    run_id: str,
    started_at: datetime,
    records: Iterable[TargetRecord],
    planned_lanes: Iterable[tuple[str, str]],
    config: FleetConfig,
) -> Plan:
    """The lanes whose discovery completed, with the requests the journal holds for them."""
    lanes = {LaneKey(a, r): LanePlan(LaneKey(a, r)) for a, r in planned_lanes}
    for rec in records:
        lp = lanes.get(LaneKey(rec.account, rec.region))
        if lp is not None and rec.state is not JournalState.SKIPPED and rec.image_name:
            lp.specs.append(_spec(rec, config, run_id, started_at))
    return Plan(run_id, started_at, lanes)


def complete_from_journal(
    lp: LanePlan, prior: Prior, config: FleetConfig, run_id: str, started_at: datetime
) -> None:
    """Make ``lp`` (freshly discovered or from the journal) finish what the journal began."""
    if not prior:
        return
    key = (lp.key.account, lp.key.region)
    mine = {iid: rec for (a, r, iid), rec in prior.items() if (a, r) == key}
    specs: list[ImageSpec] = []
    for spec in lp.specs:
        rec = mine.get(spec.target.instance_id)
        specs.append(_spec(rec, config, run_id, started_at) if rec and rec.image_name else spec)
    seen = {s.target.instance_id for s in specs}
    for iid, rec in sorted(mine.items()):
        if iid not in seen and rec.state in SENT:  # gone, stopped or untagged: still finished
            specs.append(_spec(rec, config, run_id, started_at))
            seen.add(iid)
    lp.specs = specs
    lp.skipped = [(t, why) for t, why in lp.skipped if t.instance_id not in seen]
    lp.missing = [iid for iid in lp.missing if iid not in seen]
    # Never sent, and no longer found by discovery: it no longer belongs to the run.
    found = seen | {t.instance_id for t, _ in lp.skipped} | set(lp.missing)
    for iid, rec in sorted(mine.items()):
        if iid not in found and rec.state in OPEN - SENT:
            gone = Target(rec.account, rec.region, iid, state="unknown")
            lp.skipped.append((gone, "no longer found by discovery (gone, or filters changed)"))


def new_targets(plan: Plan, prior: Prior) -> list[ImageSpec]:
    """What a rediscovery found that the journal does not know (shown before it is added)."""
    return [
        s
        for lp in plan.lanes.values()
        for s in lp.specs
        if (s.target.account, s.target.region, s.target.instance_id) not in prior
    ]
