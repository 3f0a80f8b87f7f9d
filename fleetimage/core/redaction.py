"""Keeping credentials out of everything fleetimage writes: logs, journal, reports, errors.

Two nets, used together: a key whose *name* says credential (``secret_access_key``,
``SessionToken``, ``Authorization``...) loses its value whatever it is, and any string that
*looks* like an AWS access key id, secret access key or session token is masked wherever it
appears, so a credential pasted into a message or a tag is caught too.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["REDACTED", "is_secret_key", "redact", "scrub_text"]

REDACTED = "<redacted>"

_SECRET_WORDS = frozenset(
    {
        "secret",
        "token",
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "credential",
        "credentials",
        "authorization",
        "signature",
    }
)
_SECRET_PAIRS = frozenset({("private", "key"), ("access", "key"), ("api", "key")})
_SECRET_VALUE = re.compile(
    r"\b(?:AKIA|ASIA)[A-Z0-9]{12,}\b"  # access key ids
    r"|(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"  # secret access keys
    r"|\b(?:FwoG|IQoJ)[A-Za-z0-9/+=]{20,}"  # session tokens
)


def is_secret_key(key: str) -> bool:
    # Whole words, so a limiter's "burst_tokens" survives while "session_token" does not.
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).lower()
    parts = [p for p in re.split(r"[^a-z0-9]+", words) if p]
    if "secret" in words or "password" in words or _SECRET_WORDS.intersection(parts):
        return True
    return any(pair in _SECRET_PAIRS for pair in itertools.pairwise(parts))


def scrub_text(text: str) -> str:
    """``text`` with anything shaped like an AWS credential masked."""
    return _SECRET_VALUE.sub(REDACTED, text)


def redact(value: Any) -> Any:
    """A copy of ``value`` (mappings, lists, strings) with both nets applied."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return {str(k): REDACTED if is_secret_key(str(k)) else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value
