"""structlog configuration (JSON or console) and the event → log-line subscriber.

Only the CLI calls :func:`configure_logging`; the library never configures logging. Every
line carries run_id, account, region and instance_id where known. Secrets never reach a
line: :func:`redact` drops credential-named keys and masks anything shaped like an AWS
access key id, secret key or session token wherever it appears in a value.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import sys
from collections.abc import MutableMapping
from enum import Enum
from typing import Any, Literal, TextIO

import structlog

from fleetimage.models import Event

__all__ = ["LogSubscriber", "configure_logging", "redact"]

_SECRET_KEY = re.compile(r"secret|token|password|credential|authorization|signature", re.I)
_SECRET_VALUE = re.compile(
    r"\b(?:AKIA|ASIA)[A-Z0-9]{12,}\b"  # access key ids
    r"|(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"  # secret access keys
    r"|\b(?:FwoG|IQoJ)[A-Za-z0-9/+=]{20,}"  # session tokens
)
REDACTED = "[redacted]"


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _SECRET_VALUE.sub(REDACTED, value)
    if isinstance(value, dict):
        return {k: REDACTED if _SECRET_KEY.search(str(k)) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v) for v in value)
    return value


def redact(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: no credential ever leaves in a log line."""
    for key in list(event_dict):
        if _SECRET_KEY.search(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub(event_dict[key])
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
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


_LEVELS = {"Failed": "warning", "Throttled": "debug", "Retried": "info", "Discovered": "debug"}


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
