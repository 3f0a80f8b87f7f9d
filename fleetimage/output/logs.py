"""structlog configuration (JSON or console) and the event → log-line subscriber.

Only the CLI calls :func:`configure_logging`; the library never configures logging. Every
line carries run_id, account, region and instance_id where known. Secrets never reach a
line: :func:`redact_processor` applies :mod:`fleetimage.core.redaction` to every field.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import MutableMapping
from enum import Enum
from typing import Any, Literal, TextIO

import structlog

from fleetimage.core.models import Event
from fleetimage.core.redaction import REDACTED, is_secret_key, redact

__all__ = ["LogSubscriber", "configure_logging", "redact_processor"]


def redact_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: no credential ever leaves in a log line."""
    for key in list(event_dict):
        event_dict[key] = REDACTED if is_secret_key(key) else redact(event_dict[key])
    return event_dict


def configure_logging(
    *,
    fmt: Literal["json", "console"] = "console",
    level: str = "info",
    stream: TextIO | None = None,
) -> None:
    """Route structlog to ``stream`` (default stderr) as JSON lines or console lines."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


_LEVELS = {
    "Failed": "warning",
    "Throttled": "debug",
    "Retried": "info",
    "Discovered": "debug",
    "RunStopping": "warning",
    "WorkerRestarted": "warning",
}


class LogSubscriber:
    """Turns engine events into log lines (one per event, debug for the chatty ones)."""

    def __init__(self) -> None:
        self.log = structlog.get_logger("fleetimage")

    def __call__(self, event: Event) -> None:
        name = type(event).__name__
        fields = {
            f.name: _plain(getattr(event, f.name))
            for f in dataclasses.fields(event)
            if f.name != "at" and getattr(event, f.name) is not None
        }
        getattr(self.log, _LEVELS.get(name, "info"))(name.lower(), **fields)


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value
