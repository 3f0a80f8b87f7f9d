"""``fleetimage prune``: show the plan (per region: to delete, kept and why), confirm, delete.

Unlike ``run``, prune never proceeds without a terminal unless ``--yes`` is given.
Exit 0 done (or dry run), 1 a deletion failed, images are left for ``fleetimage resume``, or
the confirmation was declined, 2 bad input (nothing sent that changes anything). The report
is JSON, or CSV when ``--report`` ends in ``.csv``; progress is shown as for ``run``.
"""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import typer
from rich.table import Table

from fleetimage.aws import clients
from fleetimage.cli.execution import Consoles
from fleetimage.cli.options import (
    EndpointOpt,
    IntervalOpt,
    JournalOpt,
    ReportOpt,
    YesOpt,
    arun,
    consoles,
    fail,
    guard,
    parse_endpoint,
    parse_journal_path,
    parse_report_path,
)
from fleetimage.cli.prune_scope import parse_list, prune_config, run_snapshot
from fleetimage.config import FleetConfig
from fleetimage.core.durations import format_duration
from fleetimage.engine.notify import check_notify, notifier_for
from fleetimage.engine.prune import prune_fleet, resume_prune
from fleetimage.engine.prune_plan import PrunePlan
from fleetimage.journal import Journal, default_journal_path
from fleetimage.journal import prune as ledger
from fleetimage.output.notices import Notice, prune_notice
from fleetimage.output.notifier import Notifier, delivery_lines
from fleetimage.output.progress import show_progress
from fleetimage.output.prune_progress import PruneProgress
from fleetimage.output.prune_report import PruneItem, PruneReport

