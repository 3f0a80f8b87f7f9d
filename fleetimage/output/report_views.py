"""A saved :class:`~fleetimage.output.report.RunReport` rendered for people: a terminal table
(ids never cut, see :mod:`fleetimage.output.tables`), Markdown for a change ticket, or CSV.

``fleetimage report show REPORT.json`` is the command; these functions do the rendering.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from rich.console import Group, RenderableType
from rich.text import Text

from fleetimage.core.models import ImageResult, Outcome
from fleetimage.output.report import RunReport
from fleetimage.output.tables import Column, FitTable

__all__ = ["FORMATS", "report_markdown", "report_table", "report_verdict"]

FORMATS = ("table", "md", "csv")


def report_verdict(report: RunReport) -> str:
    """``12 targets in 0:03:10: 10 available, 2 failed: not ok`` (one line)."""
    counts = report.counts
    elapsed = timedelta(seconds=round((report.finished_at - report.started_at).total_seconds()))
    parts = [f"{counts[o.value]} {o.value}" for o in Outcome if counts[o.value]]
    word = "ok" if report.ok else "not ok"
    if report.interrupted:
        word = "interrupted" if report.ok else "interrupted, not ok"
    failed = len(report.lane_failures)
    lanes = f", {failed} lane{'' if failed == 1 else 's'} failed" if failed else ""
    what = ", ".join(parts) or "nothing imaged"
    return f"{counts['total']} targets in {elapsed}: {what}{lanes}: {word}"


def _title(report: RunReport) -> str:
    kind = " (dry run)" if report.dry_run else ""
    return (
        f"run {report.run_id}{kind}, started {report.started_at.isoformat(timespec='seconds')}, "
        f"finished {report.finished_at.isoformat(timespec='seconds')}"
    )


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def report_table(report: RunReport) -> RenderableType:
    """Every result (instance, account and image ids whole), the lane failures, the verdict."""
    table = FitTable(
        [
            Column("instance", "id"),
            Column("account", "id"),
            Column("region", lead=True),
            Column("outcome"),
            Column("image", "id", lead=False),
            Column("code"),
            Column("message", "text"),
        ],
        title=_title(report),
    )
    for r in report.results:
        table.add_row(
            Text(r.instance_id),
            Text(r.account),
            Text(r.region),
            Text(r.outcome.value),
            Text(r.image_id or ""),
            Text(r.error_code or ""),
            Text(_one_line(r.error_message)),
        )
    parts: list[RenderableType] = [table]
    for lane in report.lane_failures:
        parts.append(
            Text(
                f"lane {lane.account}/{lane.region} failed: {lane.action}: {lane.error_code}: "
                f"{_one_line(lane.error_message)}"
            )
        )
    if report.journal_error:
        parts.append(Text(f"the journal failed mid-run: {_one_line(report.journal_error)}"))
    parts.append(Text(report_verdict(report)))
    return Group(*parts)


def _md_cell(value: str | None) -> str:
    # A pipe would end the cell and a newline the row: escape one, fold the other.
    return _one_line(value).replace("\\", "\\\\").replace("|", "\\|") or " "


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(_md_cell(c) for c in cells) + " |"


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [_md_row(header), "|" + "---|" * len(header), *(_md_row(r) for r in rows)]


def report_markdown(report: RunReport) -> str:
    """Markdown for a change ticket: the verdict, counts per region, lane failures, every
    result (ids in code spans, so a ticket system never links or reflows them)."""
    lines = [f"## fleetimage {_title(report)}", "", f"**{report_verdict(report)}**", ""]
    outcomes = [o for o in Outcome if report.counts[o.value]]
    by_region: dict[str, Counter[Outcome]] = {}
    for r in report.results:
        by_region.setdefault(r.region, Counter())[r.outcome] += 1
    if outcomes:
        rows = [
            [region, *(str(c[o]) for o in outcomes), str(c.total())]
            for region, c in sorted(by_region.items())
        ]
        rows.append(["**all**", *(f"**{report.counts[o.value]}**" for o in outcomes)])
        rows[-1].append(f"**{report.counts['total']}**")
        lines += ["### Counts per region", ""]
        lines += _md_table(["region", *(o.value for o in outcomes), "total"], rows)
        lines.append("")
    if report.lane_failures:
        lines += ["### Lanes that could not run", ""]
        lines += _md_table(
            ["account", "region", "action", "code", "message"],
            [
                [f"`{f.account}`", f.region, f.action, f.error_code, f.error_message]
                for f in report.lane_failures
            ],
        )
        lines.append("")
    if report.journal_error:
        lines += [f"The journal failed mid-run: {_one_line(report.journal_error)}", ""]
    if report.results:
        lines += ["### Results", ""]
        lines += _md_table(
            ["instance", "account", "region", "outcome", "image", "code", "message"],
            [_md_result(r) for r in report.results],
        )
        lines.append("")
    return "\n".join(lines)


def _md_result(r: ImageResult) -> list[str]:
    return [
        f"`{r.instance_id}`",
        f"`{r.account}`",
        r.region,
        r.outcome.value,
        f"`{r.image_id}`" if r.image_id else "",
        r.error_code or "",
        r.error_message or "",
    ]
