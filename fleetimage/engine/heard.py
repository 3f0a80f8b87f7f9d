"""What a bucket has heard back: the requests its tokens went to, answered (or their tokens
returned unsent), counted in the order they were heard of.

Why :class:`~fleetimage.engine.bucket.AdaptiveTokenBucket` credits no refill step the requests
heard of a period before it do not cover: the server caps its bucket at ``burst``, so a step
that falls while our requests are still on the way (a burst still arriving, a busy host, a
slow network) adds only what has arrived; and a server bucket made by our first request (the
mock's are; AWS does not say) counts its steps from that request's arrival. A request heard of
had arrived before it was heard of, and the server has had a step within every period: so
refill credited up to what was heard of a period before never runs ahead of the server's,
whatever its phase. After a burst the first step comes a period after the answer of its last
token (with the first step held only until a period after the first answer, a burst that took
more than a period to arrive on a loaded 2-core CI host was throttled twice). In a lane running
flat out the answers are a burst ahead, and no step waits.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["Heard"]


class Heard:
    """A bucket's tokens taken, refill credited, and requests heard of: counted once older than
    the last cutoff, timed while later (only about one refill period's answers are kept)."""

    def __init__(self) -> None:
        self._taken = 0
        self._credited = 0.0
        self._margin = 0.0  # refill the server surely has beyond the requests heard of
        self._counted = 0
        self._times: deque[float] = deque()
        self.last = -math.inf  # when the last request was heard of

    @property
    def in_flight(self) -> int:
        """Tokens taken whose requests are not heard of yet."""
        return self._taken - self._counted - len(self._times)

    def took(self) -> None:
        self._taken += 1

    def add(self, now: float) -> None:
        """A request was heard of at ``now``: answered, or its token returned unsent."""
        self._times.append(now)
        self.last = now

    def credit(self, amount: float) -> None:
        self._credited += amount

    def known(self, short_of_full: float) -> None:
        """The server's level is known now (``short_of_full`` below ``burst`` at least: 0 when
        a quiet period filled it, a step short of full after it refused us): what it may
        have capped away before no longer counts."""
        self._margin = self._credited - self._taken + short_of_full

    def covering(self, amount: float) -> float | None:
        """When the request was heard of that covers ``amount`` more refill: ``-inf`` if at or
        before the last cutoff, None if it has not been heard of yet."""
        later = math.ceil(self._credited + amount - self._margin - 1e-9) - self._counted
        if later <= 0:
            return -math.inf
        return self._times[later - 1] if later <= len(self._times) else None

    def forget(self, cutoff: float) -> None:
        """Requests heard of at or before ``cutoff`` are only counted from now on (cutoffs
        only ever move forward)."""
        times = self._times
        while times and times[0] <= cutoff:
            times.popleft()
            self._counted += 1
