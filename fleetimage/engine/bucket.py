"""The adaptive client-side token bucket: one per (account, region, action), in a lane's
:class:`~fleetimage.engine.limiter.Limiter`.

EC2 throttles with a token bucket per account, region and action: it starts full (``burst``)
and refills at ``rate_per_s`` up to ``burst`` -- in whole steps, a second's tokens at once
every second (AWS: "refills every second"), at a phase the client cannot see.
:class:`AdaptiveTokenBucket` is our copy of it:

* **Never faster than the server.** Tokens are refilled from the monotonic clock (never by
  counting sleeps) and capped at ``burst``. Alone in the account, we are never throttled.
* **Stepped refill** (``refill_period_s``: the server's step, 1 s for AWS; 0 for a server
  that refills continuously). A continuous refill runs ahead of a stepped one by up to a
  whole step, and the step's phase is unknown. So the refill is credited as the server adds
  it, a period's tokens at once, the first step one period after the server's level was last
  known (a throttle: empty; our bucket in its top step, ``ceiling * refill_period_s`` below
  ``burst``: possibly full, the server's next step possibly capped away) and one every period
  after. The server has had a step of its own by then, whatever its phase, and one more
  every period. Refill fills to one step below ``burst``; the last step is added after a
  whole period without a take, when the server's bucket must be full. That keeps us below
  the server's bucket for any phase, each step less than one period after the server's own
  (``1 - phase``; on the mock, one answer's latency), each time the bucket runs dry from
  full or is throttled, never per request.
* **Only what has arrived is refilled.** A step also waits until the requests heard of a
  period before it cover all the refill credited so far (:mod:`fleetimage.engine.heard`).
* **Never much slower.** A waiter sleeps exactly until its token is due; a late wake-up
  loses nothing because the refill keeps running on the clock, so a lane running flat out
  gets the server's rate minus scheduler noise.
* **Adaptive.** Other tools drain the same server bucket. ``RequestLimitExceeded`` means the
  server's bucket is empty: :meth:`~AdaptiveTokenBucket.on_throttle` empties ours and cuts the
  rate multiplicatively (AIMD); :meth:`~AdaptiveTokenBucket.on_success` raises it back
  additively, per second of successful traffic, up to the configured ceiling.
* **Probing slowly where it hurt.** A cut within ``probe_memory_s`` of the last one means the
  shortage is lasting; above the rate such a cut left it at, the rate then climbs at only
  ``probe_fraction`` of the recovery speed, for ``probe_memory_s`` after the cut. A server
  bucket smaller than ours hides our excess behind its burst, so a full-speed climb
  overshoots far past its rate before the next throttle (at 2/s against our 5/s the rate
  swung 2.5 -> 3.3/s every ~5 s; small-buckets had 171 throttled CreateImage calls, 83-88
  climbing slowly, at the same makespan). A one-off cut (a random throttle confirmed by
  chance, a neighbour's burst) is undone at full speed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import anyio

from fleetimage.engine.heard import Heard

__all__ = ["AdaptiveTokenBucket"]

# Float slack when comparing token counts: refills are sums of float products, and a waiter
# that wakes at exactly the computed instant must find its token rather than sleep ~0 s again.
_EPS = 1e-9
# A refill step is credited this long after its instant: our steps and the server's are sums
# of periods, and float rounding must not put ours a hair before one it lands on exactly.
_STEP_SLACK_S = 1e-6
# Default floor, as a fraction of the ceiling: low enough to yield to a noisy neighbour,
# high enough that a lane keeps moving (5/s CreateImage -> 0.5/s).
DEFAULT_MIN_FRACTION = 0.1
# Default additive recovery, as a fraction of the ceiling per second of successes: one 30 % cut
# is undone in ~6 s, the floor is left in ~18 s. The slack a cut leaves in the server's bucket
# (~ (0.3 * rate)^2 / (2 * recovery) tokens, ~4.5 for CreateImage) then absorbs network jitter.
DEFAULT_RECOVERY_FRACTION_PER_S = 0.05
# Above the rate a repeated cut left, the climb goes at this share of the recovery speed ...
DEFAULT_PROBE_FRACTION = 0.1
# ... for this long after that cut (seconds): then the server may have changed (a neighbour
# gone), and what the cut said is forgotten.
DEFAULT_PROBE_MEMORY_S = 60.0
# A success credits at most this much time toward recovery: recovery follows seconds of
# successful traffic, not seconds of idleness between two sparse calls.
# These three are the defaults for real AWS; a time-scaled run passes them divided by its
# time scale (FleetConfig.limiter and FleetConfig.bucket_options), as every other time.
_MAX_CREDIT_S = 1.0
# Minimum coalescing window for throttles after a cut (seconds); see on_throttle.
_MIN_COALESCE_S = 1.0
# Confirming a throttle: the moving share of throttled answers weighs each answer 1/20 until
# a cut, 1/10 while a cut is remembered; or this many throttles in a row. Random throttles on
# 5 % of calls then cut ~5 % of 130-answer lanes, not ~50 % (1/10 alone), each false cut
# costing seconds of rate; a real shortage, whose throttles come in runs, is confirmed as fast.
_SHARE_WEIGHT_FIRST = 0.05
_SHARE_WEIGHT_AGAIN = 0.1
_CONFIRM_RUN = 3


class AdaptiveTokenBucket:
    """An async token bucket whose rate adapts to throttling; FIFO-fair and cancellation-safe.

    ``clock`` must be monotonic and in seconds; it is injectable so tests can drive the
    accounting (:meth:`try_acquire`, :meth:`on_throttle`, :meth:`on_success`) with a fake
    clock. :meth:`acquire` sleeps in real time, so use it with the real clock.
    ``refill_period_s`` is the server's refill step (0, the default here: continuous; the
    engine passes ``FleetConfig.limiter.refill_period_s``, AWS's second, time-scaled).
    """

    def __init__(
        self,
        *,
        burst: int,
        rate_per_s: float,
        min_rate_per_s: float | None = None,
        decrease_factor: float = 0.7,
        recovery_per_s: float | None = None,
        coalesce_window_s: float | None = None,
        confirm_share: float = 0.0,
        min_coalesce_s: float = _MIN_COALESCE_S,
        max_credit_s: float = _MAX_CREDIT_S,
        recovery_fraction_per_s: float = DEFAULT_RECOVERY_FRACTION_PER_S,
        probe_fraction: float = DEFAULT_PROBE_FRACTION,
        probe_memory_s: float = DEFAULT_PROBE_MEMORY_S,
        refill_period_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        if not (rate_per_s > 0 and math.isfinite(rate_per_s)):
            raise ValueError(f"rate_per_s must be a finite number > 0, got {rate_per_s}")
        if min_rate_per_s is None:
            min_rate_per_s = rate_per_s * DEFAULT_MIN_FRACTION
        if not 0 < min_rate_per_s <= rate_per_s:
            raise ValueError(f"min_rate_per_s must be in (0, {rate_per_s}], got {min_rate_per_s}")
        if not 0 < decrease_factor < 1:
            raise ValueError(f"decrease_factor must be in (0, 1), got {decrease_factor}")
        if recovery_per_s is None:
            recovery_per_s = rate_per_s * recovery_fraction_per_s
        if recovery_per_s <= 0:
            raise ValueError(f"recovery_per_s must be > 0, got {recovery_per_s}")
        if not 0 <= confirm_share < 1:
            raise ValueError(f"confirm_share must be in [0, 1), got {confirm_share}")
        if not 0 < probe_fraction <= 1:
            raise ValueError(f"probe_fraction must be in (0, 1], got {probe_fraction}")
        if probe_memory_s < 0:
            raise ValueError(f"probe_memory_s must be >= 0, got {probe_memory_s}")
        if coalesce_window_s is not None and coalesce_window_s < 0:
            raise ValueError(f"coalesce_window_s must be >= 0, got {coalesce_window_s}")
        self._burst = burst
        self._ceiling = float(rate_per_s)
        self._min_rate = float(min_rate_per_s)
        self._factor = decrease_factor
        self._recovery = float(recovery_per_s)
        self._coalesce = coalesce_window_s
        self._confirm = confirm_share
        self._probe_fraction = probe_fraction
        self._probe_memory = probe_memory_s
        self._probe_from = self._ceiling  # the rate the last cut left (none yet: the ceiling)
        if min_coalesce_s < 0 or max_credit_s <= 0:
            raise ValueError("min_coalesce_s must be >= 0 and max_credit_s > 0")
        if not (refill_period_s >= 0 and math.isfinite(refill_period_s)):
            raise ValueError(f"refill_period_s must be a finite number >= 0, got {refill_period_s}")
        self._period = float(refill_period_s)
        # The most one server step adds. A burst that holds less than two steps (a custom
        # limit: burst 1 at 4/s) cannot be a per-period bucket of that rate, and holding its
        # refill back would cost it most of its rate: such a bucket refills continuously.
        # (_EPS: a rate of burst / (2 * period) exactly holds two steps, whatever the rounding.)
        if 2.0 * self._ceiling * self._period > burst + _EPS:
            self._period = 0.0
        self._step = self._ceiling * self._period
        self._quiet_since: float | None = None  # since when the level sat in the top step
        self._min_coalesce = min_coalesce_s
        self._max_credit = max_credit_s
        self._throttle_share = 0.0  # moving share of throttled answers (EWMA over answers)
        self._throttle_run = 0  # throttles since the last success
        self._clock = clock
        self._rate = self._ceiling
        self._tokens = float(burst)  # AWS's bucket starts full, so ours does
        # When _tokens was last brought up to date, or, while it is in the future, the moment
        # from which refill is credited again (one server period after its level was known).
        start = clock()
        self._stamp = start + self._period
        self._last_cut: float | None = None
        self._cut_window = 0.0
        self._last_credit = start  # recovery is credited from here
        self._heard = Heard()  # what the server's cap may have taken: see _ready
        self._lock = anyio.Lock()  # FIFO: waiters are served in arrival order

    # --- read-only state ---------------------------------------------------------------

    @property
    def burst(self) -> int:
        return self._burst

    @property
    def ceiling_per_s(self) -> float:
        """The configured rate: the most the bucket ever allows."""
        return self._ceiling

    @property
    def min_rate_per_s(self) -> float:
        return self._min_rate

    @property
    def rate_per_s(self) -> float:
        """The current (adapted) refill rate."""
        return self._rate

    @property
    def refill_period_s(self) -> float:
        """The server's refill step assumed (0: continuous); see the module docstring."""
        return self._period

    @property
    def tokens(self) -> float:
        """Tokens available now (fractional)."""
        self._refill(self._clock())
        return self._tokens

    def now(self) -> float:
        """The bucket's clock; pass a value taken before sending as ``on_throttle(sent_at=)``."""
        return self._clock()

    # --- accounting (synchronous, clock-driven) ------------------------------------------

    def _refill(self, now: float) -> None:
        top = self._burst - self._step  # refill credits up to here; see the module docstring
        if self._period > 0.0:
            self._step_refill(now, top)
        elif now > self._stamp:  # a clock that stands still or steps back adds nothing
            if self._tokens < top:
                reached = self._tokens + (now - self._stamp) * self._rate
                if reached >= top:  # the instant it got there starts the quiet period
                    self._quiet_since = self._stamp + (top - self._tokens) / self._rate
                self._tokens = min(top, reached)
            self._stamp = now
            self._heard.forget(now)  # no step waits for them (only the quiet period does)
        if self._tokens >= top:
            # Within one server step of full: the server's next step may be capped away, so
            # credit nothing until a period after now; a whole quiet period means it is full
            # (no take, and no request of ours on the way or arriving: each would take from it).
            if self._quiet_since is None:
                self._quiet_since = now
            quiet = now - max(self._quiet_since, self._heard.last)
            if quiet >= self._period - _EPS and not self._heard.in_flight:
                self._heard.credit(self._burst - self._tokens)
                self._tokens = float(self._burst)
                self._heard.known(0.0)  # full: what it capped away before is behind us
            self._hold_refill(now)

    def _step_refill(self, now: float, top: float) -> None:
        """A period's refill at once at ``_stamp`` (the next step, or later: :meth:`_ready`) and
        every period after it, as the server adds its own: steps due by ``now`` are credited."""
        while now >= self._stamp + _STEP_SLACK_S:
            if self._tokens >= top:  # nothing to credit: the steps pass
                steps = math.floor((now - self._stamp - _STEP_SLACK_S) / self._period) + 1
                self._stamp += steps * self._period
                break
            amount = min(self._rate * self._period, top - self._tokens)
            ready = self._ready(amount)
            if ready is None:  # the request it needs is not heard of yet
                return
            if ready > self._stamp:
                self._stamp = ready  # and every later step a period after it
                continue
            self._tokens += amount
            self._heard.credit(amount)
            if self._tokens >= top - _EPS:  # the step that got it there starts the quiet period
                self._tokens = top
                self._quiet_since = self._stamp
            self._stamp += self._period
        self._heard.forget(self._stamp - self._period)  # they can delay no step

    def _ready(self, amount: float) -> float | None:
        """When a step of ``amount`` may come: ``_stamp``, or a period after the request that
        covers it was heard of (None: not yet)."""
        heard = self._heard.covering(amount)
        return None if heard is None else max(self._stamp, heard + self._period)

    def _steps_to(self, level: float) -> int:
        """Steps (at least one) that bring the bucket from its level up to ``level``."""
        return max(1, math.ceil((level - self._tokens) / (self._rate * self._period) - _EPS))

    def _hold_refill(self, now: float) -> None:
        """The server's level is known at ``now``: credit refill again one period later."""
        self._stamp = max(self._stamp, now + self._period)
        self._heard.forget(self._stamp - self._period)  # they can delay no step

    def _take(self, now: float) -> float:
        """Take a token at ``now`` and return 0.0, or return the seconds until one is due."""
        self._refill(now)
        if self._tokens >= 1.0 - _EPS:
            self._tokens -= 1.0
            self._heard.took()
            # A take starts the quiet period anew (if the level is still in the top step).
            self._quiet_since = now if self._tokens >= self._burst - self._step else None
            return 0.0
        if self._period > 0.0:  # the step that brings the missing share of a token
            top = self._burst - self._step
            ready = self._ready(min(self._rate * self._period, top - self._tokens))
            if ready is None:  # the answer it needs comes a period before it, at the earliest
                return max(self._period, self._stamp + _STEP_SLACK_S - now)
            due = ready + _STEP_SLACK_S + (self._steps_to(1.0) - 1) * self._period
            # Never 0 (that means "taken"): float rounding may leave the due step a hair
            # uncredited at its own instant; it is credited at the next call.
            return max(due - now, _STEP_SLACK_S)
        return max(0.0, self._stamp - now) + (1.0 - self._tokens) / self._rate

    def _set_rate(self, now: float, rate: float) -> None:
        self._refill(now)  # tokens earned so far were earned at the old rate
        self._rate = min(self._ceiling, max(self._min_rate, rate))

    # --- public API ----------------------------------------------------------------------

    def try_acquire(self) -> bool:
        """Take a token if one is available now and nobody is queued; never waits."""
        if self._lock.locked():  # queued waiters come first (FIFO)
            return False
        return self._take(self._clock()) == 0.0

    async def acquire(self) -> None:
        """Wait for a token. FIFO across waiters; a cancelled waiter consumes nothing."""
        async with self._lock:
            while True:
                # Recomputed after every sleep: a throttle may have emptied the bucket or cut
                # the rate meanwhile, and an early wake-up just sleeps for the rest.
                wait_s = self._take(self._clock())
                if wait_s == 0.0:
                    return
                await anyio.sleep(wait_s)

    def on_throttle(self, *, sent_at: float | None = None) -> float:
        """The server answered RequestLimitExceeded: empty the bucket, cut the rate; return it.

        With ``confirm_share`` > 0, a throttle counts only once the moving share of throttled
        answers (over roughly the last 20, 10 after a cut) reaches it, or three come in a row:
        isolated throttles are retried without touching the bucket. Throttles within
        ``coalesce_window_s`` (default ``max(min_coalesce_s, 1/rate)``) of the last cut, or
        from requests sent before it (``sent_at``, from :meth:`now`), are the same event seen
        by requests already in flight: they count as one cut, else a burst of concurrent
        throttles would collapse the rate to the floor.
        """
        now = self._clock()
        self._heard.add(now)
        self._refill(now)
        self._throttle_share += self._share_weight(now) * (1.0 - self._throttle_share)
        self._throttle_run += 1
        if self._throttle_share < self._confirm and self._throttle_run < _CONFIRM_RUN:
            # A throttle among successes (a transient hiccup, a neighbour's one-off burst) is
            # no evidence yet: emptying our bucket would waste up to a burst, and a cut slows
            # the lane for seconds. It is retried through acquire() as usual.
            return self._rate
        stale = sent_at is not None and self._last_cut is not None and sent_at < self._last_cut
        if not stale:
            # Fresh news: the server's bucket is empty now, so ours must be too, and the
            # server's next refill step may be a whole period away.
            self._tokens = min(self._tokens, 0.0)
            self._quiet_since = None
            self._hold_refill(now)
            self._heard.known(self._burst - self._step)
        recent = self._last_cut is not None and now - self._last_cut < self._cut_window
        if not (stale or recent):
            self._cut_window = (
                self._coalesce
                if self._coalesce is not None
                else max(self._min_coalesce, 1.0 / self._rate)
            )
            # A shortage seen again within the memory is the server's rate, not a one-off
            # (a random throttle, a neighbour's burst): from now, probe slowly above it.
            again = self._remembers_cut(now)
            self._set_rate(now, self._rate * self._factor)
            self._probe_from = self._rate if again else self._ceiling
            self._last_cut = now
            self._last_credit = now
        return self._rate

    def on_success(self) -> None:
        """A request went through: move the rate toward the ceiling (additive increase)."""
        now = self._clock()
        self._heard.add(now)
        self._throttle_share -= self._share_weight(now) * self._throttle_share
        self._throttle_run = 0
        if self._last_cut is not None and now - self._last_cut < self._cut_window:
            # Successes right after a cut come from requests sent before it: no signal yet.
            self._last_credit = now
            return
        credit = min(max(0.0, now - self._last_credit), self._max_credit)
        self._last_credit = now
        if self._rate < self._ceiling and credit > 0:
            step = self._recovery * credit
            if self._rate >= self._probe_from and self._remembers_cut(now):
                step *= self._probe_fraction
            self._set_rate(now, self._rate + step)

    def on_returned(self) -> None:
        """A token's request ended without news of the server's rate (an error, a timeout, or
        never sent): it is heard of all the same, so the refill that waits for it goes on."""
        self._heard.add(self._clock())

    def _share_weight(self, now: float) -> float:
        return _SHARE_WEIGHT_AGAIN if self._remembers_cut(now) else _SHARE_WEIGHT_FIRST

    def _remembers_cut(self, now: float) -> bool:
        """A cut happened less than ``probe_memory_s`` ago."""
        return self._last_cut is not None and now - self._last_cut < self._probe_memory

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(burst={self._burst}, rate_per_s={self._rate:.3g}, "
            f"ceiling_per_s={self._ceiling:.3g})"
        )
