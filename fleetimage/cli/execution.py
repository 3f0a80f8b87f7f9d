"""What ``fleetimage run`` and ``fleetimage resume`` add to the library: prompts, progress,
signals, the report file and the exit code.

The run and its journal are :func:`~fleetimage.engine.api.image_fleet` /
:func:`~fleetimage.engine.api.resume_fleet`'s; their ``confirm`` callback is where the CLI shows
the plan, refuses an empty one and asks. A run that asks nothing (``--yes``, or no terminal)
and follows no saved plan has no use for the whole plan first: it passes no ``confirm``, so
each lane is imaged as discovery finds its instances, and an empty fleet is refused once
discovery has found nothing (still before any CreateImage).

Signals: the first SIGINT/SIGTERM sets the engine's ``stop`` event (no new images, in-flight
calls settle, pending images stay pending for resume); the second cancels everything at once.
Either way the journal is consistent (``requesting`` is committed before each CreateImage) and
the exit code is 130.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from aiobotocore.session import AioSession
from rich.console import Console

from fleetimage.cli.gate import Underway, ask, asks, imaged_any, nothing_to_image, warn_lanes
from fleetimage.cli.signals import watch_signals
from fleetimage.cli.views import plan_data, plural
from fleetimage.config import ErrorBudget, FleetConfig
from fleetimage.core.errors import RunDeclined, UsageError
from fleetimage.core.naming import new_run_id
from fleetimage.core.shards import Shard
from fleetimage.core.states import OPEN, OPEN_OUTCOMES
from fleetimage.engine.api import ResumePlan, image_fleet, resume_fleet
from fleetimage.engine.bus import Subscriber
from fleetimage.engine.plan import Plan
from fleetimage.journal import Journal, default_journal_path
from fleetimage.output.logs import LogSubscriber
from fleetimage.output.notices import error_notice, run_notice
from fleetimage.output.notifier import Notifier, delivery_lines
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
    rediscover: bool = False  # resume: add instances found since the run started
    retry_failed: bool = False  # resume: image failed targets again under a new name
    run_id: str | None = None  # run: --run-id (a restart adopts what the run made)
    shard: Shard | None = None  # run: --shard or the job's environment
    plan: Plan | None = None  # run: --plan (image exactly a saved plan)
    notifier: Notifier | None = None  # the config's notify: (observer + sender)
    workers: int = 1  # --workers: processes the lanes are spread over

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


def _resume_hint(run_id: str, opts: RunOptions) -> str:
    flag = f" --journal {opts.journal_path}" if opts.journal_path else ""
    return f"fleetimage resume {run_id}{flag}"


async def _refuse_empty(
    run: Awaitable[RunReport], journal: Journal | None, opts: RunOptions
) -> RunReport:
    """A streamed run's report, unless discovery found nothing to image: then, as a plan
    would have been, it is refused and forgotten (nothing was sent)."""
    report = await run
    if opts.allow_empty or opts.shard is not None or report.interrupted or imaged_any(report):
        return report
    if journal is not None:
        await journal.discard_run(report.run_id)
    raise nothing_to_image(len(report.lane_failures))


async def run_command(config: FleetConfig, opts: RunOptions, con: Consoles) -> Execution:
    """``fleetimage run``: plan, refuse empty, confirm, image, report (or, asking nothing,
    image as discovery finds, then refuse empty)."""
    started_at = datetime.now(UTC)
    plan = opts.plan
    run_id = plan.run_id if plan is not None else (opts.run_id or new_run_id(started_at))
    shard = "" if opts.shard is None else f" (shard {opts.shard.label})"
    # Opened first: a locked or corrupt journal must fail before any API call.
    journal = None if opts.dry_run else await Journal.open(opts.journal())
    try:

        def confirm(plan: Plan) -> bool:
            data = plan_data(plan, config)
            warn_lanes(data, con.err)
            what = (
                f"{plural(data['targets'], 'instance')} in {plural(data['regions'], 'region')} "
                f"({plural(data['accounts'], 'account')}); {data['skipped']} skipped"
            )
            con.err.print(f"run {run_id}{shard}: {what}", markup=False, highlight=False)
            # One shard may hold no lane, or none with instances: that shard is done, not wrong.
            if data["targets"] == 0 and not opts.allow_empty and opts.shard is None:
                raise nothing_to_image(data["lane_errors"], len(data["lanes"]))
            verb = "Dry-run CreateImage for" if opts.dry_run else "Create images of"
            return watch.confirmed(ask(opts.yes, f"{verb} {what}?"))

        # a run named by the user may be a restart that lost its journal
        adopt = opts.run_id is not None or plan is not None
        streamed = plan is None and not asks(opts.yes)
        watch = _Watch(run_id, opts, con)
        watch.tracker.limits = config.limits_for  # the CreateImage bucket bounds the ETA
        options = watch.engine_options()
        if streamed:
            banner = (
                f"run {run_id}{shard}: imaging each lane as discovery finds its instances "
                "(fleetimage plan shows the whole plan)"
            )
            options["on_event"].append(Underway(con.err, banner, watch.started))
        run = image_fleet(
            config,
            journal=journal,
            run_id=run_id,
            started_at=started_at,
            confirm=None if streamed else confirm,
            dry_run=opts.dry_run,
            plan=plan,
            shard=opts.shard,
            adopt=adopt,
            **options,
        )
        return await watch.execute(_refuse_empty(run, journal, opts) if streamed else run)
    finally:
        if journal is not None:
            await journal.close()


async def resume_command(run_id: str, opts: RunOptions, con: Consoles) -> Execution:
    """``fleetimage resume RUN_ID``: finish what a run left undone, never re-sending blindly."""
    journal = await Journal.open(opts.journal())
    try:

        def confirm(seen: ResumePlan) -> bool:
            counts = seen.run.counts
            con.err.print(
                f"resuming run {run_id} ({seen.run.status}, started "
                f"{seen.run.started_at.isoformat()}): {counts['available']} available (kept), "
                f"{counts['requesting'] + counts['unknown']} requesting or unknown (looked up "
                f"before anything is re-sent), {counts['pending']} pending (waited for), "
                f"{counts['planned'] + counts['not_started']} not started, "
                f"{counts['timed_out']} timed out (waited for again), {counts['failed']} failed "
                "(kept as failed)",
                markup=False,
                highlight=False,
            )
            todo = sum(counts[s.value] for s in OPEN)
            if seen.new_targets:
                shown = ", ".join(
                    f"{s.target.account}/{s.target.region}/{s.target.instance_id}"
                    for s in seen.new_targets[:20]
                )
                more = len(seen.new_targets) - 20
                con.err.print(
                    f"found since the run started: {plural(len(seen.new_targets), 'instance')} "
                    f"({shown}{f', and {more} more' if more > 0 else ''}); they are added",
                    markup=False,
                    highlight=False,
                )
            elif opts.rediscover:
                con.err.print("found since the run started: no new instance", markup=False)
            watch.tracker.seed(seen.records)
            watch.tracker.limits = seen.config.limits_for
            return watch.confirmed(ask(opts.yes, f"Resume run {run_id} ({todo} targets not done)?"))

        watch = _Watch(run_id, opts, con)
        watch.resuming = True
        return await watch.execute(
            resume_fleet(
                run_id,
                journal=journal,
                confirm=confirm,
                rediscover=opts.rediscover,
                retry_failed=opts.retry_failed,
                **watch.engine_options(),
            )
        )
    finally:
        await journal.close()


class _Watch:
    """What the CLI keeps an eye on during a run: progress, the stop request, the prompt."""

    def __init__(self, run_id: str, opts: RunOptions, con: Consoles) -> None:
        self.run_id, self.opts, self.con = run_id, opts, con
        self.tracker = ProgressTracker()
        self.stop = anyio.Event()
        self.started = anyio.Event()  # the display starts once the prompt is answered
        self.resuming = False

    def confirmed(self, yes: bool) -> bool:
        if yes:
            self.started.set()
        return yes

    def engine_options(self) -> dict[str, Any]:
        observers: list[Subscriber] = [self.tracker]
        if self.opts.log_events:
            observers.append(LogSubscriber())
        if self.opts.notifier is not None:
            observers.append(self.opts.notifier)
        return {
            "endpoint_url": self.opts.endpoint_url,
            "on_event": observers,
            "wait": self.opts.wait,
            "deadline": self.opts.deadline,
            "max_errors": self.opts.max_errors,
            "stop": self.stop,
            "session": self.opts.session,
            "workers": self.opts.workers,
        }

    async def execute(self, run: Awaitable[RunReport]) -> Execution:
        """Await ``run`` (the library call) under signal handling and a progress display."""
        opts, con = self.opts, self.con
        ex = Execution(self.run_id, EXIT_FAILED)
        hint = _resume_hint(self.run_id, opts)
        live = con.err.is_terminal if opts.live is None else opts.live

        async def display() -> None:
            await self.started.wait()
            await show_progress(
                self.tracker,
                con.err,
                live=live,
                interval_s=opts.progress_interval_s,
                title=f"run {self.run_id}: ",
            )

        notifier = opts.notifier
        async with contextlib.AsyncExitStack() as stack:
            if notifier is not None:  # leaving waits (bounded) for the last notice to go
                await stack.enter_async_context(notifier)
            declined = False
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch_signals, self.stop, tg.cancel_scope, ex, hint, con)
                tg.start_soon(display)
                try:
                    ex.report = await run
                except RunDeclined:
                    declined = True
                    con.err.print("aborted: nothing was sent")
                except Exception as exc:
                    ex.error = exc
                finally:
                    tg.cancel_scope.cancel()
            ex = _conclude(ex, opts, con, hint)
            if notifier is not None and ex.extra.get("hard_stop"):
                notifier.hurry()  # exiting now was asked for: no wait for deliveries
            elif notifier is not None and not declined:
                if ex.report is not None:
                    notifier.post(run_notice(ex.report, ex.report_path, fleet=notifier.fleet))
                elif ex.error is not None and not isinstance(ex.error, UsageError):
                    what = "resume" if self.resuming else "run"
                    notifier.post(
                        error_notice(what, self.run_id, str(ex.error), fleet=notifier.fleet)
                    )
        if notifier is not None:
            done, warnings = delivery_lines(notifier)
            for line in done:
                con.out.print(line, markup=False, highlight=False)
            for line in warnings:
                con.err.print(line, markup=False, highlight=False)
        return ex


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
    if report.journal_error is not None:
        made = sum(1 for r in report.results if r.image_id)
        where = f"the report {ex.report_path}" if ex.report_path else "the summary above"
        con.err.print(
            f"error: the journal failed mid-run ({report.journal_error}); no new image was "
            f"started after it. {made} images were created: {where} lists them all.",
            markup=False,
            highlight=False,
        )
    expired = next((r for r in report.results if r.error_code == "CredentialsExpired"), None)
    if expired is not None:
        con.err.print(f"error: {expired.error_message}", markup=False, highlight=False)
    open_targets = sum(counts[o.value] for o in OPEN_OUTCOMES)
    if report.interrupted:
        ex.exit_code = EXIT_INTERRUPTED
    elif report.ok and ex.report_path is not None:
        ex.exit_code = EXIT_OK
    else:
        ex.exit_code = EXIT_FAILED
    if not opts.dry_run and (report.interrupted or open_targets):
        pending_only = counts["pending"] and counts["pending"] == open_targets
        if pending_only and opts.wait is False and not report.interrupted:
            con.out.print(
                f"{counts['pending']} images pending (--no-wait); to wait for them: {hint}",
                markup=False,
                highlight=False,
            )
        else:
            con.out.print(f"to finish this run: {hint}", markup=False, highlight=False)
    return ex
