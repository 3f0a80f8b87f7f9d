"""What ``fleetimage plan`` shows of the copies: per (account, destination) lane, how many
copies and the least time CopyImage's bucket allows (100 at once, then 1 per second)."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from fleetimage.config import FleetConfig
from fleetimage.core.durations import format_duration
from fleetimage.engine.copy import copy_destinations
from fleetimage.engine.plan import Plan
from fleetimage.output.tables import Column, FitTable

__all__ = ["copy_plan_data", "copy_plan_view"]


def _bound_s(config: FleetConfig, region: str, count: int) -> float:
    """Seconds CopyImage's bucket needs for ``count`` copies in ``region`` (as the imaging
    lanes' estimate: wall seconds under a config's time_scale)."""
    burst, rate = config.limits_for(region).get("CopyImage", (0, 0.0))
    return max(0, count - burst) / rate if rate > 0 else 0.0


def copy_plan_data(plan: Plan, config: FleetConfig) -> dict[str, Any] | None:
    """Per destination lane: the copies it will make once their sources are available."""
    if not config.copy_.enabled:
        return None
    counts: dict[tuple[str, str], int] = {}
    for lp in plan.lanes.values():
        for spec in lp.specs:
            for dest in copy_destinations(config, spec.target.region):
                key = (spec.target.account, dest)
                counts[key] = counts.get(key, 0) + 1
    lanes: list[dict[str, Any]] = []
    for (account, region), count in sorted(counts.items()):
        burst, rate = config.limits_for(region).get("CopyImage", (0, 0.0))
        lanes.append(
            {
                "account": account,
                "region": region,
                "copies": count,
                "minimum_seconds": _bound_s(config, region, count),
                "copy_limit": {"burst": burst, "rate_per_s": rate},
                "max_concurrent": config.copy_.max_concurrent_per_region,
            }
        )
    return {
        "destinations": list(config.copy_.regions),
        "copies": sum(lane["copies"] for lane in lanes),
        "minimum_seconds": max((float(lane["minimum_seconds"]) for lane in lanes), default=0.0),
        "lanes": lanes,
    }


def _time(seconds: float, count: int) -> str:
    if seconds < 1:
        return "< 1s" if count else "-"
    return format_duration(seconds)


def copy_plan_view(data: dict[str, Any]) -> RenderableType:
    table = FitTable(
        [
            Column("account", "id"),
            Column("destination", lead=True),
            Column("copies", "number"),
            Column("min. time"),
        ],
        title="copies",
    )
    for lane in data["lanes"]:
        table.add_row(
            lane["account"],
            lane["region"],
            str(lane["copies"]),
            _time(lane["minimum_seconds"], lane["copies"]),
        )
    note = Text(
        f"{data['copies']} copies into {', '.join(data['destinations'])} (never into an image's "
        f"own region), once each image is available. Estimated minimum time of the copy phase: "
        f"{_time(data['minimum_seconds'], data['copies'])} (CopyImage's bucket per destination: "
        "a burst of 100, then 1 per second) + the copies' pending time; at most "
        f"{data['lanes'][0]['max_concurrent'] if data['lanes'] else 0} pending per destination."
    )
    return Group(table, note)
