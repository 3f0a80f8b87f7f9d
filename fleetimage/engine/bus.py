"""How the engine tells what happened: the ledger first, then the observers.

:meth:`Bus.before_send` is awaited by an operation right before it sends a request that
creates something: the ledger has the row durably before the request leaves. :meth:`Bus.emit`
records any other state change in the ledger, then hands the event to every observer (report,
progress, logs, user callbacks), in order, awaiting the async ones. Observers only observe.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence

from fleetimage.core.copies import CopyRequested
from fleetimage.core.errors import FleetImageError
from fleetimage.core.ledger import Ledger, NullLedger
from fleetimage.core.models import Event, Requested
from fleetimage.engine.stop import Stopped

__all__ = ["LEDGER_FAILED", "Bus", "Emit", "Subscriber", "SubscriberError"]

LEDGER_FAILED = "JournalFailed"  # the stop reason once the ledger cannot record

Subscriber = Callable[[Event], Awaitable[None] | None]
Emit = Callable[[Event], Awaitable[None]]


class SubscriberError(FleetImageError):
    """An observer (e.g. a user callback) failed: the run stops rather than go on unobserved."""


class Bus:
    """The ledger plus the observers of one run."""

    def __init__(
        self,
        subscribers: Sequence[Subscriber],
        ledger: Ledger | None = None,
        *,
        on_ledger_failure: Callable[[Exception], None] | None = None,
    ) -> None:
        self.subscribers = list(subscribers)
        self.ledger: Ledger = ledger if ledger is not None else NullLedger()
        # The first ledger failure (disk full, I/O error): from then on nothing is sent that
        # would need write-ahead, and what happens is kept in memory (the report) only.
        self.ledger_error: Exception | None = None
        self._on_ledger_failure = on_ledger_failure

    async def before_send(self, event: Requested | CopyRequested) -> None:
        """Write-ahead: the ledger commits ``event`` before the caller sends the request.

        Raises :class:`~fleetimage.engine.stop.Stopped` (nothing sent) once the ledger failed."""
        if self.ledger_error is None:
            try:
                await self.ledger.before_send(event)
            except Exception as exc:
                self._failed(exc)
        if self.ledger_error is not None:
            raise Stopped(LEDGER_FAILED)
        await self._notify(event)

    async def emit(self, event: Event) -> None:
        if self.ledger_error is None:
            try:
                self.ledger.record(event)
            except Exception as exc:
                self._failed(exc)
        await self._notify(event)

    def _failed(self, exc: Exception) -> None:
        self.ledger_error = exc
        if self._on_ledger_failure is not None:
            self._on_ledger_failure(exc)

    async def _notify(self, event: Event) -> None:
        for subscriber in self.subscribers:
            try:
                result = subscriber(event)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                raise SubscriberError(f"event subscriber {subscriber!r} failed: {exc}") from exc
