"""What a notification says: one :class:`Notice` per thing worth telling people who are not
watching the run (it ended, its error budget tripped, a lane's endpoint keeps failing).

The ``text`` reads well in chat tools (Slack, Teams: a first line that says it all, then
details, no markup beyond an emoji); the ``subject`` is one ASCII line of at most 100
characters (SNS's limit, used as the e-mail subject). Nothing here holds a secret: AWS
messages pass through :func:`~fleetimage.core.redaction.scrub_text` all the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fleetimage.core.durations import format_duration
from fleetimage.core.redaction import scrub_text
from fleetimage.output.prune_report import PruneReport
from fleetimage.output.report import RunReport
from fleetimage.output.report_views import report_verdict

__all__ = [
    "Notice",
    "budget_notice",
    "error_notice",
    "outage_notice",
    "prune_notice",
    "run_notice",
]


@dataclass(frozen=True, slots=True)
class Notice:
    """One notification: ``kind`` (run_finished, prune_finished, error_budget, lane_outage,
    lane_stopped), a short ``subject`` and the chat-ready ``text``."""

    kind: str
    subject: str
    text: str


def _subject(text: str) -> str:
    ascii_ = text.encode("ascii", "replace").decode().replace("?", "-")
    one = " ".join(ascii_.split())
    return one if len(one) <= 100 else one[:99] + "~"


def _fleet(fleet: str | None) -> str:
    return f" of fleet {fleet}" if fleet else ""


def run_notice(report: RunReport, report_path: Path | None, *, fleet: str | None) -> Notice:
    """A run (or resume) ended: its verdict, counts and where the report is."""
    if report.interrupted:
        icon, word = "⏸️", "was interrupted"
    elif report.ok:
        icon, word = "✅", "finished: ok"
    else:
        icon, word = "❌", "finished: not ok"
    dry = " (dry run)" if report.dry_run else ""
    head = f"fleetimage run {report.run_id}{dry}{_fleet(fleet)} {word}"
    lines = [f"{icon} {head}", report_verdict(report)]
    for lane in report.lane_failures[:5]:
        lines.append(
            f"lane {lane.account}/{lane.region} failed: {lane.error_code}: "
            + scrub_text(" ".join(lane.error_message.split()))[:200]
        )
    if len(report.lane_failures) > 5:
        lines.append(f"and {len(report.lane_failures) - 5} more failed lanes")
    if report_path is not None:
        lines.append(f"report: {report_path}")
    if report.interrupted or not report.ok:
        lines.append(f"to finish it: fleetimage resume {report.run_id}")
    return Notice("run_finished", _subject(head), "\n".join(lines))


def error_notice(what: str, ident: str, message: str, *, fleet: str | None) -> Notice:
    """A run or prune ended with an error before its report (``what``: run, resume, prune)."""
    head = f"fleetimage {what} {ident}{_fleet(fleet)} failed"
    text = f"❌ {head}\n{scrub_text(' '.join(message.split()))[:500]}"
    if what in ("run", "resume"):
        text += (
            f"\nfleetimage status {ident} shows every target; fleetimage resume {ident} finishes it"
        )
    return Notice(f"{what}_failed", _subject(head), text)


def prune_notice(report: PruneReport, report_path: Path | None) -> Notice:
    """A prune ended: deleted, kept and failed counts, and where the report is."""
    failed = report.count("failed")
    word = "finished: ok" if report.ok else f"finished: {failed} deletions failed"
    dry = " (dry run)" if report.dry_run else ""
    head = f"fleetimage prune {report.prune_id}{dry} of fleet {report.fleet} {word}"
    counts = ", ".join(
        f"{report.count(o)} {o}"
        for o in ("deleted", "kept", "failed", "planned")
        if report.count(o)
    )
    lines = [f"{'🧹' if report.ok else '❌'} {head}", counts or "nothing to prune"]
    if report_path is not None:
        lines.append(f"report: {report_path}")
    return Notice("prune_finished", _subject(head), "\n".join(lines))


def budget_notice(run_id: str, *, fleet: str | None, errors: int, total: int) -> Notice:
    """The error budget (max_errors) tripped: no new images are started."""
    head = f"fleetimage run {run_id}{_fleet(fleet)}: error budget exceeded"
    text = (
        f"⚠️ {head}\n{errors} errors of {total} targets exceed max_errors: no new images are "
        "started; images already requested are still waited for. The run ends with a report."
    )
    return Notice("error_budget", _subject(head), text)


def outage_notice(
    run_id: str,
    *,
    fleet: str | None,
    account: str,
    region: str,
    failing_s: float,
    last_error: str,
    stopped: bool,
) -> Notice:
    """A lane's endpoint has been failing for long (breaker open), or the lane stopped."""
    lane = f"{account}/{region}"
    last = scrub_text(" ".join(last_error.split()))[:300] or "none recorded"
    if stopped:
        head = f"fleetimage run {run_id}{_fleet(fleet)}: lane {lane} stopped"
        text = (
            f"❌ {head}\nits endpoint kept failing (retry.max_outage_s); last error: {last}. "
            f"No new images in this lane; once it recovers: fleetimage resume {run_id}"
        )
        return Notice("lane_stopped", _subject(head), text)
    head = f"fleetimage run {run_id}{_fleet(fleet)}: lane {lane} failing"
    text = (
        f"⚠️ {head}\nits endpoint has been failing for {format_duration(failing_s)} (the lane's "
        f"breaker is open; new images there wait for it); last error: {last}"
    )
    return Notice("lane_outage", _subject(head), text)
