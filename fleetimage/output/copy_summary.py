"""The copies in the terminal summary: counts per destination, then the failed copies."""

from __future__ import annotations

from collections import Counter

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from fleetimage.core.models import Outcome
from fleetimage.output.report import RunReport
from fleetimage.output.tables import Column, FitTable

__all__ = ["render_copies"]


def render_copies(
    report: RunReport, *, max_failures: int = 20, message_width: int = 80
) -> RenderableType:
    seen = Counter(c.outcome for c in report.copies)
    outcomes = [o for o in Outcome if seen[o]] or [Outcome.AVAILABLE]
    table = Table(title="copies", title_justify="left")
    table.add_column("destination")
    for o in outcomes:
        table.add_column(o.value, justify="right")
    table.add_column("total", justify="right")
    by_dest: dict[str, Counter[Outcome]] = {}
    for c in report.copies:
        by_dest.setdefault(c.destination, Counter())[c.outcome] += 1
    for dest in sorted(by_dest):
        counts = by_dest[dest]
        table.add_row(dest, *(str(counts[o]) for o in outcomes), str(counts.total()))
    table.add_row(
        Text("all", style="bold"),
        *(Text(str(seen[o]), style="bold") for o in outcomes),
        Text(str(seen.total()), style="bold"),
        end_section=True,
    )
    parts: list[RenderableType] = [table]
    failures = report.copy_failures()
    if failures:
        failed = FitTable(
            [
                Column("instance", "id"),
                Column("from", lead=True),
                Column("to"),
                Column("outcome"),
                Column("code"),
                Column("message", "text"),
            ],
            title=f"{len(failures)} copy failures",
        )
        for c in failures[:max_failures]:
            message = " ".join((c.error_message or "").split())
            if len(message) > message_width:
                message = message[: message_width - 1] + "…"
            failed.add_row(
                Text(c.instance_id),
                Text(c.source_region),
                Text(c.destination),
                c.outcome.value,
                Text(c.error_code or ""),
                Text(message),
            )
        parts.append(failed)
        if len(failures) > max_failures:
            parts.append(Text(f"… and {len(failures) - max_failures} more copy failures"))
    return Group(*parts)
