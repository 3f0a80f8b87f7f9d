"""The one wall clock every timestamp of a run is read from (aware, UTC)."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["now"]


def now() -> datetime:
    return datetime.now(UTC)
