"""Stopping a run promptly without ever abandoning a request in flight.

A stop (Ctrl-C, the deadline, the error budget) interrupts what is only *waiting* — for a
token, a backoff, a lane's discovery page — and nothing that has been sent: a request already
on the wire is answered (bounded by the client's own timeout) and recorded. Code that waits
does so inside :meth:`Stopper.interruptible`, which raises :class:`Stopped` when a stop comes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import anyio

from fleetimage.core.errors import FleetImageError

__all__ = ["Stopped", "Stopper"]


class Stopped(FleetImageError):
    """The run stopped while this task was waiting to send; nothing of it is in flight."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"stopped: {reason}")


class Stopper:
    """The run's stop request and the waits it interrupts."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._waiting: set[anyio.CancelScope] = set()
        self.requested = anyio.Event()  # set by the first request, for observers of the run

    def request(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            self.requested.set()
        for scope in list(self._waiting):
            scope.cancel()

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """A wait that a stop ends at once (raising :class:`Stopped`); never wrap a send."""
        if self.reason is not None:
            raise Stopped(self.reason)
        with anyio.CancelScope() as scope:
            self._waiting.add(scope)
            try:
                yield
            finally:
                self._waiting.discard(scope)
        if scope.cancelled_caught and self.reason is not None:
            raise Stopped(self.reason)
