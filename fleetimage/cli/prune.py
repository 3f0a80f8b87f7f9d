"""``fleetimage prune``: show the plan (per region: to delete, kept and why), confirm, delete.

Unlike ``run``, prune never proceeds without a terminal unless ``--yes`` is given.
Exit 0 done (or dry run), 1 a deletion failed or the confirmation was declined, 2 bad input
(nothing sent that changes anything).
"""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from pathlib import Path

import anyio
import typer
from rich.table import Table

from fleetimage.aws import clients
from fleetimage.cli.options import (
    ConfigOpt,
    EndpointOpt,
    JournalOpt,
    ReportOpt,
    YesOpt,
    arun,
    consoles,
    fail,
    guard,
    parse_endpoint,
    parse_journal_path,
    read_config,
)
from fleetimage.core.durations import format_duration
from fleetimage.engine.notify import check_notify, notifier_for
from fleetimage.engine.prune import prune_fleet
from fleetimage.engine.prune_plan import PrunePlan
from fleetimage.journal import Journal, default_journal_path
from fleetimage.output.notices import Notice, prune_notice
from fleetimage.output.notifier import Notifier, delivery_lines
from fleetimage.output.prune_report import PruneReport

__all__ = ["prune_command"]

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


def prune_command(
    config: str = ConfigOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan only; delete nothing."),
    run_id: str | None = typer.Option(
        None, "--run", metavar="RUN_ID", help="Prune that run's images (keep_last does not apply)."
    ),
    yes: bool = YesOpt,
    report_path: str | None = ReportOpt,
    journal: str | None = JournalOpt,
    endpoint_url: str | None = EndpointOpt,
) -> None:
    """Delete this fleet's images that `retention:` does not keep (plan first, then confirm)."""
    url = parse_endpoint(endpoint_url)
    cfg = read_config(config)
    guard(lambda: check_notify(cfg))  # an unusable webhook variable: exit 2, nothing sent
    journal_path = parse_journal_path(journal) or default_journal_path()
    if not dry_run and not yes and not sys.stdin.isatty():
        raise fail("prune asks before deleting and stdin is not a terminal; pass --yes")
    out = consoles()

    async def main() -> tuple[PruneReport, bool]:
        known_run = run_id is None
        async with contextlib.AsyncExitStack() as stack:
            jr = None
            if not dry_run:
                jr = await stack.enter_async_context(await Journal.open(journal_path))
                if run_id is not None:
                    known_run = any(r.run_id == run_id for r in await jr.runs())
            declined = False

            async def show(plan: PrunePlan) -> None:
                out.err.print(plan_table(plan))
                kept = plan.kept
                for d in kept[:20]:
                    out.err.print(
                        f"  keep {d.image.region} {d.image.image_id} ({d.image.instance_id}): {d.reason}"
                    )
                if len(kept) > 20:
                    out.err.print(
                        f"  … and {len(kept) - 20} more kept (the report lists every one)"
                    )

            async def confirm(plan: PrunePlan) -> bool:
                nonlocal declined
                if run_id is not None and not known_run and not plan.to_delete and not plan.kept:
                    raise fail(
                        f"--run {run_id}: not in the journal nor on any image of fleet {plan.fleet}"
                    )
                if yes or not plan.to_delete:
                    return True
                question = f"Delete {len(plan.to_delete)} images and their snapshots?"
                ok = await anyio.to_thread.run_sync(lambda: typer.confirm(question, err=True))
                declined = not ok
                return ok

            report = await prune_fleet(
                cfg,
                endpoint_url=url,
                run_id=run_id,
                dry_run=dry_run,
                journal=jr,
                confirm=confirm,
                on_plan=show,
            )
            if dry_run and run_id is not None and not report.items:
                raise fail(
                    f"--run {run_id}: not in the journal nor on any image of fleet {cfg.name}"
                )
            return report, declined

    report, declined = arun(main)
    path = Path(report_path) if report_path else Path(f"fleetimage-prune-{report.prune_id}.json")
    report.write(path)
    for note in report.notes:
        out.err.print(f"note: {note}")
    took = (report.finished_at - report.started_at).total_seconds() if report.finished_at else 0.0
    out.err.print(
        f"prune {report.prune_id}: {report.count('deleted')} deleted, {report.count('kept')} kept, "
        f"{report.count('failed')} failed, {report.count('planned')} planned (dry run) in "
        f"{format_duration(took)}; report: {path}"
    )
    notifier = notifier_for(cfg, session=clients.new_session(), endpoint_url=url)
    if notifier is not None and not declined:  # declined: the operator is right there
        arun(_notify, notifier, prune_notice(report, path))
        done, warnings = delivery_lines(notifier)
        for line in done:
            out.out.print(line, markup=False, highlight=False)
        for line in warnings:
            out.err.print(line, markup=False, highlight=False)
    raise typer.Exit(EXIT_FAILED if declined or not report.ok else EXIT_OK)
