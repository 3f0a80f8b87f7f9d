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
from typing import Any

import anyio
import typer
from aiobotocore.session import AioSession

from fleetimage.aws import clients
from fleetimage.aws.identity import check_credentials
from fleetimage.aws.permissions import iam_policy
from fleetimage.cli.demo import DEMO_REGIONS, run_demo
from fleetimage.cli.execution import EXIT_FAILED, EXIT_OK, RunOptions, resume_command, run_command
from fleetimage.cli.flags import FlagGroup
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
    read_config,
)
from fleetimage.cli.prune import finish, prune_command, resume_prune_command
from fleetimage.cli.views import (
    failed_count,
    plan_data,
    plan_view,
    run_data,
    runs_data,
    runs_view,
    status_view,
    target_data,
    unfinished,
)
from fleetimage.config import FleetConfig
from fleetimage.engine.plan import plan_fleet
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
app.add_typer(mock_app, name="mock")
app.command("prune")(prune_command)


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
) -> None:
    """Image a synthetic fleet on the built-in mock EC2 endpoint (no AWS account needed)."""
    if not 1 <= regions <= len(DEMO_REGIONS):
        raise fail(f"--regions must be 1-{len(DEMO_REGIONS)}, got {regions}")
    if not 1 <= instances_per_region <= 2000:
        raise fail(f"--instances-per-region must be 1-2000, got {instances_per_region}")
    if not 0.1 <= time_scale <= 1000:
        raise fail(f"--time-scale must be 0.1-1000, got {time_scale:g}")
    report_path = parse_report_path(report)
    con = consoles()
    with logging_to("console", None, "error"):
        ex = guard(
            lambda: run_demo(
                regions=regions,
                instances_per_region=instances_per_region,
                time_scale=time_scale,
                report_path=report_path,
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
) -> None:
    """Show what a run would image (STS + DescribeInstances only; nothing is created).

    Exit 0 when every lane could be planned, 1 if a lane failed (e.g. AssumeRole denied) or
    listed instance ids do not exist, 2 on a config error.
    """
    url = parse_endpoint(endpoint_url)
    cfg = read_config(config)
    session = _credentials(cfg, url)
    result = arun(lambda: plan_fleet(cfg, endpoint_url=url, session=session))
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
    opts = RunOptions(
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
        opts = dataclasses.replace(opts, session=_credentials(cfg, url))
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
    opts = RunOptions(
        rediscover=rediscover,
        retry_failed=retry_failed,
        endpoint_url=parse_endpoint(endpoint_url),
        wait=False if no_wait else None,
        deadline=parse_deadline_flag(deadline),
        max_errors=parse_max_errors(max_errors),
        report_path=parse_report_path(report),
        journal_path=parse_journal_path(journal),
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


async def _read_journal(path: Path, run_id: str | None) -> Any:
    async with await Journal.open(path, read_only=True) as journal:
        if run_id is None:
            return await journal.runs()
        return (
            await journal.run(run_id),
            await journal.targets(run_id),
            await journal.lane_failures(run_id),
        )


@app.command()
def runs(journal: str | None = JournalOpt, as_json: bool = JsonOpt) -> None:
    """List the runs in the journal, newest first."""
    path = parse_journal_path(journal) or default_journal_path()
    found = arun(_read_journal, path, None)
    if as_json:
        typer.echo(json.dumps(runs_data(found), indent=2))
    else:
        consoles().out.print(runs_view(found, str(path)))


@app.command()
def status(
    run_id: str = typer.Argument(..., help="The run to show."),
    journal: str | None = JournalOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Show one run from the journal. Exit 0 if it finished with every target done, else 1."""
    path = parse_journal_path(journal) or default_journal_path()
    summary, targets, lanes = arun(_read_journal, path, run_id)
    if as_json:
        data = {
            **run_data(summary),
            "targets": [target_data(t) for t in targets],
            "lane_failures": [lane.to_dict() for lane in lanes],
        }
        typer.echo(json.dumps(data, indent=2))
    else:
        out = consoles().out
        out.print(status_view(summary, targets, str(path)))
        for lane in lanes:  # whole lanes that could not run: their targets are unknown
            out.print(
                f"lane {lane.account}/{lane.region} failed: {lane.action}: {lane.error_code}: "
                f"{lane.error_message}",
                markup=False,
                highlight=False,
            )
    bad = failed_count(summary.counts) + summary.lane_failures
    done = summary.status == "finished" and not bad and not unfinished(summary)
    raise typer.Exit(EXIT_OK if done else EXIT_FAILED)


@app.command()
def permissions(config: str = ConfigOpt) -> None:
    """Print the minimal IAM policy (JSON) a run of this config needs."""
    cfg = read_config(config)
    policy = iam_policy(cfg)
    typer.echo(json.dumps(policy, indent=2))
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
