"""The ``fleetimage`` command. Only this module (and the sub-apps it mounts) prints.

Exit codes: 0 every target available (or skipped by policy, pending with --no-wait, dry run
passed); 1 some target failed, timed out or was not started (or the confirmation was
declined); 2 usage, config or journal error — nothing was sent; 130 interrupted (the journal
is consistent: ``fleetimage resume RUN_ID``). Every expected error is one line on stderr;
``fleetimage --debug ...`` shows tracebacks.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO, TypeVar, cast
from urllib.parse import urlparse

import anyio
import typer
from pydantic import ValidationError
from rich.console import Console

from fleetimage.config import ErrorBudget, FleetConfig, load_config
from fleetimage.demo import DEMO_REGIONS, run_demo
from fleetimage.durations import parse_deadline
from fleetimage.errors import ConfigError, FleetImageError, JournalError
from fleetimage.execution import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Consoles,
    Execution,
    RunOptions,
    UsageError,
    resume_command,
    run_command,
)
from fleetimage.journal import Journal, default_journal_path
from fleetimage.logs import configure_logging
from fleetimage.mock.cli import mock_app
from fleetimage.plan import plan_fleet
from fleetimage.policy import iam_policy
from fleetimage.views import (
    plan_data,
    plan_view,
    run_data,
    runs_data,
    runs_view,
    status_view,
    target_data,
    unfinished,
)

__all__ = ["app", "main"]

T = TypeVar("T")

app = typer.Typer(
    help="Take AMIs of a whole EC2 fleet as fast as AWS's rate limits allow.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold credentials
)
app.add_typer(mock_app, name="mock")

_debug = False

# --- shared options ------------------------------------------------------------------------

ConfigOpt = typer.Option(..., "--config", "-c", help="The fleet config (YAML).", metavar="FILE")
EndpointOpt = typer.Option(
    None, "--endpoint-url", help="Send EC2/STS calls here (e.g. the mock's URL).", metavar="URL"
)
JournalOpt = typer.Option(
    None,
    "--journal",
    help="The run journal (SQLite). Default: $FLEETIMAGE_JOURNAL or the user data dir.",
    metavar="PATH",
)
JsonOpt = typer.Option(False, "--json", help="Print JSON for machines.")
ReportOpt = typer.Option(
    None,
    "--report",
    help="Write the report here (.csv: CSV, else JSON). Default: ./fleetimage-<run_id>.json",
    metavar="PATH",
)
DeadlineOpt = typer.Option(
    None,
    "--deadline",
    help="Stop starting new images then: 45m, 1h30m, 05:30 or an ISO time.",
    metavar="DURATION|TIME",
)
MaxErrorsOpt = typer.Option(
    None,
    "--max-errors",
    help="Stop starting new images past N errors, or P% of targets.",
    metavar="N|P%",
)
NoWaitOpt = typer.Option(False, "--no-wait", help="Don't wait for images to become available.")
LogFormatOpt = typer.Option("console", "--log-format", help="Log line format.")
LogFileOpt = typer.Option(
    None, "--log-file", help="Write log lines to this file (level info).", metavar="PATH"
)
LogLevelOpt = typer.Option(
    None,
    "--log-level",
    help="debug, info, warning or error (default: warning on stderr, info in --log-file).",
)
YesOpt = typer.Option(False, "--yes", "-y", help="Don't ask for confirmation.")
IntervalOpt = typer.Option(
    10.0, "--progress-interval", hidden=True, help="Seconds between plain progress lines."
)


def _consoles() -> Consoles:
    return Consoles(out=Console(soft_wrap=True), err=Console(stderr=True, soft_wrap=True))


def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    return typer.Exit(code)


def _leaf(exc: BaseException) -> BaseException:
    """The one interesting exception inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _guard(fn: Callable[[], T]) -> T:
    """Run ``fn``; turn every expected error into one line on stderr and an exit code."""
    try:
        return fn()
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except BaseException as raw:
        exc = _leaf(raw)
        if _debug or not isinstance(exc, Exception):
            raise
        if isinstance(exc, UsageError | ConfigError | JournalError):
            raise _fail(str(exc), EXIT_USAGE) from None
        if isinstance(exc, FleetImageError):
            raise _fail(str(exc), EXIT_FAILED) from None
        raise _fail(
            f"unexpected {type(exc).__name__}: {exc} (fleetimage --debug shows the traceback)",
            EXIT_FAILED,
        ) from None


