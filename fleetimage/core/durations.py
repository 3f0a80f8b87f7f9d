"""Parsing ``--deadline`` (a duration or a point in time) and printing durations.

Accepted forms of a deadline, all resolved against ``now`` to an aware UTC datetime:

- a duration: ``90`` (seconds), ``90s``, ``45m``, ``2h``, ``1h30m``, ``1d``, ``1.5h``;
- a timestamp: ISO 8601, ``2024-06-01T05:30:00Z`` or ``2024-06-01 05:30`` (no zone = local
  time), which must lie in the future;
- a clock time ``HH:MM`` or ``HH:MM:SS`` (local time): its next occurrence, within 24 hours.

Every bad value raises :class:`ValueError` with a one-line message naming the accepted forms.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta

__all__ = ["format_duration", "parse_deadline", "parse_duration"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")
_FORMS = "a duration (90s, 45m, 1h30m, 2d), an ISO 8601 time (2024-06-01T05:30Z) or HH:MM"


def parse_duration(text: str) -> float | None:
    """Seconds in ``text`` (``90``, ``1h30m``...), or None if it is not a duration."""
    value = text.strip().lower()
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for match in _DURATION.finditer(value):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return total if pos == len(value) and pos > 0 else None


def parse_deadline(text: str, *, now: datetime) -> datetime:
    """The UTC deadline ``text`` means at ``now`` (aware); ValueError if bad or not ahead."""
    seconds = parse_duration(text)
    if seconds is not None:
        if seconds <= 0:
            raise ValueError(f"deadline {text!r} must be a positive duration")
        return now.astimezone(UTC) + timedelta(seconds=seconds)
    clock = _CLOCK.match(text.strip())
    if clock is not None:
        hour, minute, second = (int(g) if g else 0 for g in clock.groups())
        if hour > 23 or minute > 59 or second > 59:
            raise ValueError(f"deadline {text!r} is not a clock time (HH:MM, 00:00-23:59)")
        local_now = now.astimezone()
        at = datetime.combine(local_now.date(), time(hour, minute, second), local_now.tzinfo)
        if at <= local_now:
            at += timedelta(days=1)
        return at.astimezone(UTC)
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"deadline {text!r} is not {_FORMS}") from None
    if at.tzinfo is None:
        at = at.astimezone()  # a naive time is local time
    at = at.astimezone(UTC)
    if at <= now:
        raise ValueError(
            f"deadline {text!r} ({at:%Y-%m-%dT%H:%M:%SZ}) is in the past; "
            "give a future time or a duration like 45m"
        )
    return at


def format_duration(seconds: float) -> str:
    """``3h 02m 05s`` / ``4m 10s`` / ``12.5s``: short, for humans."""
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds % 1 else f"{int(seconds)}s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    return f"{minutes}m {secs:02d}s"