__all__ = ["finish", "prune_command", "resume_prune_command"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def plan_table(plan: PrunePlan) -> Table:
    table = Table(
        title=f"prune plan for fleet {plan.fleet}" + (f", run {plan.run_id}" if plan.run_id else "")
    )
    for column in ("account", "region", "to delete", "GiB", "kept", "why kept (count)", "problem"):
        table.add_column(column)
    for key, lp in sorted(plan.lanes.items(), key=lambda kv: (kv[0].account, kv[0].region)):
        reasons = Counter(d.reason.split(":")[0].split(" (")[0] for d in lp.kept)
        table.add_row(
            key.account,
            key.region,
            str(len(lp.to_delete)),
            str(sum(i.size_gib for i in lp.to_delete)),
            str(len(lp.kept)),
            "; ".join(f"{r} ({n})" for r, n in reasons.most_common()),
            (f"{lp.error.code}: {lp.error.message}" if lp.error else "") + lp.recycle_bin,
        )
    return table


async def _notify(notifier: Notifier, notice: Notice) -> None:
    async with notifier:  # leaving waits (at most notify.timeout_s) for the delivery
        notifier.post(notice)


ConfigOptional = typer.Option(
    None,
    "--config",
    "-c",
    help="The fleet config (YAML). Not needed with --run: the journal has the run's.",
    metavar="FILE",
)


def _show_plan(plan: PrunePlan, out: Consoles) -> None:
    out.err.print(plan_table(plan))
    kept = plan.kept
    for d in kept[:20]:
        out.err.print(
            f"  keep {d.image.region} {d.image.image_id} ({d.image.instance_id}): {d.reason}",
            markup=False,
            highlight=False,
        )
    if len(kept) > 20:
        out.err.print(f"  … and {len(kept) - 20} more kept (the report lists every one)")


async def _with_progress(
    work: Callable[[PruneProgress], Awaitable[PruneReport]],
    progress: PruneProgress,
    started: anyio.Event,
    out: Consoles,
    interval_s: float,
    title: str,
) -> PruneReport:
    """Run ``work`` with the progress display (once ``started`` is set: after the prompt)."""

    async def display() -> None:
        await started.wait()
        await show_progress(
            progress, out.err, live=out.err.is_terminal, interval_s=interval_s, title=title
        )

    result: PruneReport | None = None
    error: Exception | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(display)
        try:
            result = await work(progress)
        except Exception as exc:  # raised as itself, not inside the display's task group
            error = exc
        finally:
            tg.cancel_scope.cancel()
    if error is not None:
        raise error
    assert result is not None
    return result


def prune_command(
    config: str | None = ConfigOptional,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan only; delete nothing."),
    run_id: str | None = typer.Option(
        None, "--run", metavar="RUN_ID", help="Prune that run's images (keep_last does not apply)."
    ),
    regions: str | None = typer.Option(
        None,
        "--regions",
        metavar="R1,R2",
        help="With --run and no -c: look for the run's images there (its journal is elsewhere).",
    ),
    accounts: str | None = typer.Option(
        None,
        "--accounts",
        metavar="ROLE_ARN,...",
        help="With --regions: the accounts' roles to assume (default: your own account).",
    ),
    yes: bool = YesOpt,
    report_path: str | None = ReportOpt,
    journal: str | None = JournalOpt,
    endpoint_url: str | None = EndpointOpt,
    progress_interval: float = IntervalOpt,
) -> None:
    """Delete this fleet's images that `retention:` does not keep (plan first, then confirm)."""
    url = parse_endpoint(endpoint_url)
    journal_path = parse_journal_path(journal) or default_journal_path()
    report_to = parse_report_path(report_path)
    where = parse_list("--regions", regions)
    roles = parse_list("--accounts", accounts)
    if (where or roles) and run_id is None:
        raise fail("--regions/--accounts go with --run RUN_ID")
    snapshot = arun(run_snapshot, journal_path, run_id) if run_id else None
    cfg = prune_config(config, run_id, where, roles, snapshot, journal_path)
    guard(lambda: check_notify(cfg))  # an unusable webhook variable: exit 2, nothing sent
    if not dry_run and not yes and not sys.stdin.isatty():
        raise fail("prune asks before deleting and stdin is not a terminal; pass --yes")
    out = consoles()
    unknown = f"--run {run_id}: not in the journal nor on any image of fleet {cfg.name or '?'}"

    async def main() -> tuple[PruneReport, bool]:
        async with contextlib.AsyncExitStack() as stack:
            jr = None
            if not dry_run:
                jr = await stack.enter_async_context(await Journal.open(journal_path, kind="prune"))
            declined = False
            started = anyio.Event()

            async def show(plan: PrunePlan) -> None:
                _show_plan(plan, out)

            async def confirm(plan: PrunePlan) -> bool:
                nonlocal declined
                if run_id is not None and snapshot is None and not plan.to_delete and not plan.kept:
                    raise fail(unknown)
                progress.seed(i for i in report_items(plan))
                if yes or not plan.to_delete:
                    started.set()
                    return True
                question = f"Delete {len(plan.to_delete)} images and their snapshots?"
                ok = await anyio.to_thread.run_sync(lambda: typer.confirm(question, err=True))
                declined = not ok
                if ok:
                    started.set()
                return ok

            progress = PruneProgress(cfg.limits_for)
            report = await _with_progress(
                lambda p: prune_fleet(
                    cfg,
                    endpoint_url=url,
                    run_id=run_id,
                    dry_run=dry_run,
                    journal=jr,
                    confirm=confirm,
                    on_plan=show,
                    on_item=p.on_item,
                    subscribers=[p],
                ),
                progress,
                started,
                out,
                max(progress_interval, 0.1),
                "prune: ",
            )
            if dry_run and run_id is not None and snapshot is None and not report.items:
                raise fail(unknown)
            return report, declined

    report, declined = arun(main)
    notifier = notifier_for(cfg, session=clients.new_session(), endpoint_url=url)
    finish(report, report_to, out, declined, notifier)


def report_items(plan: PrunePlan) -> list[PruneItem]:
    """The plan's items as the progress display counts them (planned or kept)."""
    return [
        PruneItem(
            d.image.account,
            d.image.region,
            d.image.image_id,
            d.image.name,
            d.image.instance_id,
            d.image.run_id,
            "planned" if d.delete else "kept",
        )
        for lp in plan.lanes.values()
        for d in lp.decisions
    ]


def finish(
    report: PruneReport,
    report_to: Path | None,
    out: Consoles,
    declined: bool,
    notifier: Notifier | None = None,
) -> None:
    """Write the report, print the summary line, notify (``notify:``), exit (0 done, 1 failed
    or declined)."""
    path = report_to or Path(f"fleetimage-prune-{report.prune_id}.json")
    report.write(path)
    for note in report.notes:
        out.err.print(f"note: {note}", markup=False, highlight=False)
    took = (report.finished_at - report.started_at).total_seconds() if report.finished_at else 0.0
    left = report.count("planned")
    tail = f"{left} planned (dry run)" if report.dry_run else f"{left} left"
    out.err.print(
        f"prune {report.prune_id}: {report.count('deleted')} deleted, {report.count('kept')} "
        f"kept, {report.count('failed')} failed, {tail} in {format_duration(took)}; "
        f"report: {path}",
        markup=False,
        highlight=False,
    )
    if left and not report.dry_run:
        out.err.print(f"to finish: fleetimage resume {report.prune_id}", markup=False)
    bad = declined or not report.ok or (left > 0 and not report.dry_run)
    if notifier is not None and not declined:  # declined: the operator is right there
        arun(_notify, notifier, prune_notice(report, path))
        done, warnings = delivery_lines(notifier)
        for line in done:
            out.out.print(line, markup=False, highlight=False)
        for line in warnings:
            out.err.print(line, markup=False, highlight=False)
    raise typer.Exit(EXIT_FAILED if bad else EXIT_OK)


async def resume_prune_command(
    prune_id: str, journal_path: Path, url: str | None, yes: bool, interval_s: float
) -> tuple[PruneReport, bool]:
    """``fleetimage resume PRUNE_ID``: settle the items a prune left planned or deleting."""
    out = consoles()
    declined = False
    started = anyio.Event()
    async with await Journal.open(journal_path, kind="prune") as jr:
        record = await ledger.prune_run(jr, prune_id)
        limits = FleetConfig.from_snapshot(record.config).limits_for if record else None
        progress = PruneProgress(limits)

        async def confirm(run: ledger.PruneRunRecord, todo: list[ledger.PruneItemRecord]) -> bool:
            nonlocal declined
            deleting = sum(1 for r in todo if r.state == "deleting")
            out.err.print(
                f"resuming prune {prune_id} of fleet {run.fleet} ({run.status}, started "
                f"{run.started_at.isoformat()}): {len(todo)} images left, {deleting} of them "
                "possibly deregistered already (looked up, never deregistered twice); each is "
                "checked again before it is deleted",
                markup=False,
                highlight=False,
            )
            progress.seed(
                PruneItem(r.account, r.region, r.image_id, "", "", "", "planned") for r in todo
            )
            if yes or not todo:
                started.set()
                return True
            question = f"Resume prune {prune_id} ({len(todo)} images left)?"
            ok = await anyio.to_thread.run_sync(lambda: typer.confirm(question, err=True))
            declined = not ok
            if ok:
                started.set()
            return ok

        report = await _with_progress(
            lambda p: resume_prune(
                prune_id,
                journal=jr,
                endpoint_url=url,
                confirm=confirm,
                on_item=p.on_item,
                subscribers=[p],
            ),
            progress,
            started,
            out,
            interval_s,
            f"prune {prune_id}: ",
        )
    return report, declined
