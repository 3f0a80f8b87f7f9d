"""The lower bound on a run's makespan that the token buckets and pending times allow.

Per lane (account, region), the CreateImage bucket starts with ``burst`` tokens and refills at
``rate`` per second, so the k-th image (1-based) cannot be created before
``t_k = max(0, (k - burst) / rate)``; it cannot be available before ``t_k + p_k``, where
``p_k`` is the pending time the mock actually gave the k-th image created in that lane. The
lane's bound is ``max_k (t_k + p_k)`` (with equal pending times this is "burst, then refill,
plus the pending time of the last image"); the slowest lane decides. With a noisy neighbour
the bucket holds ``burst * (1 - load)`` and refills at ``rate * (1 - load)``: the capacity left.
Without buckets the bound is the longest pending time. Times are wall seconds under the
scenario's time scale (multiply by it for AWS seconds).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["lane_bound", "run_bound"]


def lane_bound(pending_s: Iterable[float], *, burst: float, rate_per_s: float) -> float:
    """``max_k (max(0, (k - burst) / rate) + p_k)`` over the lane's images in creation order."""
    best = 0.0
    for k, p in enumerate(pending_s, start=1):
        t = max(0.0, (k - burst) / rate_per_s) if rate_per_s > 0 else 0.0
        best = max(best, t + p)
    return best


def run_bound(
    lanes: Mapping[str, Mapping[str, Any]],
    *,
    burst: float,
    rate_per_s: float,
    throttling: bool,
    neighbour_load: float,
) -> tuple[float, str]:
    """(bound in wall seconds, the lane that decides it) from a mock snapshot's lanes.

    ``rate_per_s`` is the mock's scaled (wall) refill rate of CreateImage.
    """
    keep = 1.0 - neighbour_load
    worst, which = 0.0, ""
    for key, lane in lanes.items():
        pending = [p for _, p, _ in lane["images"]]
        if throttling:
            b = lane_bound(pending, burst=burst * keep, rate_per_s=rate_per_s * keep)
        else:
            b = max(pending, default=0.0)
        if b > worst:
            worst, which = b, key
    return worst, which
