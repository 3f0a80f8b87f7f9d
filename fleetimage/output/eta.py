"""When will the fleet be done? An estimate from the plan's bound and the observed rates.

Per lane, the time left is the time to send the CreateImage requests not sent yet, then the
time AWS takes to make the last image available:

- **sending**: the larger of the bucket's bound and the observed request rate. The bound is
  the CreateImage token bucket's (``burst`` at once, then ``rate_per_s``; what
  :meth:`fleetimage.engine.plan.Plan.minimum_seconds` uses), with the tokens the lane has
  left after ``elapsed`` seconds and ``sent`` requests; the observed rate is lower when
  another tool drains the same bucket or AWS throttles.
- **pending**: the median pending time observed so far (Created → available or failed);
  once every request is sent, what is left of it for the youngest image, or the pending
  images over the observed completion rate, whichever is longer.

Lanes run side by side: the fleet's ETA is its slowest lane's. Before any image has
completed the pending time is unknown: the ETA is then ``None`` and the display says
"≥ <sending time> + pending".
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LaneClock", "lane_eta", "sending_seconds"]


@dataclass(frozen=True, slots=True)
class LaneClock:
    """What one lane's ETA is computed from (seconds, counts, rates per second)."""

    unsent: int  # imageable targets with no CreateImage sent yet
    pending: int  # created (or being requested), not yet available or failed
    sent: int  # CreateImage requests sent so far
    elapsed_s: float
    create_rate: float  # observed CreateImage requests/s (recent window)
    done_rate: float  # observed completions/s (recent window)
    bucket: tuple[float, float] | None  # CreateImage (burst, rate_per_s), if known
    pending_s: float | None  # median observed pending time, None before the first one
    youngest_age_s: float | None  # seconds since the latest image was created


def sending_seconds(clock: LaneClock) -> float | None:
    """Seconds to send the remaining requests (None: no bound and no rate observed yet)."""
    if clock.unsent <= 0:
        return 0.0
    estimates = []
    if clock.bucket is not None and clock.bucket[1] > 0:
        burst, rate = clock.bucket
        tokens = max(0.0, min(burst, burst + rate * clock.elapsed_s - clock.sent))
        estimates.append(max(0.0, clock.unsent - tokens) / rate)
    if clock.create_rate > 0:
        estimates.append(clock.unsent / clock.create_rate)
    return max(estimates) if estimates else None


def lane_eta(clock: LaneClock) -> tuple[float | None, float | None]:
    """``(eta_s, sending_s)``: seconds until the lane is done (None: not known yet) and the
    part of it that sending takes (None if unknown)."""
    sending = sending_seconds(clock)
    if clock.unsent <= 0 and clock.pending <= 0:
        return 0.0, 0.0
    if sending is None or clock.pending_s is None:
        return None, sending
    if clock.unsent > 0:
        return sending + clock.pending_s, sending
    tail = clock.pending_s - (clock.youngest_age_s or 0.0)
    if clock.done_rate > 0:
        tail = max(tail, clock.pending / clock.done_rate)
    return max(tail, 0.0), sending
