"""AWS's per-(account, region, action) token buckets, as the mock enforces them.

A bucket holds at most ``burst`` tokens and refills at ``rate_per_s`` tokens per second. Under
``time_scale`` the rate is multiplied (the burst is not); under ``neighbour_load`` another
tool is assumed to drain that share of every refill, and the bucket starts short by the same
share. A throttled request takes nothing. ``MockConfig.refill`` picks continuous refill (the
tests' default) or AWS's documented one: the whole second's tokens at once, every second.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml

from fleetimage.core.errors import MockError
from fleetimage.mock.config import MockConfig

__all__ = ["WATCHED", "Buckets", "TokenBucket", "load_default_limits"]

#: Actions whose every bucket decision is kept (``Buckets.decisions``): CopyImage, the hardest
#: bucket (1/s), which copies from several shards share in their destination region.
WATCHED = frozenset({"CopyImage"})


def load_default_limits() -> dict[str, tuple[float, float]]:
    """``{action: (burst, rate_per_s)}`` from ``fleetimage/config/limits.yaml``."""
    text = (Path(__file__).resolve().parent.parent / "config" / "limits.yaml").read_text("utf-8")
    raw = yaml.safe_load(text)
    if not isinstance(raw, dict):
        raise MockError("fleetimage/config/limits.yaml: expected a mapping of action -> limits")
    limits: dict[str, tuple[float, float]] = {}
    for action, entry in raw.items():
        try:
            limits[str(action)] = (float(entry["burst"]), float(entry["rate_per_s"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise MockError(f"fleetimage/config/limits.yaml: {action}: {exc}") from None
    return limits


class TokenBucket:
    """One bucket. ``period_s`` 0: continuous refill at ``rate`` tokens per second; > 0:
    ``rate * period_s`` tokens at once every ``period_s`` (ticks counted from creation)."""

    __slots__ = ("burst", "last", "period", "rate", "tokens")

    def __init__(
        self, burst: float, rate: float, tokens: float, now: float, period_s: float = 0.0
    ) -> None:
        self.burst = burst
        self.rate = rate
        self.tokens = tokens
        self.last = now
        self.period = period_s

    def try_take(self, now: float) -> bool:
        """Take one token if there is one; refill lazily from the elapsed time."""
        if self.period > 0:
            ticks = int((now - self.last) / self.period) if now > self.last else 0
            tokens = self.tokens
            if ticks:
                tokens += ticks * self.period * self.rate
                self.last += ticks * self.period  # the next tick stays on the grid
        else:
            tokens = self.tokens + (now - self.last) * self.rate
            self.last = now
        if tokens > self.burst:
            tokens = self.burst
        if tokens >= 1.0 - 1e-9:
            self.tokens = tokens - 1.0
            return True
        self.tokens = tokens
        return False


class Buckets:
    """One lazily-created :class:`TokenBucket` per (account, region, action)."""

    def __init__(self, config: MockConfig) -> None:
        self.enabled = config.throttling
        limits: Mapping[str, tuple[float, float]] = (
            config.limits if config.limits is not None else load_default_limits()
        )
        keep = 1.0 - config.neighbour_load
        # action -> (burst, effective refill rate per wall second, initial tokens)
        self._shape = {
            action: (burst, rate * config.time_scale * keep, burst * keep)
            for action, (burst, rate) in limits.items()
        }
        # per_second: whole AWS seconds, i.e. 1 / time_scale wall seconds.
        self._period = 1.0 / config.time_scale if config.refill == "per_second" else 0.0
        self._buckets: dict[tuple[str, str, str], TokenBucket] = {}
        # (account, region, action) -> [(monotonic, passed)] for the actions in WATCHED
        self.decisions: dict[tuple[str, str, str], list[tuple[float, bool]]] = {}

    def limited(self, action: str) -> bool:
        return self.enabled and action in self._shape

    def shape(self, action: str) -> tuple[float, float] | None:
        """``(burst, refill per wall second)`` of ``action``'s buckets as enforced (time scale
        and neighbour load applied); None when the action is not limited."""
        shape = self._shape.get(action) if self.enabled else None
        return None if shape is None else (shape[0], shape[1])

    def try_take(self, account: str, region: str, action: str, now: float) -> bool:
        """True when the request may proceed (unlimited actions always may)."""
        if not self.enabled:
            return True
        key = (account, region, action)
        bucket = self._buckets.get(key)
        if bucket is None:
            shape = self._shape.get(action)
            if shape is None:
                return True
            burst, rate, initial = shape
            bucket = self._buckets[key] = TokenBucket(burst, rate, initial, now, self._period)
        passed = bucket.try_take(now)
        if action in WATCHED:
            self.decisions.setdefault(key, []).append((now, passed))
        return passed

    def reset(self) -> None:
        self._buckets.clear()
        self.decisions.clear()
