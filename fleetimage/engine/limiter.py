"""One lane's token buckets: one per action, each an
:class:`~fleetimage.engine.bucket.AdaptiveTokenBucket` (how a bucket keeps below the
server's, and adapts to throttles, is told there)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fleetimage.engine.bucket import AdaptiveTokenBucket, UnlimitedBucket

__all__ = ["Limiter"]


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
