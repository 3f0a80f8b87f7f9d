"""What ``fleetimage run`` and ``fleetimage resume`` do, between parsed flags and exit code.

run:    open the journal → journal.start_run → plan (STS + DescribeInstances) → refuse an
        empty plan (the run is discarded) → confirm → image_fleet (journal, progress, logs as subscribers) →
        journal.finish_run → write the report → print the summary and how to resume.
resume: open the journal → read the run's config snapshot, start time and target records →
        confirm → journal.start_run (back to running) → the same, with ``resume=records``.

Signals: the first SIGINT/SIGTERM sets the engine's ``stop`` event (no new images, in-flight
calls settle, pending images stay pending for resume); the second cancels everything at once.
Either way the journal is consistent (``requesting`` is committed before each CreateImage)
and the exit code is 130.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import typer
from aiobotocore.session import AioSession
from rich.console import Console

from fleetimage.cli.views import plan_data, plural
from fleetimage.config import ErrorBudget, FleetConfig
from fleetimage.core.errors import FleetImageError
from fleetimage.core.models import TargetRecord
from fleetimage.core.naming import new_run_id
from fleetimage.engine.plan import Plan, plan_fleet
from fleetimage.engine.run import Subscriber, image_fleet
from fleetimage.journal import Journal, default_journal_path
from fleetimage.output.logs import LogSubscriber
from fleetimage.output.progress import ProgressTracker, show_progress
from fleetimage.output.report import RunReport
from fleetimage.output.summary import render_summary

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Consoles",
    "Execution",
    "RunOptions",
    "UsageError",
    "resume_command",
    "run_command",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(FleetImageError):
    """A bad flag or combination of flags; reported in one line with exit code 2."""


@dataclass(frozen=True, slots=True)
class Consoles:
    out: Console  # results: summary tables, JSON
    err: Console  # progress, prompts, messages


@dataclass(frozen=True, slots=True)
class RunOptions:
    endpoint_url: str | None = None
    dry_run: bool = False
    wait: bool | None = None  # None: the config's wait.enabled
    deadline: datetime | None = None
    max_errors: ErrorBudget | None = None
    report_path: Path | None = None  # None: ./fleetimage-<run_id>.json
    journal_path: Path | None = None  # None: default_journal_path()
    yes: bool = False
    allow_empty: bool = False
    progress_interval_s: float = 10.0
    live: bool | None = None  # None: live display iff stderr is a terminal
    session: AioSession | None = None
    log_events: bool = True

    def journal(self) -> Path:
        return self.journal_path or default_journal_path()


@dataclass(slots=True)
class Execution:
    """The result of one run or resume: the report (None if cut short) and the exit code."""

    run_id: str
    exit_code: int
    report: RunReport | None = None
    report_path: Path | None = None
    error: BaseException | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _confirm(opts: RunOptions, question: str) -> bool:
    if opts.yes or not sys.stdin.isatty():
        return True
    return typer.confirm(question, default=False, err=True)


def _resume_hint(run_id: str, opts: RunOptions) -> str:
    flag = f" --journal {opts.journal_path}" if opts.journal_path else ""
    return f"fleetimage resume {run_id}{flag}"


async def run_command(config: FleetConfig, opts: RunOptions, con: Consoles) -> Execution:
    """``fleetimage run``: plan, refuse empty, confirm, image, report."""
    started_at = datetime.now(UTC)
    run_id = new_run_id(started_at)
    # Open the journal first: a locked or corrupt journal must fail before any API call.
    journal = None if opts.dry_run else await Journal.open(opts.journal())
    sent = False
    try:
        if journal is not None:
            # Journaled before planning, so a crash even during discovery leaves a run that
            # `fleetimage resume` finishes (it discovers again from the config snapshot).
            await journal.start_run(
                run_id, started_at=started_at, config_snapshot=config.model_dump(mode="json")
            )
        plan = await plan_fleet(
            config,
            endpoint_url=opts.endpoint_url,
            session=opts.session,
            run_id=run_id,
            started_at=started_at,
        )
        data = plan_data(plan, config)
        for lane in data["lanes"]:
            if lane["error"]:
                e = lane["error"]
                con.err.print(
                    f"warning: {lane['account']}/{lane['region']}: {e['action']}: "
                    f"{e['code']}: {e['message']}",
                    markup=False,
                    highlight=False,
                )
            if lane["missing"]:
                con.err.print(
                    f"warning: {lane['account']}/{lane['region']}: not found: "
                    f"{', '.join(lane['missing'])}",
                    markup=False,
                    highlight=False,
                )
        what = (
            f"{plural(data['targets'], 'instance')} in {plural(data['regions'], 'region')} "
            f"({plural(data['accounts'], 'account')}); {data['skipped']} skipped"
        )
        con.err.print(f"run {run_id}: {what}", markup=False, highlight=False)
        if data["targets"] == 0 and not opts.allow_empty:
            errors = data["lane_errors"]
            why = (
                f"; {errors} of {len(data['lanes'])} lanes failed (see the warnings)"
                if errors
                else ""
            )
            raise UsageError(
                f"the targets resolve to no instance to image{why}; check the config's regions "
                "and filters (fleetimage plan shows them), or pass --allow-empty"
            )
        verb = "Dry-run CreateImage for" if opts.dry_run else "Create images of"
        if not _confirm(opts, f"{verb} {what}?"):
            con.err.print("aborted: nothing was sent")
            return Execution(run_id, EXIT_FAILED)
        sent = True
        return await _execute(config, run_id, started_at, [], journal, opts, con, plan=plan)
    finally:
        if journal is not None:
            if not sent:  # declined, nothing to image, or planning failed: nothing was sent
                with anyio.move_on_after(10, shield=True), contextlib.suppress(FleetImageError):
                    await journal.discard_run(run_id)
            await journal.close()


async def resume_command(run_id: str, opts: RunOptions, con: Consoles) -> Execution:
    """``fleetimage resume RUN_ID``: finish what a run left undone, never re-sending blindly."""
    journal = await Journal.open(opts.journal())
    try:
        summary = await journal.run(run_id)
        config = FleetConfig.from_snapshot(await journal.config_snapshot(run_id))
        records = await journal.targets(run_id)
        counts = summary.counts
        con.err.print(
            f"resuming run {run_id} ({summary.status}, started {summary.started_at.isoformat()}): "
            f"{counts['available']} available (kept), {counts['requesting']} requesting "
            f"(looked up by name before anything is re-sent), {counts['pending']} pending "
            f"(waited for), {counts['planned'] + counts['not_started']} not started, "
            f"{counts['timed_out']} timed out (waited for again), {counts['failed']} failed "
            "(kept as failed); targets found since the run started are added",
            markup=False,
            highlight=False,
        )
        todo = sum(
            counts[s] for s in ("planned", "not_started", "requesting", "pending", "timed_out")
        )
        if not _confirm(opts, f"Resume run {run_id} ({todo} targets not done)?"):
            con.err.print("aborted: nothing was sent")
            return Execution(run_id, EXIT_FAILED)
        # Back to `running` (run_command journals its run before planning, so it needs none).
        await journal.start_run(
            run_id, started_at=summary.started_at, config_snapshot=config.model_dump(mode="json")
        )
        return await _execute(config, run_id, summary.started_at, records, journal, opts, con)
    finally:
        await journal.close()


async def _watch_signals(
    stop: anyio.Event, scope: anyio.CancelScope, ex: Execution, hint: str, con: Consoles
) -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be installed in the main thread
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if not stop.is_set():
                stop.set()
                con.err.print(
                    f"{name}: stopping — no new images; letting in-flight calls settle "
                    f"(again to exit at once). Then: {hint}",
                    markup=False,
                    highlight=False,
                )
            else:
                con.err.print(
                    f"{name} again: exiting now; the journal is consistent. Resume: {hint}",
                    markup=False,
                    highlight=False,
                )
                ex.extra["hard_stop"] = True
                scope.cancel()
                return


async def _execute(
    config: FleetConfig,
    run_id: str,
    started_at: datetime,
    records: Sequence[TargetRecord],
    journal: Journal | None,
    opts: RunOptions,
    con: Consoles,
    *,
    plan: Plan | None = None,
) -> Execution:
    ex = Execution(run_id, EXIT_FAILED)
    hint = _resume_hint(run_id, opts)
    tracker = ProgressTracker()
    tracker.seed(records)
    subscribers: list[Subscriber] = [tracker]
    if journal is not None:
        subscribers.insert(0, journal)  # first: `requesting` is committed before the send
    if opts.log_events:
        subscribers.append(LogSubscriber())
    stop = anyio.Event()
    live = con.err.is_terminal if opts.live is None else opts.live
    status = "failed"
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_watch_signals, stop, tg.cancel_scope, ex, hint, con)
            tg.start_soon(
                lambda: show_progress(
                    tracker,
                    con.err,
                    live=live,
                    interval_s=opts.progress_interval_s,
                    title=f"run {run_id}: ",
                )
            )
            try:
                ex.report = await image_fleet(
                    config,
                    endpoint_url=opts.endpoint_url,
                    on_event=subscribers,
                    dry_run=opts.dry_run,
                    wait=opts.wait,
                    deadline=opts.deadline,
                    max_errors=opts.max_errors,
                    run_id=run_id,
                    started_at=started_at,
                    resume=records,
                    stop=stop,
                    session=opts.session,
                    plan=plan,  # image exactly what was confirmed
                )
            except Exception as exc:
                ex.error = exc
            finally:
                tg.cancel_scope.cancel()
        if ex.report is not None:
            status = "interrupted" if ex.report.interrupted else "finished"
        elif ex.extra.get("hard_stop"):
            status = "interrupted"
    finally:
        if journal is not None:
            with anyio.move_on_after(10, shield=True):
                await journal.finish_run(run_id, status=status, finished_at=datetime.now(UTC))
    return _conclude(ex, opts, con, hint)


def _conclude(ex: Execution, opts: RunOptions, con: Consoles, hint: str) -> Execution:
    report = ex.report
    if report is None:
        if ex.extra.get("hard_stop"):
            ex.exit_code = EXIT_INTERRUPTED
            con.err.print(
                f"interrupted: no report written; `fleetimage status {ex.run_id}` shows every "
                f"target. Resume: {hint}",
                markup=False,
                highlight=False,
            )
        return ex  # an error: the caller reports ex.error
    path = opts.report_path or Path(f"fleetimage-{ex.run_id}.json")
    con.out.print(render_summary(report))
    try:
        report.write(path)
        ex.report_path = path
        con.out.print(f"report: {path}", markup=False, highlight=False)
    except OSError as exc:
        con.err.print(f"error: cannot write the report to {path}: {exc}", markup=False)
    con.out.print(f"run id: {ex.run_id}", markup=False, highlight=False)
    counts = report.counts
    open_targets = counts["pending"] + counts["not_started"] + counts["timed_out"]
    if report.interrupted:
        ex.exit_code = EXIT_INTERRUPTED
    elif report.ok and ex.report_path is not None:
        ex.exit_code = EXIT_OK
    else:
        ex.exit_code = EXIT_FAILED
    if not opts.dry_run and (report.interrupted or open_targets):
        pending_only = counts["pending"] and not (counts["not_started"] + counts["timed_out"])
        if pending_only and opts.wait is False and not report.interrupted:
            con.out.print(
                f"{counts['pending']} images pending (--no-wait); to wait for them: {hint}",
                markup=False,
                highlight=False,
            )
        else:
            con.out.print(f"to finish this run: {hint}", markup=False, highlight=False)
    return ex
