"""What the CLI shows for a plan, the journal's runs and one run: rich tables and JSON data.

Pure functions from data to renderables / JSON-ready dicts: no I/O here (cli.py prints).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from fleetimage.cli.copy_views import copy_plan_data, copy_plan_view
from fleetimage.config import FleetConfig
from fleetimage.core.durations import format_duration
from fleetimage.core.models import JournalState, TargetRecord
from fleetimage.core.states import OPEN
from fleetimage.engine.plan import Plan
from fleetimage.journal import RunSummary
from fleetimage.output.tables import Column, FitTable

__all__ = [
    "plan_data",
    "plan_view",
    "plural",
    "run_data",
    "runs_data",
    "runs_view",
    "status_view",
    "target_data",
    "unfinished",
]

_BAD_STATES = (
    JournalState.FAILED,
    JournalState.TIMED_OUT,
    JournalState.NOT_STARTED,
    JournalState.UNKNOWN,
)


_COUNTS = ("to image", "skipped", "missing")


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _lane_seconds(config: FleetConfig, region: str, count: int) -> float:
    burst, rate = config.limits_for(region).get("CreateImage", (0, 0.0))
    return max(0, count - burst) / rate if rate > 0 else 0.0


# --- plan ----------------------------------------------------------------------------------


def plan_data(plan: Plan, config: FleetConfig) -> dict[str, Any]:
    """The plan as JSON-ready data (every target, name, skip reason and lane error)."""
    lanes: list[dict[str, Any]] = []
    for lp in sorted(plan.lanes.values(), key=lambda lp: (lp.key.account, lp.key.region)):
        lanes.append(
            {
                "account": lp.key.account,
                "region": lp.key.region,
                "targets": [
                    {"instance_id": s.target.instance_id, "state": s.target.state, "name": s.name}
                    for s in lp.specs
                ],
                "skipped": [
                    {"instance_id": t.instance_id, "state": t.state, "reason": reason}
                    for t, reason in lp.skipped
                ],
                "missing": list(lp.missing),
                "error": None
                if lp.error is None
                else {
                    "action": lp.error.action,
                    "code": lp.error.code,
                    "message": lp.error.message,
                },
                "minimum_seconds": _lane_seconds(config, lp.key.region, len(lp.specs)),
                "create_limit": dict(
                    zip(
                        ("burst", "rate_per_s"),
                        config.limits_for(lp.key.region).get("CreateImage", (0, 0.0)),
                        strict=True,
                    )
                ),
            }
        )
    return {
        "run_id": plan.run_id,
        "targets": sum(len(lane["targets"]) for lane in lanes),
        "skipped": sum(len(lane["skipped"]) for lane in lanes),
        "missing": sum(len(lane["missing"]) for lane in lanes),
        "lane_errors": sum(1 for lane in lanes if lane["error"] is not None),
        "regions": len({lane["region"] for lane in lanes}),
        "accounts": len({lane["account"] for lane in lanes}),
        "minimum_seconds": plan.minimum_seconds(config),
        "lanes": lanes,
        "organization_units": [u.to_dict() for u in plan.units],
        "copies": copy_plan_data(plan, config),
    }


def _unit_lines(units: Any) -> list[Text]:
    """One line per OU item: how many accounts it resolved to, and which were left out."""
    lines = []
    for u in units:
        if u["error"] is not None:
            continue  # shown with the lane problems
        left = [f"{n} {state.lower()}" for state, n in Counter(u["inactive"].values()).items()]
        if u["excluded"]:
            left.append(f"{len(u['excluded'])} excluded ({', '.join(u['excluded'])})")
        lines.append(
            Text(
                f"{u['organization_unit']}: {plural(len(u['accounts']), 'account')} in "
                f"{plural(u['units'], 'OU')}"
                + (f"; skipped: {'; '.join(left)}" if left else "")
                + (f": {', '.join(u['accounts'])}" if u["accounts"] else "")
            )
        )
    return lines


def plan_view(data: dict[str, Any], *, limit: int | None = 10) -> RenderableType:
    """Per-lane counts, then the targets (``limit`` per lane, None: all) with names/reasons.

    Lane problems are named in the table and given in full under it, never cut."""
    summary = FitTable(
        [
            Column("account", "id"),
            Column("region", lead=True),
            Column("to image", "number"),
            Column("skipped", "number"),
            Column("missing", "number"),
            Column("min. time"),
            Column("problem"),
        ],
        title="plan",
    )
    one_account = data["accounts"] <= 1
    where_cols = [Column("region", lead=True)]
    if not one_account:
        where_cols.insert(0, Column("account", "id"))
    details = FitTable(
        [
            *where_cols,
            Column("instance", "id"),
            Column("state"),
            Column("AMI name / why skipped", "text", named=False),
        ],
        title="targets",
    )
    hidden = 0
    problems: list[Text] = []
    for lane in data["lanes"]:
        error = lane["error"]
        notes = []
        if error:
            notes.append(f"{error['action']}: {error['code']}")
            problems.append(
                Text(
                    f"{lane['account']}/{lane['region']}: {error['action']}: {error['code']}: "
                    + " ".join(str(error["message"]).split()),
                    style="red",
                )
            )
        if lane["missing"]:
            notes.append(f"{len(lane['missing'])} not found")
            problems.append(
                Text(
                    f"{lane['account']}/{lane['region']}: not found: {', '.join(lane['missing'])}",
                    style="red",
                )
            )
        summary.add_row(
            lane["account"],
            lane["region"],
            str(len(lane["targets"])),
            str(len(lane["skipped"])),
            str(len(lane["missing"])),
            lane_time(lane),
            Text("; ".join(notes), style="red" if notes else ""),
        )
        rows = [(t["instance_id"], t["state"], Text(t["name"])) for t in lane["targets"]]
        shown = rows if limit is None else rows[:limit]
        hidden += len(rows) - len(shown)
        # Skips are always listed: they are what an operator must check before a run.
        shown += [
            (s["instance_id"], s["state"], Text(f"skipped: {s['reason']}", style="yellow"))
            for s in lane["skipped"]
        ]
        for instance, state, what in shown:
            where = [lane["region"]] if one_account else [lane["account"], lane["region"]]
            details.add_row(*where, instance, state, what)
    summary.add_row(
        "all",
        "",
        str(data["targets"]),
        str(data["skipped"]),
        str(data["missing"]),
        lane_time(data),
        "",
        style="bold",
        end_section=True,
    )
    parts: list[RenderableType] = [summary, *_unit_lines(data.get("organization_units", ()))]
    if problems:
        parts.append(Text(f"{plural(len(problems), 'problem')}:"))
        parts.extend(problems)
    parts.append(details)
    if hidden:
        parts.append(Text(f"… and {hidden} more targets (--all shows every one, --json too)"))
    if data.get("copies"):
        parts.append(copy_plan_view(data["copies"]))
    parts.append(
        Text(
            f"{plural(data['targets'], 'instance')} to image in "
            f"{plural(data['regions'], 'region')}, {plural(data['accounts'], 'account')}; "
            f"{data['skipped']} skipped. Estimated minimum time: {lane_time(data)} (the CreateImage "
            "rate limits: a burst at once per region, then the refill rate) + pending time "
            "(how long AWS takes to make the images available: unknown before a run, which "
            f"measures it). Names are shown for run id "
            f"{data['run_id']}; a run gets its own id (run --plan of a plan saved with --out "
            "images these names)."
        )
    )
    return Group(*parts)


def lane_time(item: dict[str, Any]) -> str:
    """The least time the CreateImage bucket allows, never a bare "0s" (which reads as
    "instant"): a lane within the burst sends everything at once, "< 1s"."""
    seconds = float(item["minimum_seconds"])
    if seconds < 1:
        return "< 1s" if item.get("targets") else "-"
    return format_duration(seconds)


# --- runs and status -----------------------------------------------------------------------


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


def run_data(summary: RunSummary) -> dict[str, Any]:
    return {
        "run_id": summary.run_id,
        "status": summary.status,
        "started_at": _iso(summary.started_at),
        "finished_at": _iso(summary.finished_at),
        "total": summary.total,
        "counts": dict(summary.counts),
    }


def runs_data(runs: list[RunSummary]) -> list[dict[str, Any]]:
    return [run_data(r) for r in runs]


def failed_count(counts: dict[str, int]) -> int:
    return sum(counts.get(s.value, 0) for s in _BAD_STATES)


def unfinished(summary: RunSummary) -> int:
    """Targets ``fleetimage resume`` would still work on."""
    return sum(summary.counts.get(s.value, 0) for s in OPEN)


def runs_view(runs: list[RunSummary], journal: str) -> RenderableType:
    table = FitTable(
        [
            Column("run id", "id"),
            Column("status"),
            Column("started (UTC)"),
            Column("took"),
            *(
                Column(name, "number")
                for name in ("targets", "available", "pending", "failed", "skipped", "to resume")
            ),
        ],
        title=f"runs in {journal}",
        box=None,
    )
    for run in runs:
        took = (
            format_duration((run.finished_at - run.started_at).total_seconds())
            if run.finished_at
            else ""
        )
        status_style = {"finished": "green", "interrupted": "yellow", "failed": "red"}
        table.add_row(
            run.run_id,
            Text(run.status, style=status_style.get(run.status, "")),
            f"{run.started_at:%Y-%m-%d %H:%M:%S}",
            took,
            str(run.total),
            str(run.counts.get("available", 0)),
            str(run.counts.get("pending", 0)),
            str(failed_count(run.counts)),
            str(run.counts.get("skipped", 0)),
            str(unfinished(run)),
        )
    if not runs:
        return Text(f"no runs in {journal} yet")
    return table


def status_view(
    summary: RunSummary, targets: list[TargetRecord], journal: str, *, max_failures: int = 20
) -> RenderableType:
    """One run: its status, counts per region and state, its failures, and what to do next."""
    head = Text(
        f"run {summary.run_id}: {summary.status}; started {summary.started_at.isoformat()}"
        + (f", finished {summary.finished_at.isoformat()}" if summary.finished_at else "")
        + f" (journal {journal})"
    )
    states = [s for s in JournalState if summary.counts.get(s.value)]
    table = FitTable(
        [
            Column("account", "id"),
            Column("region", lead=True),
            *(Column(state.value, "number") for state in states),
            Column("total", "number"),
        ],
        box=None,
    )
    per_lane: dict[tuple[str, str], Counter[JournalState]] = {}
    for rec in targets:
        per_lane.setdefault((rec.account, rec.region), Counter())[rec.state] += 1
    for (account, region), counts in sorted(per_lane.items()):
        table.add_row(account, region, *(str(counts[s]) for s in states), str(counts.total()))
    parts: list[RenderableType] = [head, table]
    failures = [r for r in targets if r.state in _BAD_STATES]
    if failures:
        ft = FitTable(
            [
                Column("instance", "id"),
                Column("region", lead=True),
                Column("state"),
                Column("image", "id", lead=False),
                Column("code"),
                Column("message", "text"),
            ],
            title=f"{len(failures)} failed / not done",
        )
        for r in failures[:max_failures]:
            ft.add_row(
                r.instance_id,
                r.region,
                r.state.value,
                r.image_id or "",
                Text(r.error_code or ""),
                Text(" ".join((r.error_message or "").split())),
            )
        parts.append(ft)
        if len(failures) > max_failures:
            parts.append(Text(f"… and {len(failures) - max_failures} more (--json for all)"))
    left = unfinished(summary)
    if left:
        parts.append(
            Text(f"{left} targets not done: fleetimage resume {summary.run_id}", style="bold")
        )
    return Group(*parts)


def target_data(rec: TargetRecord) -> dict[str, Any]:
    return {
        "account": rec.account,
        "region": rec.region,
        "instance_id": rec.instance_id,
        "state": rec.state.value,
        "image_name": rec.image_name,
        "image_id": rec.image_id,
        "attempts": rec.attempts,
        "error_code": rec.error_code,
        "error_message": rec.error_message,
    }
