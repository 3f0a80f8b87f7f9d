"""One lane's token buckets: one per action, each an
:class:`~fleetimage.engine.bucket.AdaptiveTokenBucket` (how a bucket keeps below the
server's, and adapts to throttles, is told there)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio.lowlevel

from fleetimage.engine.bucket import AdaptiveTokenBucket

__all__ = ["Limiter", "UnlimitedBucket"]


class UnlimitedBucket(AdaptiveTokenBucket):
    """A bucket for actions with no known limit: every acquire succeeds at once."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(burst=1, rate_per_s=1.0, clock=clock)

    @property
    def rate_per_s(self) -> float:
        return math.inf

    @property
    def ceiling_per_s(self) -> float:
        return math.inf

    @property
    def min_rate_per_s(self) -> float:
        return math.inf

    @property
    def tokens(self) -> float:
        return math.inf

    def try_acquire(self) -> bool:
        return True

    async def acquire(self) -> None:
        # Still a checkpoint, so a loop of acquires stays cancellable and yields to others.
        await anyio.lowlevel.checkpoint()

    def on_throttle(self, *, sent_at: float | None = None) -> float:
        return math.inf

    def on_success(self) -> None:
        return None

    def on_returned(self) -> None:
        return None


class Limiter:
    """One lane's buckets: one per action; actions without limits get an unlimited bucket."""

    def __init__(self, buckets: Mapping[str, AdaptiveTokenBucket]) -> None:
        self._buckets: dict[str, AdaptiveTokenBucket] = dict(buckets)

    @classmethod
    def from_limits(cls, limits: Mapping[str, tuple[int, float]], **bucket_kwargs: Any) -> Limiter:
        """Build from ``{action: (burst, rate_per_s)}`` (e.g. ``FleetConfig.limits_for``).

        ``bucket_kwargs`` go to every :class:`AdaptiveTokenBucket` (``clock``,
        ``decrease_factor``, ...); rate-valued defaults are relative to each action's rate.
        """
        return cls(
            {
                action: AdaptiveTokenBucket(burst=burst, rate_per_s=rate, **bucket_kwargs)
                for action, (burst, rate) in limits.items()
            }
        )

    @property
    def actions(self) -> tuple[str, ...]:
        """Actions with a real (limited) bucket."""
        return tuple(a for a, b in self._buckets.items() if not isinstance(b, UnlimitedBucket))

    def bucket(self, action: str) -> AdaptiveTokenBucket:
        try:
            return self._buckets[action]
        except KeyError:
            bucket = self._buckets[action] = UnlimitedBucket()
            return bucket
