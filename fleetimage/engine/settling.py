"""When a lane's waiter polls: learned from the lane's own pending times, within a budget.

A fixed poll interval sees an image up to one interval late (15 s against pending times of
tens of seconds to hours) and spends as many calls while nothing can have settled as while
everything settles. Here each lane learns how long its images stay pending (created → seen
available), fits a log-normal to the quantiles of what it saw (median, 16th and 84th
percentiles: robust to the odd outlier; Kaplan-Meier's, so that the images still pending
count too) and polls when the images it watches are expected
to settle:

* **body**: once the expected number of images that settled since the last poll reaches
  ``remaining / spendable polls``, so the budget's polls are spread over the settlements;
* **tail**: once every watched image has settled with probability ``tail_probability`` —
  the last image of a lane decides the lane's makespan, so a share of the budget
  (``tail_share``, at least 2 polls) is kept for it;

never sooner than ``floor_s`` after the last poll, never later than ``ceiling_s`` (counted
from the last poll, or skip: planning again, as a nudge does, never pushes a poll further
out). The budget is ``polls_per_image`` DescribeImages calls (a poll of more than one chunk
of images costs a call per chunk) for every image registered so far, less
``PAST_BUDGET_SHARE``. That 20 % is never planned: it pays for the polls the rules below make
past the budget (the ceiling's, a last straggler's), which otherwise came on top of a budget
spent whole (the benchmarks' noisy-neighbour: 0.066 polls per image, small-buckets 0.087).

**The ceiling's polls are paid first.** Whatever the body does, the lane polls at least once
a ceiling until its watched images have settled; the body spends only what those polls
(until every watched image is expected settled, with ``tail_probability``) leave. A lane of
~125 images on 30 s pending times earns ~6 polls and lives ~5 ceilings: it polls about at
the ceiling, where the body would have spent its budget on ~10 s gaps and then gone over it
for the tail (a model of fleet-1k's 8 lanes: 0.060 → 0.051 polls per image, the run's last
image seen as soon). A lane of thousands earns far more than its ceilings: there the body
decides as before.

Past the budget, the body rule is off but the tail rule still times the poll, at the ceiling
at the latest: the ceiling polls a lane over budget must make anyway then land when its last
images are expected to have settled, not a blind interval after the last poll (a lane of
~100 images spends its budget on ~5 ceiling polls, and its last image was seen ~7 s late on
30 s pending times). Over budget, the gap between polls is at least
``OVER_BUDGET_AGE_SHARE`` of the age of the youngest image watched: a last straggler far
past the learned times (the log-normal says it must settle any moment) is not polled every
few seconds, and is still seen within a small share of its pending time. Once that share
passes the ceiling, the ceiling holds, as it always did.
Until the lane has seen one image settle, it polls at the ceiling.

The lanes whose images are **the last the run waits for** (``next_delay(last=True)``: the
last two lanes of the process, runstate.LAST_LANES) decide the run's makespan by when they
see their last images: there the tail rule polls once all watched images have settled with
probability ``LAST_TAIL_PROBABILITY``, over budget at least ``LAST_AGE_SHARE`` of the
youngest's age apart. A few polls more in those lanes (~4-6 on 30 s pending times) see the
run's last image ~0.8 s after it settles instead of ~3 s (a 5 % gap after a poll at the
median).

**One budget per process** (:class:`PollBudget`, the run state's). Every lane spends
``1 - LAST_LANES_SHARE`` of what its own images earned; the run's last lanes spend what the
whole process has left. Only the last lanes' polls move the run's end, and they come when
the others are done: a model of fleet-10k's 32 lanes of 312 spends 0.044 polls per image
instead of 0.054, its last image seen 0.5 s after it settles instead of 0.9 s (the other
images 6.7 s instead of 3.3 s, within the ceiling).

A lane *still registering images* skips its polls while its credits do not cover the poll
and the polls it keeps for its last images (its reserve), up to ``MAX_SKIPPED_CEILINGS`` in
a row (:meth:`PollSchedule.skip`): its last image, which decides its makespan, is not even
created yet, and each new image earns the budget back. Without this, a lane whose creations
are spread thin (a starved event loop, a slow bucket) polls every ceiling for its whole
creation phase: 0.15 polls per image instead of 0.05 over 100 lanes; and a lane of ~115
images creating for ~48 s (a server bucket of 20, then 2 a second) spent its budget on
ceiling polls before anything could settle. Once the lane stops registering, the ceiling
holds again. The price: while a lane creates, an image may be seen up to 5 ceilings late
(a model of fleet-10k's 32 lanes: ~10.8 s after it settles on average instead of ~6.7 s;
the run's last image as soon).

Everything here is pure arithmetic on times the caller passes in (tests drive it with a fake
clock); the waiter (``wait.py``) owns the clock and the calls.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import deque
from collections.abc import Iterable

__all__ = ["PendingTimes", "PollBudget", "PollSchedule"]

_SQRT2 = math.sqrt(2.0)
_NORMAL = statistics.NormalDist()
# A spread guessed until enough samples exist, and the bounds of a fitted one (log space).
_PRIOR_SIGMA = 0.5
_MIN_SIGMA, _MAX_SIGMA = 0.1, 2.0
_MIN_SAMPLES_FOR_SPREAD = 5
# Bisection steps over [floor, ceiling]: the answer is within (ceiling - floor) / 2**8.
_SEARCH_STEPS = 8
# Most groups of ages the search evaluates (see PollSchedule.next_delay).
_MAX_GROUPS = 64
# Ceiling polls a lane over budget may skip in a row while it keeps registering images: an
# image it already watches is seen at most (1 + this) ceilings after the poll before.
MAX_SKIPPED_CEILINGS = 4
# Over budget, the shortest gap between polls, as a share of the youngest image's age.
OVER_BUDGET_AGE_SHARE = 0.05
# The run's last lanes: their tail probability, and their share of the youngest image's age (an
# image stuck far past the learned times still reaches the ceiling, at 50 ceilings of age).
LAST_TAIL_PROBABILITY = 0.1
LAST_AGE_SHARE = 0.02
# The share of every image's polls that its lane leaves to the run's last lanes (when the
# lanes share a PollBudget).
LAST_LANES_SHARE = 0.3
# The share of polls_per_image the schedule leaves unspent: what the polls past the budget
# (the ceiling's, a last straggler's) take, so that a run stays within polls_per_image.
PAST_BUDGET_SHARE = 0.2


class PendingTimes:
    """A lane's recent pending times (seconds), and the log-normal their quantiles imply."""

    def __init__(self, window: int = 256) -> None:
        self._order: deque[float] = deque()
        self._sorted: list[float] = []
        self._window = window

    def __len__(self) -> int:
        return len(self._sorted)

    def observe(self, pending_s: float) -> None:
        """One image's pending time; the oldest beyond ``window`` is forgotten (drift)."""
        value = max(pending_s, 1e-3)
        self._order.append(value)
        bisect.insort(self._sorted, value)
        if len(self._order) > self._window:
            old = self._order.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]

    def quantile(self, q: float) -> float:
        if not self._sorted:
            raise ValueError("no pending time observed yet")
        index = min(len(self._sorted) - 1, max(0, int(q * len(self._sorted))))
        return self._sorted[index]

    def fit(self, still_pending: Iterable[float] = ()) -> tuple[float, float] | None:
        """(mu, sigma) of log(pending time), from the median and the 16th/84th percentiles.

        ``still_pending``: the ages of the images not seen settled yet. Early in a lane only
        its quickest images have settled; learnt alone, they would say pending times are
        short. The quantiles are Kaplan-Meier's, which count a still pending image as "longer
        than its age" (right-censored)."""
        if not self._sorted:
            return None
        events = sorted([(t, 0) for t in self._sorted] + [(a, 1) for a in still_pending])
        at_risk, survival = len(events), 1.0
        quantiles: dict[float, float] = {}
        for t, censored in events:
            if not censored:
                survival *= 1.0 - 1.0 / at_risk
                for q in (0.16, 0.5, 0.84):
                    if q not in quantiles and 1.0 - survival >= q:
                        quantiles[q] = max(t, 1e-3)
            at_risk -= 1
        if 0.5 not in quantiles:  # not half settled yet: the median is beyond the oldest age
            return math.log(max(events[-1][0], 1e-3)), _PRIOR_SIGMA
        mu, sigma = math.log(quantiles[0.5]), _PRIOR_SIGMA
        if len(self._sorted) >= _MIN_SAMPLES_FOR_SPREAD and 0.16 in quantiles:
            low = math.log(quantiles[0.16])
            spread = (math.log(quantiles[0.84]) - low) / 2 if 0.84 in quantiles else mu - low
            sigma = min(_MAX_SIGMA, max(_MIN_SIGMA, spread))
        return mu, sigma


