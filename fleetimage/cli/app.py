"""The ``fleetimage`` command. Only this module (and the sub-apps it mounts) prints.

Exit codes: 0 every target available (or skipped by policy, pending with --no-wait, dry run
passed); 1 some target failed, timed out or was not started (or the confirmation was
declined); 2 usage, config or journal error — nothing was sent; 130 interrupted (the journal
is consistent: ``fleetimage resume RUN_ID``). Every expected error is one line on stderr;
``fleetimage --debug ...`` shows tracebacks.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import anyio
import typer
from aiobotocore.session import AioSession

from fleetimage.aws import clients
from fleetimage.aws.identity import check_credentials
from fleetimage.aws.permissions import iam_policy
from fleetimage.cli.demo import DEMO_REGIONS, run_demo
from fleetimage.cli.execution import EXIT_FAILED, EXIT_OK, RunOptions, resume_command, run_command
from fleetimage.cli.flags import FlagGroup
from fleetimage.cli.journal_views import runs_command, status_command
from fleetimage.cli.options import (
    STATE,
    ConfigOpt,
    DeadlineOpt,
    EndpointOpt,
    IntervalOpt,
    JournalOpt,
    JsonOpt,
    LogFileOpt,
    LogFormatOpt,
    LogLevelOpt,
    MaxErrorsOpt,
    NoWaitOpt,
    ReportOpt,
    WorkersOpt,
    YesOpt,
    arun,
    consoles,
    exit_with,
    fail,
    guard,
    logging_to,
    parse_deadline_flag,
    parse_endpoint,
    parse_journal_path,
    parse_max_errors,
    parse_report_path,
    parse_workers,
    read_config,
)
from fleetimage.cli.prune import finish, prune_command, resume_prune_command
from fleetimage.cli.report import report_app
from fleetimage.cli.sharding import (
    PlanFileOpt,
    PlanOutOpt,
    RunIdOpt,
    ShardOpt,
    parse_run_id,
    parse_sharding,
)
from fleetimage.cli.views import (
    plan_data,
    plan_view,
)
from fleetimage.config import FleetConfig, OrgUnitSpec
from fleetimage.core.errors import FleetImageError
from fleetimage.engine.notify import check_notify, notifier_for
from fleetimage.engine.plan import plan_fleet
from fleetimage.engine.planfile import save_plan
from fleetimage.journal import Journal, default_journal_path
from fleetimage.journal import prune as prune_ledger
from fleetimage.mock.cli import mock_app

__all__ = ["app", "main"]

app = typer.Typer(
    cls=FlagGroup,  # --yes, not --yes <bool>
    help="Take AMIs of a whole EC2 fleet as fast as AWS's rate limits allow.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold credentials
)


# --- commands ------------------------------------------------------------------------------


def _credentials(cfg: FleetConfig, endpoint_url: str | None) -> AioSession:
    """Resolve the caller's credentials once, before any table: missing or rejected ones are
    one line and exit 2 (aws.identity). The session is reused by planning and the run."""
    session = clients.new_session()
    arun(
        lambda: check_credentials(
            session,
            region=cfg.targets[0].regions[0],
            endpoint_url=endpoint_url,
            request_timeout_s=cfg.retry.request_timeout_s,
        )
    )
    return session


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of errors."),
) -> None:
    """fleetimage: fleet-wide EC2 CreateImage, rate-limit aware and idempotent."""
    STATE.debug = debug or os.environ.get("FLEETIMAGE_DEBUG") == "1"


@app.command()
def demo(
    regions: int = typer.Option(
        6, "--regions", help=f"Regions (1-{len(DEMO_REGIONS)}).", metavar="N"
    ),
    instances_per_region: int = typer.Option(
        50, "--instances-per-region", help="Instances per region (1-2000).", metavar="N"
    ),
    time_scale: float = typer.Option(
        20.0,
        "--time-scale",
        help="How much faster than AWS the mock runs (rates ×, delays ÷).",
        metavar="X",
    ),
    report: str | None = ReportOpt,
    workers: str = WorkersOpt,
) -> None:
    """Image a synthetic fleet on the built-in mock EC2 endpoint (no AWS account needed)."""
    if not 1 <= regions <= len(DEMO_REGIONS):
        raise fail(f"--regions must be 1-{len(DEMO_REGIONS)}, got {regions}")
    if not 1 <= instances_per_region <= 2000:
        raise fail(f"--instances-per-region must be 1-2000, got {instances_per_region}")
    if not 0.1 <= time_scale <= 1000:
        raise fail(f"--time-scale must be 0.1-1000, got {time_scale:g}")
    report_path = parse_report_path(report)
    processes = parse_workers(workers)
    con = consoles()
    with logging_to("console", None, "error"):
        ex = guard(
            lambda: run_demo(
                regions=regions,
                instances_per_region=instances_per_region,
                time_scale=time_scale,
                report_path=report_path,
                workers=processes,
                live=None,
                con=con,
            )
        )
    exit_with(ex)


@app.command()
def plan(
    config: str = ConfigOpt,
    as_json: bool = JsonOpt,
    endpoint_url: str | None = EndpointOpt,
    show_all: bool = typer.Option(
        False, "--all", help="List every target (default: 10 per region)."
    ),
    out: str | None = PlanOutOpt,
    run_id: str | None = RunIdOpt,
) -> None:
    """Show what a run would image (STS + DescribeInstances only; nothing is created).

    Exit 0 when every lane could be planned, 1 if a lane failed (e.g. AssumeRole denied) or
    listed instance ids do not exist, 2 on a config error. ``--out FILE`` saves the plan for
    ``run --plan FILE`` (every shard given the same file splits it by target count).
    """
    url = parse_endpoint(endpoint_url)
    cfg = read_config(config)
    rid = parse_run_id(run_id)
    out_path = parse_report_path(out, flag="--out")
    session = _credentials(cfg, url)
    result = arun(lambda: plan_fleet(cfg, endpoint_url=url, session=session, run_id=rid))
    if out_path is not None:
        guard(lambda: save_plan(result, cfg, out_path))
        typer.echo(f"plan saved: {out_path} (run id {result.run_id})", err=True)
    data = plan_data(result, cfg)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        consoles().out.print(plan_view(data, limit=None if show_all else 10))
    bad = data["lane_errors"] or data["missing"]
    raise typer.Exit(EXIT_FAILED if bad else EXIT_OK)


@app.command()
def run(
    config: str = ConfigOpt,
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Send CreateImage with DryRun=true only (checks permissions; creates nothing, no journal).",
    ),
    report: str | None = ReportOpt,
    journal: str | None = JournalOpt,
    deadline: str | None = DeadlineOpt,
    max_errors: str | None = MaxErrorsOpt,
    no_wait: bool = NoWaitOpt,
    log_format: str = LogFormatOpt,
    log_file: str | None = LogFileOpt,
    log_level: str | None = LogLevelOpt,
    endpoint_url: str | None = EndpointOpt,
    yes: bool = YesOpt,
    allow_empty: bool = typer.Option(
        False, "--allow-empty", help="Don't refuse a run that resolves to no instance."
    ),
    progress_interval: float = IntervalOpt,
    run_id: str | None = RunIdOpt,
    shard: str | None = ShardOpt,
    plan_file: str | None = PlanFileOpt,
    workers: str = WorkersOpt,
) -> None:
    """Image every target of the config: plan, confirm, create, wait, report."""
    if dry_run and no_wait:
        raise fail("--dry-run and --no-wait conflict: a dry run creates no image to wait for")
    if dry_run and journal is not None:
        raise fail(
            "--dry-run and --journal conflict: dry runs create nothing and are not journaled"
        )
    url = parse_endpoint(endpoint_url)
    cfg = read_config(config)
    guard(lambda: check_notify(cfg))  # an unusable webhook variable: exit 2, nothing sent
    sharding = parse_sharding(cfg, run_id=run_id, shard=shard, plan=plan_file)
    opts = RunOptions(
        run_id=sharding.run_id,
        shard=sharding.shard,
        plan=sharding.plan,
        workers=parse_workers(workers),
        endpoint_url=url,
        dry_run=dry_run,
        wait=False if no_wait else None,
        deadline=parse_deadline_flag(deadline),
        max_errors=parse_max_errors(max_errors),
        report_path=parse_report_path(report),
        journal_path=parse_journal_path(journal),
        yes=yes,
        allow_empty=allow_empty,
        progress_interval_s=max(progress_interval, 0.1),
    )
    with logging_to(log_format, log_file, log_level):
        if not dry_run:  # a locked or corrupt journal fails before any call, STS's included
            arun(_probe_journal, opts.journal())
        session = _credentials(cfg, url)
        notifier = notifier_for(cfg, session=session, endpoint_url=url)
        opts = dataclasses.replace(opts, session=session, notifier=notifier)
        ex = arun(run_command, cfg, opts, consoles())
    exit_with(ex)


@app.command()
def resume(
    run_id: str = typer.Argument(..., help="The run to finish (fleetimage runs lists them)."),
    journal: str | None = JournalOpt,
    report: str | None = ReportOpt,
    deadline: str | None = DeadlineOpt,
    max_errors: str | None = MaxErrorsOpt,
    no_wait: bool = NoWaitOpt,
    log_format: str = LogFormatOpt,
    log_file: str | None = LogFileOpt,
    log_level: str | None = LogLevelOpt,
    endpoint_url: str | None = EndpointOpt,
    yes: bool = YesOpt,
    rediscover: bool = typer.Option(
        False,
        "--rediscover",
        help="Discover every lane again and add instances found since the run started "
        "(shown before the confirmation).",
    ),
    retry_failed: bool = typer.Option(
        False,
        "--retry-failed",
        help="Image again the targets whose image failed, under a new name (-r2, ...), after "
        "deregistering the failed AMI (this run's only) and its snapshots.",
    ),
    progress_interval: float = IntervalOpt,
    workers: str = WorkersOpt,
) -> None:
    """Finish an interrupted or crashed run: keep what is done, look up before re-sending.

    It images exactly what the run planned (the journal holds it); lanes whose discovery never
    completed are discovered. Images already created are waited for, even if their instance
    is gone since."""
    path = parse_journal_path(journal) or default_journal_path()
    if arun(_is_prune, path, run_id):  # a prune is resumed by prune's own rules
        if rediscover or retry_failed:
            raise fail(f"{run_id} is a prune: --rediscover and --retry-failed are for runs")
        if not yes and not sys.stdin.isatty():
            raise fail("resuming a prune deletes images and stdin is not a terminal; pass --yes")
        url, report_to = parse_endpoint(endpoint_url), parse_report_path(report)
        with logging_to(log_format, log_file, log_level):
            done, declined = arun(
                resume_prune_command, run_id, path, url, yes, max(progress_interval, 0.1)
            )
        finish(done, report_to, consoles(), declined)
    url = parse_endpoint(endpoint_url)
    journal_path = parse_journal_path(journal)
    # The run's own config (journaled) says where to notify: checked before anything is sent.
    cfg = arun(_run_config, journal_path or default_journal_path(), run_id)
    notifier = None
    if cfg is not None and cfg.notify is not None:
        guard(lambda: check_notify(cfg))
        notifier = notifier_for(cfg, session=clients.new_session(), endpoint_url=url)
    opts = RunOptions(
        notifier=notifier,
        rediscover=rediscover,
        retry_failed=retry_failed,
        workers=parse_workers(workers),
        endpoint_url=url,
        wait=False if no_wait else None,
        deadline=parse_deadline_flag(deadline),
        max_errors=parse_max_errors(max_errors),
        report_path=parse_report_path(report),
        journal_path=journal_path,
        yes=yes,
        progress_interval_s=max(progress_interval, 0.1),
    )
    with logging_to(log_format, log_file, log_level):
        ex = arun(resume_command, run_id, opts, consoles())
    exit_with(ex)


async def _is_prune(path: Path, run_id: str) -> bool:
    if not await anyio.Path(path).exists():
        return False
    async with await Journal.open(path, read_only=True) as journal:
        return await prune_ledger.prune_run(journal, run_id) is not None


async def _probe_journal(path: Path) -> None:
    journal = await Journal.open(path)
    await journal.close()


async def _run_config(path: Path, run_id: str) -> FleetConfig | None:
    """The run's journaled config, or None if it cannot be read (resume then says why)."""
    try:
        async with await Journal.open(path, read_only=True) as journal:
            return FleetConfig.from_snapshot(await journal.config_snapshot(run_id))
    except FleetImageError:
        return None