def _arun(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    return _guard(lambda: anyio.run(fn, *args))


def _config(path: str) -> FleetConfig:
    return _guard(lambda: load_config(path))


def _endpoint(url: str | None) -> str | None:
    if url is None:
        return None
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise _fail(f"--endpoint-url {url!r} is not an http(s) URL (e.g. http://127.0.0.1:8000)")
    return url


def _max_errors(value: str | None) -> ErrorBudget | None:
    if value is None:
        return None
    try:
        return ErrorBudget.model_validate(value)
    except ValidationError as exc:
        message = exc.errors()[0].get("ctx", {}).get("error") or exc.errors()[0]["msg"]
        raise _fail(f"--max-errors: {message}") from None


def _deadline(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_deadline(value, now=datetime.now(UTC))
    except ValueError as exc:
        raise _fail(f"--deadline: {exc}") from None


def _report_path(value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    if path.is_dir():
        raise _fail(f"--report {value!r} is a directory; give a file path (.json or .csv)")
    if path.parent.exists() and not os.access(path.parent, os.W_OK):
        raise _fail(f"--report {value!r}: cannot write in {path.parent}")
    return path


def _journal_path(value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    if path.is_dir():
        raise _fail(f"--journal {value!r} is a directory; give a file path")
    return path


class _StderrNow(io.TextIOBase):
    """Writes to whatever sys.stderr is at the time (rich's live display swaps it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@contextlib.contextmanager
def _logging(fmt: str, file: str | None, level: str | None) -> Iterator[None]:
    if fmt not in ("json", "console"):
        raise _fail(f"--log-format must be json or console, not {fmt!r}")
    if level is not None and level.lower() not in ("debug", "info", "warning", "error"):
        raise _fail(f"--log-level must be debug, info, warning or error, not {level!r}")
    kind = cast(Literal["json", "console"], fmt)
    if file is None:
        configure_logging(fmt=kind, level=level or "warning", stream=cast(TextIO, _StderrNow()))
        yield
        return
    try:
        stream = open(file, "a", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise _fail(f"--log-file {file!r}: {exc.strerror or exc}") from None
    try:
        configure_logging(fmt=kind, level=level or "info", stream=stream)
        yield
    finally:
        stream.close()


def _exit(ex: Execution) -> None:
    if ex.error is not None:
        _guard(lambda: _raise(ex.error))
    raise typer.Exit(ex.exit_code)


def _raise(exc: BaseException | None) -> None:
    if exc is not None:
        raise exc


# --- commands ------------------------------------------------------------------------------


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of errors."),
) -> None:
    """fleetimage: fleet-wide EC2 CreateImage, rate-limit aware and idempotent."""
    global _debug
    _debug = debug or os.environ.get("FLEETIMAGE_DEBUG") == "1"


@app.command()
def demo(
    regions: int = typer.Option(6, "--regions", help=f"Regions (1-{len(DEMO_REGIONS)})."),
    instances_per_region: int = typer.Option(
        50, "--instances-per-region", help="Instances per region (1-2000)."
    ),
    time_scale: float = typer.Option(
        20.0, "--time-scale", help="How much faster than AWS the mock runs (rates ×, delays ÷)."
    ),
    report: str | None = ReportOpt,
) -> None:
    """Image a synthetic fleet on the built-in mock EC2 endpoint (no AWS account needed)."""
    if not 1 <= regions <= len(DEMO_REGIONS):
        raise _fail(f"--regions must be 1-{len(DEMO_REGIONS)}, got {regions}")
    if not 1 <= instances_per_region <= 2000:
        raise _fail(f"--instances-per-region must be 1-2000, got {instances_per_region}")
    if not 0.1 <= time_scale <= 1000:
        raise _fail(f"--time-scale must be 0.1-1000, got {time_scale:g}")
    report_path = _report_path(report)
    con = _consoles()
    with _logging("console", None, "error"):
        ex = _guard(
            lambda: run_demo(
                regions=regions,
                instances_per_region=instances_per_region,
                time_scale=time_scale,
                report_path=report_path,
                live=None,
                con=con,
            )
        )
    _exit(ex)


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
    url = _endpoint(endpoint_url)
    cfg = _config(config)
    result = _arun(lambda: plan_fleet(cfg, endpoint_url=url))
    data = plan_data(result, cfg)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        _consoles().out.print(plan_view(data, limit=None if show_all else 10))
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
        raise _fail("--dry-run and --no-wait conflict: a dry run creates no image to wait for")
    if dry_run and journal is not None:
        raise _fail(
            "--dry-run and --journal conflict: dry runs create nothing and are not journaled"
        )
    opts = RunOptions(
        endpoint_url=_endpoint(endpoint_url),
        dry_run=dry_run,
        wait=False if no_wait else None,
        deadline=_deadline(deadline),
        max_errors=_max_errors(max_errors),
        report_path=_report_path(report),
        journal_path=_journal_path(journal),
        yes=yes,
        allow_empty=allow_empty,
        progress_interval_s=max(progress_interval, 0.1),
    )
    cfg = _config(config)
    with _logging(log_format, log_file, log_level):
        ex = _arun(run_command, cfg, opts, _consoles())
    _exit(ex)


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
    progress_interval: float = IntervalOpt,
) -> None:
    """Finish an interrupted or crashed run: keep what is done, look up before re-sending."""
    opts = RunOptions(
        endpoint_url=_endpoint(endpoint_url),
        wait=False if no_wait else None,
        deadline=_deadline(deadline),
        max_errors=_max_errors(max_errors),
        report_path=_report_path(report),
        journal_path=_journal_path(journal),
        yes=yes,
        progress_interval_s=max(progress_interval, 0.1),
    )
    with _logging(log_format, log_file, log_level):
        ex = _arun(resume_command, run_id, opts, _consoles())
    _exit(ex)


async def _read_journal(path: Path, run_id: str | None) -> Any:
    async with await Journal.open(path, read_only=True) as journal:
        if run_id is None:
            return await journal.runs()
        return await journal.run(run_id), await journal.targets(run_id)


@app.command()
def runs(journal: str | None = JournalOpt, as_json: bool = JsonOpt) -> None:
    """List the runs in the journal, newest first."""
    path = _journal_path(journal) or default_journal_path()
    found = _arun(_read_journal, path, None)
    if as_json:
        typer.echo(json.dumps(runs_data(found), indent=2))
    else:
        _consoles().out.print(runs_view(found, str(path)))


@app.command()
def status(
    run_id: str = typer.Argument(..., help="The run to show."),
    journal: str | None = JournalOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Show one run from the journal. Exit 0 if it finished with every target done, else 1."""
    path = _journal_path(journal) or default_journal_path()
    summary, targets = _arun(_read_journal, path, run_id)
    if as_json:
        data = {**run_data(summary), "targets": [target_data(t) for t in targets]}
        typer.echo(json.dumps(data, indent=2))
    else:
        _consoles().out.print(status_view(summary, targets, str(path)))
    bad = summary.counts["failed"] + summary.counts["timed_out"] + summary.counts["not_started"]
    done = summary.status == "finished" and not bad and not unfinished(summary)
    raise typer.Exit(EXIT_OK if done else EXIT_FAILED)


@app.command()
def permissions(config: str = ConfigOpt) -> None:
    """Print the minimal IAM policy (JSON) a run of this config needs."""
    cfg = _config(config)
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
