"""A destination's copy slots: the concurrent-copy cap, and the pause ``ResourceLimitExceeded``
brings.

A slot is held from CopyImage until the copy settles. ``max_concurrent_per_region`` bounds
them; AWS's own cap may be lower (documented as 50, then 100, lately more), and EC2 then
answers ``ResourceLimitExceeded``, a code that also means the 50,000-AMI quota. So a limit
answer pauses the destination: the slot goes back, the cap shrinks to the copies still in
flight, and the request waits for one of them to settle. A limit answer with no copy of ours
in flight may be someone else's concurrency — other shards or workers of the run, or other
tools, copying into the same destination (the cap is the region's, not ours) — or the AMI
quota: the destination is probed again, one copy at a time, after a growing pause. Only when
no copy goes through within ``retry.max_outage_s`` of the first such refusal, or none of ours
settles within it while paused, does the destination stop, with one line naming the causes.
"""

from __future__ import annotations

import anyio

__all__ = ["CopySlots", "DestinationStopped"]

# Refused with nothing of ours in flight: the first probe after max_wait_s / _PROBES, each
# pause twice the last, at most a quarter of max_wait_s (so several probes before the stop).
_PROBES = 64


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
        # Refused with nothing of ours in flight: since when, and the pause before a probe.
        self._refused_since: float | None = None
        self._probe_pause_s = max_wait_s / _PROBES

    async def acquire(self) -> None:
        """Wait for a free slot (bounded while paused by a limit answer)."""
        while True:
            if self.stopped is not None:
                raise self.stopped
            if self.in_flight < self.limit:
                self.in_flight += 1
                return
            if self.limit == 0:  # refused with nothing of ours in flight: probe later
                await self._probe_later()
                continue
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

    def accepted(self) -> None:
        """CopyImage went through. After probing, the destination has room again: one more
        slot opens with each copy it accepts (and each that settles), as after a pause."""
        if self._refused_since is None:
            return
        self._refused_since = None
        self._probe_pause_s = self.max_wait_s / _PROBES
        self.limit = min(self.cap, self.limit + 1)
        self._notify()

    def on_limit(self, message: str) -> None:
        """A ``ResourceLimitExceeded`` for a request holding a slot: give it back, pause at the
        copies in flight; with none in flight, probe later (see the module's note)."""
        self.in_flight -= 1
        if self.in_flight > 0:
            self.limit = max(1, self.in_flight)
        else:
            now = anyio.current_time()
            if self._refused_since is None:
                self._refused_since = now
            if now - self._refused_since >= self.max_wait_s:
                self._stop(
                    f"none of our copies into {self.destination} was in flight and none went "
                    f"through within {self.max_wait_s:g} s ({message})"
                )
            else:
                self.limit = 0
        self._notify()

    async def _probe_later(self) -> None:
        assert self._refused_since is not None
        left = self._refused_since + self.max_wait_s - anyio.current_time()
        await anyio.sleep(max(0.0, min(self._probe_pause_s, left)))
        self._probe_pause_s = min(2 * self._probe_pause_s, self.max_wait_s / 4)
        if self.limit == 0:  # the first waiter awake lets one probe through
            self.limit = 1

    def _stop(self, why: str) -> None:
        self.stopped = DestinationStopped(
            f"CopyImage into {self.destination} answered ResourceLimitExceeded and {why}: "
            "either the region's AMI quota (50,000 by default, Recycle Bin included) is full "
            "or its concurrent-copy limit is lower than the copies in flight there (ours, "
            "and other processes', e.g. other shards or workers of this run); "
            f"copy.max_concurrent_per_region is {self.cap} (give each of N processes copying "
            "there about 1/N of it); no new copies there — free quota or lower the cap, then "
            "resume"
        )
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()
