"""The Python API: image a fleet or resume a run, journaled or not, with sync twins.

A batch job that must survive a crash gives a journal and a run id it can find again::

    report = run_fleet(config, journal="/var/lib/fleetimage/journal.sqlite3", run_id=RUN)
    # after a crash (kill -9, reboot): the same journal, the same id
    report = resume_fleet_sync(RUN, journal="/var/lib/fleetimage/journal.sqlite3")

With a journal, each CreateImage is committed as ``requesting`` before it is sent, and the run
ends ``finished``, ``interrupted`` (stopped, cancelled) or ``failed`` (an exception) there.
``confirm`` sees the plan (or, on resume, what the journal holds) before anything is sent;
returning False raises :class:`~fleetimage.core.errors.RunDeclined` and the journal forgets a
run that sent nothing. The CLI is a thin layer over these four functions.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import anyio
from aiobotocore.session import AioSession

from fleetimage.config import ErrorBudget, FleetConfig
from fleetimage.core.clock import now
from fleetimage.core.errors import FleetImageError, JournalError, RunDeclined, UsageError
from fleetimage.core.models import ImageSpec, JournalState, TargetRecord
from fleetimage.core.naming import new_run_id, validate_run_id
from fleetimage.core.shards import Shard
from fleetimage.core.states import OPEN_OUTCOMES
from fleetimage.engine.bus import Subscriber
from fleetimage.engine.plan import Plan, plan_fleet
from fleetimage.engine.restart import recorded_start, restart_plan
from fleetimage.engine.resume import journal_plan, new_targets
from fleetimage.engine.run import execute
from fleetimage.journal import Journal, RunSummary, default_journal_path
from fleetimage.output.report import RunReport

__all__ = [
    "JournalArg",
    "ResumePlan",
    "image_fleet",
    "resume_fleet",
    "resume_fleet_sync",
    "run_fleet",
]

T = TypeVar("T")
#: A journal path (opened and closed by the call), an open :class:`Journal`, or None.
JournalArg = str | os.PathLike[str] | Journal | None
Confirm = Callable[[T], bool | Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class ResumePlan:
    """What a resume starts from, shown to its ``confirm`` callback."""

    run: RunSummary
    records: tuple[TargetRecord, ...]
    config: FleetConfig
    # ``rediscover``: instances discovery found that the run never planned (added if confirmed)
    new_targets: tuple[ImageSpec, ...] = ()


async def image_fleet(
    config: FleetConfig,
    *,
    journal: JournalArg = None,
    run_id: str | None = None,
    confirm: Confirm[Plan] | None = None,
    endpoint_url: str | None = None,
    on_event: Subscriber | Sequence[Subscriber] | None = None,
    dry_run: bool = False,
    wait: bool | None = None,
    deadline: datetime | None = None,
    max_errors: ErrorBudget | None = None,
    started_at: datetime | None = None,
    stop: anyio.Event | None = None,
    session: AioSession | None = None,
    plan: Plan | None = None,
    shard: Shard | None = None,
    adopt: bool = False,
    workers: int = 1,
) -> RunReport:
    """Image every target of ``config``; one result per target.

    ``journal``: record the run there (resumable with :func:`resume_fleet`); ``run_id`` names
    it (letters, digits and ``-``, at most 40; default: generated; an id already in the journal
    is refused: resume it). ``adopt``: the run may be a restart that lost its journal (give
    the same ``run_id``) — every lane is first asked for the images that already carry this
    run id, which give the run's recorded start (names are rendered from it); then, before
    creating anything in it, each lane adopts the images of its instances, and a lane with
    none is imaged from its first discovery page (:mod:`~fleetimage.engine.adopt`).
    ``shard``: image only that shard's lanes (``Shard``; the report records it). ``confirm``: called
    with the plan (STS + DescribeInstances only) before anything is created; the run then
    images exactly that plan. ``plan``: a :func:`~fleetimage.engine.plan.plan_fleet` result to
    image exactly (its run id and start time are the run's). ``stop``: set it to stop
    gracefully (no new images; in-flight calls settle; pending images stay pending).
    ``wait``: None follows the config's ``wait.enabled``. ``deadline``, ``max_errors``: stop
    starting new images then (what never started is reported ``not_started``).
    ``workers``: image the lanes in that many processes (:mod:`~fleetimage.engine.workers`);
    this one plans, journals, reports and relays a stop. Each worker builds its AWS session
    from the environment, as ``session=None`` does; a given ``session`` plans only.
    ``session``: the AWS session (default: :func:`~fleetimage.aws.clients.new_session`, the
    standard credential chain); make one with ``new_session(profile=...)``, since a session
    made otherwise is used as given, without fleetimage's cut EC2 model and lean parser.
    """
    if workers < 1:
        raise UsageError(f"workers must be at least 1, got {workers}")
    if dry_run and journal is not None:
        raise ValueError("a dry run creates nothing and is not journaled; pass journal=None")
    adopt = adopt and not dry_run
    if plan is not None:  # its names were rendered with its run id and start time
        run_id, started_at = plan.run_id, plan.started_at
        if shard is not None:  # a saved plan holds every shard's lanes
            plan.lanes = {k: lp for k, lp in plan.lanes.items() if shard.owns(k)}
    if run_id is not None:
        try:
            validate_run_id(run_id)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    started_at = started_at or now()
    run_id = run_id or new_run_id(started_at)
    snapshot = config.model_dump(mode="json")
    shard_data = None if shard is None else shard.to_dict()
    async with _open(journal) as ledger:
        if ledger is not None:
            if await ledger.has_run(run_id):
                raise JournalError(
                    f"run {run_id} is already in journal {ledger.path}; to finish it: "
                    f"fleetimage resume {run_id} --journal {ledger.path}"
                )
            if not adopt:
                # Journaled before planning: a crash even during discovery leaves a resumable
                # run. (A restart journals once planning has found the run's recorded start.)
                await ledger.start_run(
                    run_id, started_at=started_at, config_snapshot=snapshot, shard=shard_data
                )
        sent = False
        found = None
        try:
            if plan is None and (confirm is not None or adopt):
                planning = functools.partial(
                    plan_fleet,
                    config,
                    endpoint_url=endpoint_url,
                    session=session,
                    run_id=run_id,
                    started_at=started_at,
                    owns=None if shard is None else shard.owns,
                )
                if adopt and confirm is None:
                    # A restart's look-up first: every lane's images of this run, and so the
                    # run's recorded start; then a lane with none is imaged as it is found.
                    found = await planning(adopt=True, discover=False)
                else:
                    plan = await planning(adopt=adopt)
            if adopt:
                if plan is not None:
                    plan = restart_plan(plan, config)
                    started_at = plan.started_at
                elif found is not None:
                    started_at = recorded_start(found) or started_at
                if ledger is not None:
                    await ledger.start_run(
                        run_id, started_at=started_at, config_snapshot=snapshot, shard=shard_data
                    )
            if confirm is not None:
                assert plan is not None
                if not await _ask(confirm, plan):
                    raise RunDeclined(f"run {run_id} declined: nothing was sent")
            sent = True
            run = functools.partial(
                execute,
                config,
                ledger=ledger,
                endpoint_url=endpoint_url,
                on_event=on_event,
                dry_run=dry_run,
                wait=wait,
                deadline=deadline,
                max_errors=max_errors,
                run_id=run_id,
                started_at=started_at,
                stop=stop,
                session=session,
                plan=plan,
                shard=shard,
                adopt=adopt,
                found=found,
                workers=workers,
            )
            return await _journaled(ledger, run_id, run)
        finally:
            if ledger is not None and not sent:
                with anyio.move_on_after(10, shield=True), contextlib.suppress(FleetImageError):
                    await ledger.discard_run(run_id)


async def resume_fleet(
    run_id: str,
    *,
    journal: JournalArg = None,
    confirm: Confirm[ResumePlan] | None = None,
    rediscover: bool = False,
    retry_failed: bool = False,
    endpoint_url: str | None = None,
    on_event: Subscriber | Sequence[Subscriber] | None = None,
    wait: bool | None = None,
    deadline: datetime | None = None,
    max_errors: ErrorBudget | None = None,
    stop: anyio.Event | None = None,
    session: AioSession | None = None,
    workers: int = 1,
) -> RunReport:
    """Finish what run ``run_id`` left undone, from ``journal`` (default: the user's journal).

    It images exactly the plan the journal holds (see :mod:`fleetimage.engine.resume`): settled
    targets are kept, ``requesting`` ones are looked up by name before anything is sent again,
    known images are waited for even if their instance is gone, and only lanes whose discovery
    never completed are discovered. ``rediscover``: discover every lane again and add the
    instances found since (``confirm`` sees them as ``ResumePlan.new_targets``).
    ``retry_failed``: targets whose image failed are imaged again under a new name (``-r2``,
    ...) after their failed AMI, if it is this run's, is deregistered with its snapshots. The
    config is the run's own, as journaled. ``workers``: as for :func:`image_fleet`.
    """
    if workers < 1:
        raise UsageError(f"workers must be at least 1, got {workers}")
    async with _open(journal or default_journal_path()) as ledger:
        assert ledger is not None
        summary = await ledger.run(run_id)
        if rediscover and summary.status == "finished":
            raise UsageError(
                f"run {run_id} is finished: there is nothing to rediscover into it; start a "
                "new run for the instances found since"
            )
        config = FleetConfig.from_snapshot(await ledger.config_snapshot(run_id))
        records = tuple(await ledger.targets(run_id))
        if retry_failed and not any(r.state is JournalState.FAILED for r in records):
            raise UsageError(f"run {run_id} has no failed target to retry")
        prior = {(r.account, r.region, r.instance_id): r for r in records}
        started = summary.started_at
        stored = await ledger.shard(run_id)
        shard = None if stored is None else Shard.from_dict(stored)
        if rediscover:
            found = await plan_fleet(
                config,
                endpoint_url=endpoint_url,
                session=session,
                run_id=run_id,
                started_at=started,
                owns=None if shard is None else shard.owns,
            )
            plan: Plan = found
            fresh = tuple(new_targets(found, prior))
        else:
            lanes = await ledger.planned_lanes(run_id)
            plan, fresh = journal_plan(run_id, started, records, lanes, config), ()
        seen = ResumePlan(summary, records, config, fresh)
        if confirm is not None and not await _ask(confirm, seen):
            raise RunDeclined(f"resume of run {run_id} declined: nothing was sent")
        await ledger.start_run(
            run_id, started_at=summary.started_at, config_snapshot=config.model_dump(mode="json")
        )
        run = functools.partial(
            execute,
            config,
            ledger=ledger,
            endpoint_url=endpoint_url,
            on_event=on_event,
            wait=wait,
            deadline=deadline,
            max_errors=max_errors,
            run_id=run_id,
            resume=records,
            stop=stop,
            session=session,
            plan=plan,
            retry_failed=retry_failed,
            shard=shard,
            copies=tuple(await ledger.copies(run_id)),
            workers=workers,
        )
        return await _journaled(ledger, run_id, run)


def run_fleet(config: FleetConfig, **kwargs: Any) -> RunReport:
    """:func:`image_fleet` for sync code (a fresh event loop); the same keyword arguments."""
    return anyio.run(functools.partial(image_fleet, config, **kwargs))


def resume_fleet_sync(run_id: str, **kwargs: Any) -> RunReport:
    """:func:`resume_fleet` for sync code (a fresh event loop); the same keyword arguments."""
    return anyio.run(functools.partial(resume_fleet, run_id, **kwargs))


@contextlib.asynccontextmanager
async def _open(journal: JournalArg) -> AsyncIterator[Journal | None]:
    """The journal to record in: opened (and closed) here from a path, or the caller's own."""
    if journal is None or isinstance(journal, Journal):
        yield journal
        return
    # Opened before any API call: a locked or corrupt journal fails before anything is sent.
    async with await Journal.open(journal) as opened:
        yield opened


async def _ask(confirm: Confirm[T], what: T) -> bool:
    answer = confirm(what)
    return bool(await answer) if inspect.isawaitable(answer) else bool(answer)


async def _journaled(
    journal: Journal | None, run_id: str, run: Callable[[], Awaitable[RunReport]]
) -> RunReport:
    """Run the engine; the journal says how the run ended, whatever happens."""
    status = "failed"
    try:
        report = await run()
        if report.interrupted:
            status = "interrupted"
        else:  # finished only when nothing is left for a resume to do
            outcomes = [r.outcome for r in report.results] + [c.outcome for c in report.copies]
            open_ = any(o in OPEN_OUTCOMES for o in outcomes)
            status = "incomplete" if open_ or report.lane_failures else "finished"
        return report
    except anyio.get_cancelled_exc_class():
        status = "interrupted"
        raise
    finally:
        if journal is not None:
            # A journal that failed mid-run fails here too: the report (which says so) is then
            # the run's record, and the run shows as interrupted when the journal is next open.
            with anyio.move_on_after(10, shield=True), contextlib.suppress(JournalError):
                await journal.finish_run(run_id, status=status, finished_at=now())
