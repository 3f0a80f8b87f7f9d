"""The terminal summary of a :class:`~fleetimage.output.report.RunReport`: counts per region, then
the failures."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from fleetimage.core.models import (
    ImageResult,
    Outcome,
)
from fleetimage.output.copy_summary import render_copies
from fleetimage.output.report import RunReport
from fleetimage.output.tables import Column, FitTable

__all__ = ["render_summary"]


def _clip(text: str | None, width: int) -> Text:
    # Text(), not str: AWS messages may contain "[...]", which rich would read as markup.
    value = " ".join((text or "").split())
    return Text(value if len(value) <= width else value[: width - 1] + "…")


def render_summary(
    report: RunReport,
    *,
    max_failures: int = 20,
    message_width: int = 80,
    expected: Callable[[ImageResult], bool] | None = None,
    verdict: bool = True,
) -> RenderableType:
    """Counts per region, then the first ``max_failures`` failures and how many more there are.

    ``expected``: which failures were expected (the demo's injected ones), marked as such.
    ``verdict``: end with the "N targets in T: ok" line (the demo gives its own)."""
    outcomes = [o for o in Outcome if report.counts[o.value]] or [Outcome.AVAILABLE]
    title = f"run {report.run_id}" + (" (dry run)" if report.dry_run else "")
    if report.shard is not None:
        title += f", shard {report.shard}"
    elif report.shards is not None:
        title += f", {len(report.shards)} shards merged"
    if report.interrupted:
        title += " — interrupted"
    per_region = Table(title=title, title_justify="left")
    per_region.add_column("region")
    for o in outcomes:
        per_region.add_column(o.value, justify="right")
    per_region.add_column("total", justify="right")
    by_region: dict[str, Counter[Outcome]] = {}
    for r in report.results:
        by_region.setdefault(r.region, Counter())[r.outcome] += 1
    for region in sorted(by_region):
        c = by_region[region]
        per_region.add_row(region, *(str(c[o]) for o in outcomes), str(c.total()))
    counts = report.counts
    per_region.add_row(
        Text("all", style="bold"),
        *(Text(str(counts[o.value]), style="bold") for o in outcomes),
        Text(str(counts["total"]), style="bold"),
        end_section=True,
    )
    parts: list[RenderableType] = [per_region]
    for lane in report.lane_failures:
        # Full text, one line each: a lane failure is the first thing an operator must read.
        known = f" ({len(lane.affected)} known targets)" if lane.affected else ""
        parts.append(
            Text(
                f"lane {lane.account}/{lane.region} failed{known}: {lane.error_code}: "
                f"{' '.join(lane.error_message.split())}",
                style="bold",
            )
        )

    failures = report.failures()
    if failures:
        # Ids are never cut: a table when they fit whole, else one failure per line.
        table = FitTable(
            [
                Column("instance", "id"),
                Column("account", "id"),
                Column("region", lead=True),
                Column("outcome"),
                Column("code"),
                Column("message", "text"),
            ],
            title=f"{len(failures)} failures"
            + (
                f" ({sum(map(expected, failures))} expected)"
                if expected is not None and any(map(expected, failures))
                else ""
            ),
        )
        for r in failures[:max_failures]:
            table.add_row(
                Text(r.instance_id),
                Text(r.account),
                Text(r.region),
                r.outcome.value + (" (expected)" if expected is not None and expected(r) else ""),
                Text(r.error_code or ""),
                _clip(r.error_message, message_width),
            )
        parts.append(table)
        hidden = len(failures) - max_failures
        if hidden > 0:
            parts.append(Text(f"… and {hidden} more failures (see the JSON/CSV report)"))
    if report.copies:
        parts.append(render_copies(report, max_failures=max_failures, message_width=message_width))
    elapsed = timedelta(seconds=round((report.finished_at - report.started_at).total_seconds()))
    # An interrupted run is not done, even when nothing in it has failed yet.
    word = "ok" if report.ok else "not ok"
    if report.interrupted:
        word = "interrupted" if report.ok else "interrupted, not ok"
    if verdict:
        lanes = f" ({len(report.lane_failures)} lanes failed)" if report.lane_failures else ""
        copies = f", {len(report.copies)} copies" if report.copies else ""
        parts.append(Text(f"{counts['total']} targets{lanes}{copies} in {elapsed}: {word}"))
    return Group(*parts)
