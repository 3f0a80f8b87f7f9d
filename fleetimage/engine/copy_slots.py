"""A destination's copy slots: the concurrent-copy cap, and the pause ``ResourceLimitExceeded``
brings.

A slot is held from CopyImage until the copy settles. ``max_concurrent_per_region`` bounds
them; AWS's own cap may be lower (documented as 50, then 100, lately more), and EC2 then
answers ``ResourceLimitExceeded``, a code that also means the 50,000-AMI quota. So a limit
answer pauses the destination: the slot goes back, the cap shrinks to the copies still in
flight, and the request waits for one of them to settle. A limit answer with no copy of ours
in flight, or no copy settling within ``retry.max_outage_s``, cannot be our concurrency: the
destination stops, with one line naming both causes.
"""

from __future__ import annotations

import anyio

__all__ = ["CopySlots", "DestinationStopped"]


class DestinationStopped(Exception):
    """The destination takes no new copies (see :meth:`CopySlots.on_limit`)."""

    CODE = "CopyLimitExceeded"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CopySlots:
    def __init__(self, destination: str, cap: int, max_wait_s: float) -> None:
        self.destination = destination
        self.cap = cap
        self.limit = cap  # lowered by a limit answer, raised again as copies settle
        self.in_flight = 0
        self.max_wait_s = max_wait_s
        self.stopped: DestinationStopped | None = None
        self._changed = anyio.Event()

    async def acquire(self) -> None:
        """Wait for a free slot (bounded while paused by a limit answer)."""
        while True:
            if self.stopped is not None:
                raise self.stopped
            if self.in_flight < self.limit:
                self.in_flight += 1
                return
            paused = self.limit < self.cap
            changed = self._changed
            if paused:
                with anyio.move_on_after(self.max_wait_s):
                    await changed.wait()
                if not changed.is_set() and self.stopped is None:
                    self._stop(
                        f"no copy into {self.destination} settled within {self.max_wait_s:g} s"
                    )
            else:
                await changed.wait()

    def release(self, *, settled: bool) -> None:
        """Give a slot back; ``settled``: a copy left pending (the destination frees one)."""
        self.in_flight -= 1
        if settled and self.limit < self.cap:
            self.limit += 1
        self._notify()

    def on_limit(self, message: str) -> None:
        """A ``ResourceLimitExceeded`` for a request holding a slot: give it back, pause at the
        copies in flight; with none in flight, stop the destination."""
        self.in_flight -= 1
        if self.in_flight <= 0:
            self._stop(f"none of our copies into {self.destination} was in flight ({message})")
        else:
            self.limit = max(1, self.in_flight)
        self._notify()

    def _stop(self, why: str) -> None:
        self.stopped = DestinationStopped(
            f"CopyImage into {self.destination} answered ResourceLimitExceeded and {why}: "
            "either the region's AMI quota (50,000 by default, Recycle Bin included) is full "
            "or its concurrent-copy limit is lower than copy.max_concurrent_per_region "
            f"({self.cap}); no new copies there — free quota or lower the cap, then resume"
        )
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()
