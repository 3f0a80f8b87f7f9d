"""The lower bound on a run's makespan that the token buckets and pending times allow.

It is computed from the fleet alone, before any contender runs, so it is the same for every
contender and every repetition. Per lane (account, region), the instances are taken in the
order DescribeInstances returns them; the k-th (1-based) is created at the earliest instant
the server's CreateImage bucket allows — it starts with ``burst`` tokens and gains ``rate``
per second, either continuously or (AWS's documented behaviour) all at once every whole
second:

* continuous:  ``t_k = max(0, (k - burst) / rate)``
* per second:  ``t_k = ceil((k - burst) / rate)`` whole seconds (0 while ``k <= burst``;
  computed tick by tick, as a tick never fills the bucket past its burst)

and it cannot be available before ``t_k + p_k``, ``p_k`` being the pending time the mock
gives that instance's image (a pure function of seed, account, region and instance id). The
lane's bound is ``max_k (t_k + p_k)``; the slowest lane decides. With a noisy neighbour the
bucket starts with ``burst * (1 - load)`` and gains ``rate * (1 - load)``: the capacity left.
Without buckets the bound is the longest pending time. No client knows the pending times in
advance, so no creation order beats this one in expectation; a lucky order can beat it by a
little on one draw, which the quick test's 1 % tolerance covers.

Everything here is in AWS seconds (divide by the time scale for wall seconds), measured from
the lane's first CreateImage: a contender's start-up (clients, STS, discovery) comes on top,
which is why the harness publishes ``efficiency`` (from the start of the run) and
``efficiency_imaging`` (from its first CreateImage).

Prune (:func:`deletion_bound`): the same token arithmetic on the DeregisterImage bucket, with
no pending time: a lane's deletion phase cannot end before its last token arrives.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["copy_bound", "creation_times", "deletion_bound", "lane_bound", "run_bound"]

_EPS = 1e-9  # the mock takes a token at >= 1 - 1e-9: float sums of fractional refills


def creation_times(n: int, *, burst: float, rate_per_s: float, refill: str) -> list[float]:
    """The earliest instant (s from the first request) of each of ``n`` creations."""
    if refill not in ("continuous", "per_second"):
        raise ValueError(f"refill must be continuous or per_second, got {refill!r}")
    if rate_per_s <= 0:
        raise ValueError(f"rate_per_s must be > 0, got {rate_per_s}")
    if refill == "continuous":
        # A greedy client takes each token the instant it is whole: the cap never binds.
        return [max(0.0, (k - burst) / rate_per_s) for k in range(1, n + 1)]
    # Per second: tick by tick, because a tick cannot lift the bucket above its burst (with a
    # burst below rate + 1 a fraction is lost at each tick; with AWS's buckets never).
    times, tokens, tick = [], float(burst), 0
    for _ in range(n):
        while tokens < 1.0 - _EPS:
            tick += 1
            tokens = min(float(burst), tokens + rate_per_s)
        tokens -= 1.0
        times.append(float(tick))
    return times


def lane_bound(
    pending_s: Iterable[float], *, burst: float, rate_per_s: float, refill: str = "continuous"
) -> float:
    """``max_k (t_k + p_k)`` over the lane's instances in DescribeInstances order."""
    pending = list(pending_s)
    times = creation_times(len(pending), burst=burst, rate_per_s=rate_per_s, refill=refill)
    return max((t + p for t, p in zip(times, pending, strict=True)), default=0.0)


def run_bound(
    lanes: Mapping[str, Mapping[str, Any]],
    *,
    burst: float,
    rate_per_s: float,
    refill: str,
    throttling: bool,
    neighbour_load: float,
) -> tuple[float, str]:
    """(bound in AWS seconds, the lane that decides it).

    ``lanes`` maps a lane's name to ``{"pending_aws_s": [...]}``, its imageable instances'
    pending times in DescribeInstances order; ``burst``/``rate_per_s`` are the server's
    CreateImage bucket in AWS seconds.
    """
    keep = 1.0 - neighbour_load
    worst, which = 0.0, ""
    for key, lane in lanes.items():
        pending = lane["pending_aws_s"]
        if throttling:
            b = lane_bound(pending, burst=burst * keep, rate_per_s=rate_per_s * keep, refill=refill)
        else:
            b = max(pending, default=0.0)
        if b > worst:
            worst, which = b, key
    return worst, which


def deletion_bound(
    per_lane: Mapping[str, int], *, burst: float, rate_per_s: float, refill: str
) -> tuple[float, str]:
    """(AWS s, deciding lane): the shortest deletion phase of a prune, from its first
    DeregisterImage to its last, when each lane deletes ``per_lane[lane]`` images through its
    own DeregisterImage bucket (its burst at once, then ``rate_per_s``). No wait follows a
    deletion, so a lane's phase is its last token's instant."""
    worst, which = 0.0, ""
    for key, n in per_lane.items():
        times = creation_times(n, burst=burst, rate_per_s=rate_per_s, refill=refill)
        if times and times[-1] >= worst:
            worst, which = times[-1], key
    return worst, which


def copy_bound(
    pending_s: Iterable[float],
    *,
    burst: float,
    rate_per_s: float,
    max_concurrent: int,
    refill: str = "continuous",
) -> float:
    """The copy phase's bound: an ideal client copying every (already available) image, in
    the given order, from its first CopyImage until its last copy is available (AWS s).

    Copy ``k`` starts at the earliest instant when (a) fewer than ``max_concurrent`` of the
    earlier copies are still pending (a destination's concurrent-copy cap; a copy frees its
    slot the instant it is available) and (b) the server's CopyImage bucket holds a token —
    it starts with ``burst`` and refills ``rate_per_s`` continuously or per whole second, and
    keeps filling (up to ``burst``) while the cap holds copies back. It is available at
    ``start_k + p_k``; the bound is the latest of those. No client knows the pending times
    in advance, so the order is the one the images are listed in.
    """
    if refill not in ("continuous", "per_second"):
        raise ValueError(f"refill must be continuous or per_second, got {refill!r}")
    if rate_per_s <= 0 or max_concurrent < 1:
        raise ValueError("rate_per_s must be > 0 and max_concurrent >= 1")
    tokens, last = float(burst), 0.0  # per_second: ``last`` is the last whole tick
    running: list[float] = []  # when each pending copy becomes available
    end = previous = 0.0
    for p in pending_s:
        t = previous  # in order: never before the copy listed before it
        if len(running) >= max_concurrent:
            t = max(t, heapq.heappop(running))
        # The bucket at time t (refilled since ``last``), then wait for a whole token.
        if refill == "continuous":
            tokens = min(float(burst), tokens + (t - last) * rate_per_s) if t > last else tokens
            last = max(last, t)
            if tokens < 1.0 - _EPS:
                wait = (1.0 - tokens) / rate_per_s
                last += wait
                tokens = 1.0
            start = last
        else:
            tick = math.floor(t + _EPS)
            if tick > last:
                tokens = min(float(burst), tokens + (tick - last) * rate_per_s)
                last = float(tick)
            while tokens < 1.0 - _EPS:
                last += 1.0
                tokens = min(float(burst), tokens + rate_per_s)
            start = max(t, last)
        tokens -= 1.0
        previous = start
        heapq.heappush(running, start + p)
        end = max(end, start + p)
    return end