@app.command()
def permissions(config: str = ConfigOpt) -> None:
    """Print the minimal IAM policy (JSON) a run of this config needs."""
    cfg = read_config(config)
    policy = iam_policy(cfg)
    typer.echo(json.dumps(policy, indent=2))
    if (cfg.notify is not None and cfg.notify.sns_topic_arn) or any(
        isinstance(a, OrgUnitSpec) for t in cfg.targets for a in t.accounts
    ):
        typer.echo(
            "note: the organizations:* and sns:Publish statements belong to the identity that "
            "runs fleetimage (the organization's management account or a delegated "
            "administrator, for organizations:*)",
            err=True,
        )
    if any(t.accounts for t in cfg.targets):
        typer.echo(
            "note: attach the ec2:* statements to each role in `accounts`, and the "
            "sts:AssumeRole statement to the identity that runs fleetimage"
            + (
                " (which also needs the ec2:* ones for targets without accounts)"
                if any(not t.accounts for t in cfg.targets)
                else ""
            ),
            err=True,
        )


# Commands that live in their own modules, listed after the ones above in `--help`.
app.command("runs")(runs_command)
app.command("status")(status_command)
app.command("prune")(prune_command)
app.add_typer(report_app, name="report")
app.add_typer(mock_app, name="mock")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
