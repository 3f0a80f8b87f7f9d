"""How the engine tells what happened: the ledger first, then the observers.

:meth:`Bus.before_send` is awaited by an operation right before it sends a request that
creates something: the ledger has the row durably before the request leaves. :meth:`Bus.emit`
records any other state change in the ledger, then hands the event to every observer (report,
progress, logs, user callbacks), in order, awaiting the async ones. Observers only observe.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence

from fleetimage.core.errors import FleetImageError
from fleetimage.core.ledger import Ledger, NullLedger
from fleetimage.core.models import Event, Requested

__all__ = ["Bus", "Emit", "Subscriber", "SubscriberError"]

Subscriber = Callable[[Event], Awaitable[None] | None]
Emit = Callable[[Event], Awaitable[None]]


class SubscriberError(FleetImageError):
    """An observer (e.g. a user callback) failed: the run stops rather than go on unobserved."""


class Bus:
    """The ledger plus the observers of one run."""

    def __init__(self, subscribers: Sequence[Subscriber], ledger: Ledger | None = None) -> None:
        self.subscribers = list(subscribers)
        self.ledger: Ledger = ledger if ledger is not None else NullLedger()

    async def before_send(self, event: Requested) -> None:
        """Write-ahead: the ledger commits ``event`` before the caller sends the request."""
        await self.ledger.before_send(event)
        await self._notify(event)

    async def emit(self, event: Event) -> None:
        self.ledger.record(event)
        await self._notify(event)

    async def _notify(self, event: Event) -> None:
        for subscriber in self.subscribers:
            try:
                result = subscriber(event)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                raise SubscriberError(f"event subscriber {subscriber!r} failed: {exc}") from exc
