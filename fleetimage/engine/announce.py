"""What a lane announces before it images: the Discovered, Skipped and Failed events for what
planning found (the journal's rows), and LanePlanned once its discovery is complete."""

from __future__ import annotations

from fleetimage.core.clock import now
from fleetimage.core.models import (
    Discovered,
    Failed,
    ImageSpec,
    LaneFailed,
    LanePlanned,
    Outcome,
    Skipped,
    TargetRecord,
)
from fleetimage.core.states import SETTLED
from fleetimage.engine.bus import Bus
from fleetimage.engine.plan import LanePlan

__all__ = ["PLANNING_REFUSALS", "announce_lane", "announce_specs", "event_fields"]

# What planning fails a target with, before any call: two targets rendered one name, or an
# instance id the config names was not found.
NAME_COLLISION, NOT_FOUND = "NameCollision", "InvalidInstanceID.NotFound"
PLANNING_REFUSALS = frozenset({NAME_COLLISION, NOT_FOUND})


def event_fields(spec: ImageSpec) -> tuple[str, str, str]:
    t = spec.target
    return t.account, t.region, t.instance_id


async def announce_specs(bus: Bus, run_id: str, specs: list[ImageSpec]) -> None:
    """Discovered events for the targets to image (the journal's rows), before imaging them."""
    for spec in specs:
        await bus.emit(Discovered(run_id, *event_fields(spec), now(), spec.name, spec.target.state))


async def announce_lane(
    lp: LanePlan,
    bus: Bus,
    run_id: str,
    prior: dict[tuple[str, str, str], TargetRecord],
    *,
    streamed: bool = False,
) -> None:
    """Discovered/Skipped/Failed events for what planning found in a lane, before imaging.
    ``streamed``: its specs were announced page by page (:func:`announce_specs`) and are
    being imaged; the lane's discovery is complete (or failed) only now."""
    key = lp.key
    if lp.error is not None:
        affected = sorted(
            r.instance_id
            for (account, region, _), r in prior.items()
            if (account, region) == (key.account, key.region) and r.state not in SETTLED
        )
        await bus.emit(
            LaneFailed(
                run_id,
                key.account,
                key.region,
                None,
                now(),
                lp.error.action,
                lp.error.code,
                (
                    f"{lp.error.action} failed after {len(lp.specs)} of the lane's targets were "
                    f"found (they are imaged; resume discovers the rest): {lp.error.message}"
                    if streamed
                    else f"{lp.error.action} failed for the whole lane: {lp.error.message}"
                ),
                tuple(affected),
            )
        )
        return
    if not streamed:
        await announce_specs(bus, run_id, lp.specs)
    for target, reason in lp.skipped:
        await bus.emit(
            Discovered(run_id, key.account, key.region, target.instance_id, now(), "", target.state)
        )
        await bus.emit(Skipped(run_id, key.account, key.region, target.instance_id, now(), reason))
    for spec, other in lp.collisions:
        await bus.emit(Discovered(run_id, *event_fields(spec), now(), spec.name, spec.target.state))
        await bus.emit(
            Failed(
                run_id,
                *event_fields(spec),
                now(),
                Outcome.FAILED,
                NAME_COLLISION,
                f"the name template renders {spec.name!r} for this instance and for {other}; "
                "add {instance_id} where tags cannot run into it",
            )
        )
    for instance_id in lp.missing:
        if (key.account, key.region, instance_id) in prior:
            continue
        await bus.emit(
            Discovered(run_id, key.account, key.region, instance_id, now(), "", "unknown")
        )
        await bus.emit(
            Failed(
                run_id,
                key.account,
                key.region,
                instance_id,
                now(),
                Outcome.FAILED,
                NOT_FOUND,
                "no such instance in this account and region",
            )
        )
    # Last: the journal then marks the lane planned (resume does not discover it again) only
    # once every target of it has its row.
    await bus.emit(LanePlanned(run_id, key.account, key.region, None, now(), len(lp.specs)))
