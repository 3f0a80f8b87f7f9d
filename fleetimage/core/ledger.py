"""The ledger interface: where the engine records what it does, durably where it must be.

The engine calls :meth:`Ledger.before_send` itself, and awaits it, before every request that
creates something; only then is the request sent (write-ahead). Every other state change goes
to :meth:`Ledger.record`, which is durable moments later. Observers (progress, logs, callbacks)
get events afterwards and nothing correct depends on them. The journal is the real ledger;
:class:`NullLedger` is for runs nobody journals (a dry run, a plan).
"""

from __future__ import annotations

from typing import Protocol

from fleetimage.core.copies import CopyRequested
from fleetimage.core.models import Event, Requested

__all__ = ["Ledger", "NullLedger"]


class Ledger(Protocol):
    async def before_send(self, event: Requested | CopyRequested) -> None:
        """Return only once ``event`` (the request about to leave) is durably recorded."""

    def record(self, event: Event) -> None:
        """Queue a state change; it is durable shortly after (never blocks the loop)."""


class NullLedger:
    """Records nothing: for runs that are not journaled."""

    async def before_send(self, event: Requested | CopyRequested) -> None:
        return None

    def record(self, event: Event) -> None:
        return None
