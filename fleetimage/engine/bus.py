"""Event delivery: the engine emits, subscribers (journal, progress, logs, report) listen.

The engine knows none of its subscribers. Each is a callable taking an event; an async one
is awaited before the engine goes on, which is what lets the journal commit ``requesting``
before CreateImage is sent.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence

from fleetimage.core.errors import FleetImageError
from fleetimage.core.models import Event

__all__ = ["Bus", "Subscriber", "SubscriberError"]

Subscriber = Callable[[Event], Awaitable[None] | None]


class SubscriberError(FleetImageError):
    """A subscriber (e.g. the journal) failed: the run stops, since it can no longer record."""


class Bus:
    """Delivers each event to every subscriber, in order, awaiting the async ones."""

    def __init__(self, subscribers: Sequence[Subscriber]) -> None:
        self.subscribers = list(subscribers)

    async def emit(self, event: Event) -> None:
        # Awaited in order: the journal must have committed `requesting` before the send.
        for subscriber in self.subscribers:
            try:
                result = subscriber(event)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                raise SubscriberError(f"event subscriber {subscriber!r} failed: {exc}") from exc
