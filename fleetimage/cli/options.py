"""The CLI's plumbing: shared options, flag parsing, one-line errors, logging setup.

Kept apart from :mod:`fleetimage.cli` (the commands) so each stays small. Every helper that
rejects input raises ``typer.Exit(2)`` after printing one ``error: ...`` line on stderr.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO, TypeVar, cast
from urllib.parse import urlparse

import anyio
import typer
from pydantic import ValidationError
from rich.console import Console

from fleetimage.cli.execution import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    Consoles,
    Execution,
    UsageError,
)
from fleetimage.config import ErrorBudget, FleetConfig, load_config
from fleetimage.core.durations import parse_deadline
from fleetimage.core.errors import ConfigError, FleetImageError, JournalError
from fleetimage.engine.workers import resolve_workers
from fleetimage.output.logs import configure_logging

T = TypeVar("T")


@dataclass
class _State:
    debug: bool = False


STATE = _State()

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
WorkersOpt = typer.Option(
    "1",
    "--workers",
    help="Image the lanes in N processes (auto: one per CPU); this one stays the run: one "
    "journal, report, progress display and Ctrl-C.",
    metavar="N|auto",
)
NoWaitOpt = typer.Option(False, "--no-wait", help="Don't wait for images to become available.")
LogFormatOpt = typer.Option(
    "console", "--log-format", help="Log line format.", metavar="json|console"
)
LogFileOpt = typer.Option(
    None, "--log-file", help="Write log lines to this file (level info).", metavar="PATH"
)
LogLevelOpt = typer.Option(
    None,
    "--log-level",
    help="debug, info, warning or error (default: warning on stderr, info in --log-file).",
    metavar="LEVEL",
)
YesOpt = typer.Option(False, "--yes", "-y", help="Don't ask for confirmation.")
IntervalOpt = typer.Option(
    10.0, "--progress-interval", hidden=True, help="Seconds between plain progress lines."
)


def consoles() -> Consoles:
    return Consoles(out=Console(soft_wrap=True), err=Console(stderr=True, soft_wrap=True))


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    return typer.Exit(code)


def _leaf(exc: BaseException) -> BaseException:
    """The one interesting exception inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def guard(fn: Callable[[], T]) -> T:
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
        if STATE.debug or not isinstance(exc, Exception):
            raise
        if isinstance(exc, UsageError | ConfigError | JournalError):
            raise fail(str(exc), EXIT_USAGE) from None
        if isinstance(exc, FleetImageError):
            raise fail(str(exc), EXIT_FAILED) from None
        raise fail(
            f"unexpected {type(exc).__name__}: {exc} (fleetimage --debug shows the traceback)",
            EXIT_FAILED,
        ) from None


def arun(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    return guard(lambda: anyio.run(fn, *args))


def read_config(path: str) -> FleetConfig:
    return guard(lambda: load_config(path))


def parse_endpoint(url: str | None) -> str | None:
    if url is None:
        return None
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise fail(f"--endpoint-url {url!r} is not an http(s) URL (e.g. http://127.0.0.1:8000)")
    return url


def parse_workers(value: str) -> int:
    try:
        return resolve_workers(value)
    except ValueError as exc:
        raise fail(f"--workers: {exc}") from None


def parse_max_errors(value: str | None) -> ErrorBudget | None:
    if value is None:
        return None
    try:
        return ErrorBudget.model_validate(value)
    except ValidationError as exc:
        message = exc.errors()[0].get("ctx", {}).get("error") or exc.errors()[0]["msg"]
        raise fail(f"--max-errors: {message}") from None


def parse_deadline_flag(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_deadline(value, now=datetime.now(UTC))
    except ValueError as exc:
        raise fail(f"--deadline: {exc}") from None


def parse_report_path(value: str | None, *, flag: str = "--report") -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    if path.is_dir():
        raise fail(f"{flag} {value!r} is a directory; give a file path (.json or .csv)")
    if path.parent.exists() and not os.access(path.parent, os.W_OK):
        raise fail(f"{flag} {value!r}: cannot write in {path.parent}")
    return path


def parse_journal_path(value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    if path.is_dir():
        raise fail(f"--journal {value!r} is a directory; give a file path")
    return path


class _StderrNow(io.TextIOBase):
    """Writes to whatever sys.stderr is at the time (rich's live display swaps it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@contextlib.contextmanager
def logging_to(fmt: str, file: str | None, level: str | None) -> Iterator[None]:
    if fmt not in ("json", "console"):
        raise fail(f"--log-format must be json or console, not {fmt!r}")
    if level is not None and level.lower() not in ("debug", "info", "warning", "error"):
        raise fail(f"--log-level must be debug, info, warning or error, not {level!r}")
    kind = cast(Literal["json", "console"], fmt)
    if file is None:
        configure_logging(fmt=kind, level=level or "warning", stream=cast(TextIO, _StderrNow()))
        yield
        return
    try:
        stream = open(file, "a", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise fail(f"--log-file {file!r}: {exc.strerror or exc}") from None
    try:
        configure_logging(fmt=kind, level=level or "info", stream=stream)
        yield
    finally:
        stream.close()


def exit_with(ex: Execution) -> None:
    if ex.error is not None:
        guard(lambda: _raise(ex.error))
    raise typer.Exit(ex.exit_code)


def _raise(exc: BaseException | None) -> None:
    if exc is not None:
        raise exc