def _cdf(fit: tuple[float, float], age_s: float) -> float:
    if age_s <= 0.0:
        return 0.0
    mu, sigma = fit
    return 0.5 * (1.0 + math.erf((math.log(age_s) - mu) / (sigma * _SQRT2)))


class PollBudget:
    """The budget of all of a process's lanes: what every image registered earned its lane,
    and the polls made. Each lane spends ``1 - LAST_LANES_SHARE`` of what its own images
    earned; the run's last lanes spend what the whole process has left."""

    def __init__(self) -> None:
        self.earned = 0.0
        self.polls = 0

    @property
    def credits(self) -> float:
        return self.earned - self.polls


class PollSchedule:
    """Decides how long a lane's waiter sleeps before its next DescribeImages round."""

    def __init__(
        self,
        *,
        floor_s: float,
        ceiling_s: float,
        polls_per_image: float,
        tail_probability: float = 0.5,
        tail_share: float = 0.5,
        pending: PendingTimes | None = None,
        shared: PollBudget | None = None,
    ) -> None:
        self.shared = shared  # the process's budget, its lanes' (None: this lane's alone)
        self._own_share = 1.0 if shared is None else 1.0 - LAST_LANES_SHARE
        self.ceiling_s = ceiling_s
        self.floor_s = min(floor_s, ceiling_s)  # a short configured interval wins
        self.polls_per_image = polls_per_image
        self._earned = polls_per_image * (1.0 - PAST_BUDGET_SHARE)  # what an image earns
        self.tail_probability = tail_probability
        self.tail_share = tail_share
        self.pending = pending if pending is not None else PendingTimes()
        self.registered = 0
        self.polls = 0
        self._registered_at_check = 0  # self.registered at the last poll or skip
        self._skipped = 0  # polls skipped in a row
        # What the ceiling counts from: the last poll, or skip (None: the next plan's now).
        self._anchor: float | None = None
        self.last_poll_at: float | None = None
        # The start of the poll before the current one: what a poll sees settle did so after it.
        self._previous_poll_at: float | None = None
        # What the current poll saw settle: (lower, upper bound of its pending time).
        self._seen: list[tuple[float, float]] = []

    @property
    def credits(self) -> float:
        """Polls the lane's own budget still allows (may be negative after ceiling polls)."""
        return self._own_share * self._earned * self.registered - self.polls

    @property
    def _reserve(self) -> float:
        """The polls kept for the lane's last images (``tail_share``, at least 2)."""
        return max(2.0, self.tail_share * self._earned * self.registered)

    def register(self) -> None:
        """A new image to watch: it earns the lane ``polls_per_image`` polls, less the share
        kept for polls past the budget."""
        self.registered += 1
        if self.shared is not None:
            self.shared.earned += self._earned

    def begin_poll(self, at: float, calls: int = 1) -> None:
        """A poll starts at ``at`` (call before :meth:`settled` for what it sees); ``calls``:
        the DescribeImages calls it takes (one per chunk of watched images), what the budget
        counts."""
        self._learn()
        self._previous_poll_at = self.last_poll_at
        self.last_poll_at = at
        self._anchor = at
        self.polls += calls
        if self.shared is not None:
            self.shared.polls += calls
        self._registered_at_check = self.registered
        self._skipped = 0

    @property
    def _registering(self) -> bool:
        """Images were registered since the last poll (or skip): the lane still creates."""
        return self.registered > self._registered_at_check

    def skip(self) -> bool:
        """Whether the poll now due should be skipped: the lane has registered images
        since the last poll (or skip), its credits do not cover this poll and the polls
        reserved for its last images, and it has skipped fewer than ``MAX_SKIPPED_CEILINGS``
        in a row. Call when the delay from :meth:`next_delay` has passed."""
        registering = self._registering
        self._registered_at_check = self.registered
        if (
            registering
            and self.credits < 1.0 + self._reserve
            and self._skipped < MAX_SKIPPED_CEILINGS
        ):
            self._skipped += 1
            self._anchor = None
            return True
        return False

    def settled(self, registered_at: float, seen_at: float) -> None:
        """An image seen available at ``seen_at``: it settled after the poll before (when it
        was still pending, or its registration) and before this one."""
        before = registered_at
        if self._previous_poll_at is not None:
            before = max(before, self._previous_poll_at)
        self._seen.append((before - registered_at, seen_at - registered_at))

    def _learn(self) -> None:
        """Learn what the last poll saw. All the images one poll sees settle have the same
        bounds (say 15-30 s): learnt as one value, they would make the spread look nil and
        the schedule think everything settles at once. They are spread evenly over their
        interval instead (as if settlements were uniform within it)."""
        seen, self._seen = self._seen, []
        for k, (low, high) in enumerate(seen):
            self.pending.observe(low + (high - low) * (k + 0.5) / len(seen))

    def next_delay(
        self, now: float, registered_at: Iterable[float], *, last: bool = False
    ) -> float:
        """Seconds from ``now`` until the next poll, for images registered at these times
        (each still pending at the last poll, or registered since). ``last``: they are the
        last images the run waits for."""
        times = list(registered_at)
        # The ceiling counts from the last poll or skip, or from the oldest image watched if
        # it came since: a re-plan (a nudge) does not push the next poll further out.
        if self._anchor is None:
            self._anchor = now
        anchor = max(self._anchor, min(times)) if times else self._anchor
        ceiling = max(0.0, self.ceiling_s - (now - anchor))
        # The run's last lanes may spend what every lane of the process left.
        credits = self.shared.credits if last and self.shared is not None else self.credits
        over = credits < 1.0
        floor = self.floor_s
        if over:
            if self._registering:
                return ceiling  # still creating: a ceiling poll, which skip() may skip
            if self.last_poll_at is not None and times:
                youngest = self.last_poll_at - max(times)
                share = LAST_AGE_SHARE if last else OVER_BUDGET_AGE_SHARE
                floor = max(floor, share * youngest)
        earliest = 0.0
        if self.last_poll_at is not None:
            earliest = max(0.0, self.last_poll_at + floor - now)
        self._learn()
        if len(self.pending) == 0 or earliest >= ceiling:
            return ceiling
        # Ages at the last poll (the images are known pending then) grouped at a resolution
        # far below the floor: a busy lane watches thousands of images of few distinct ages.
        # Ages spread wide (a lane creating for minutes) are grouped coarser, into about
        # _MAX_GROUPS: each group costs a log-normal CDF per step of the search below, and
        # rounding moves an age by at most half a group, up or down alike (the delay found
        # stays within 1 % of the floor-ceiling range: tests/unit/test_poll_schedule.py).
        since = self.last_poll_at if self.last_poll_at is not None else now
        ages_at_poll = [max(0.0, since - t) for t in times]
        if not ages_at_poll:
            return ceiling
        resolution = max(
            self.floor_s / 8 if self.floor_s > 0 else self.ceiling_s / 64,
            (max(ages_at_poll) - min(ages_at_poll)) / _MAX_GROUPS,
        )
        groups: dict[int, int] = {}
        for age in ages_at_poll:
            bucket = round(age / resolution)
            groups[bucket] = groups.get(bucket, 0) + 1
        fit = self.pending.fit(
            age for bucket, count in groups.items() for age in [bucket * resolution] * count
        )
        if fit is None:
            return ceiling
        ages = [
            (bucket * resolution, count, _cdf(fit, bucket * resolution))
            for bucket, count in groups.items()
        ]
        remaining = sum(groups.values())
        # The ceiling's polls until the watched images are expected settled (all of them,
        # with the tail's probability) are paid first: the body spends what they leave.
        each = self.tail_probability ** (1.0 / remaining)
        settled_by = math.exp(fit[0] + fit[1] * _NORMAL.inv_cdf(min(each, 1.0 - 1e-9)))
        youngest = min(age for age, _, _ in ages)
        spendable = credits - min(self._reserve, credits / 2)
        spendable -= max(0.0, since + settled_by - youngest - now) / self.ceiling_s
        body = remaining / spendable if spendable > 0 and not over else math.inf
        probability = self.tail_probability
        if last:
            probability = min(probability, LAST_TAIL_PROBABILITY)
        tail = math.log(probability)
        gap = now - since

        def due(delay: float) -> bool:
            ahead = gap + delay
            expected, log_all = 0.0, 0.0
            for age, count, before in ages:
                left = 1.0 - before
                # left ~ 0: the model says it should have settled long ago
                p = 1.0 if left <= 1e-12 else (_cdf(fit, age + ahead) - before) / left
                expected += count * p
                log_all += count * math.log(p) if p > 0 else -math.inf
            return expected >= body or log_all >= tail

        if due(earliest):
            return earliest
        if not due(ceiling):
            return ceiling
        low, high = earliest, ceiling  # not due at low, due at high (both grow with time)
        for _ in range(_SEARCH_STEPS):
            mid = (low + high) / 2
            if due(mid):
                high = mid
            else:
                low = mid
        return high
