"""The waiter's poll schedule on a fake clock: learned pending times, floor, ceiling, budget."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from fleetimage.engine.runstate import LAST_LANES
from fleetimage.engine.settling import (
    LAST_AGE_SHARE,
    MAX_SKIPPED_CEILINGS,
    OVER_BUDGET_AGE_SHARE,
    PendingTimes,
    PollBudget,
    PollSchedule,
)


def _made_and_ready(
    rnd: random.Random,
    images: int,
    *,
    start: float = 0.0,
    burst: int = 50,
    per_s: float = 5.0,
) -> tuple[list[float], list[float]]:
    """When each image is made (a burst at ``start``, then ``per_s`` a second in whole steps of
    the bucket's clock) and when it is ready (log-normal pending times around 30 s)."""
    created = [
        start if k < burst else math.floor(start) + math.ceil((k - burst + 1) / per_s)
        for k in range(images)
    ]
    ready = [c + 30.0 * math.exp(0.3 * rnd.gauss(0.0, 1.0)) for c in created]
    return created, ready


def _lane(
    schedule: PollSchedule | None,
    *,
    images: int,
    seed: int = 7,
    interval: float = 15.0,
    burst: int = 50,
    per_s: float = 5.0,
    last: bool = False,
) -> tuple[float, float, float]:
    """Drive one lane on a fake clock (AWS's CreateImage bucket: 50 at once, then 5 a second;
    log-normal pending times around 30 s). ``schedule=None``: a fixed ``interval``; ``last``:
    the lane's images are the last the run waits for.
    Returns (polls per image, mean lag / pending time, lag of the lane's last image)."""
    rnd = random.Random(seed)
    created, ready = _made_and_ready(rnd, images, burst=burst, per_s=per_s)
    registered: set[int] = set()
    unseen = set(range(images))
    now, polls, fractions = 0.0, 0, []
    while unseen:
        for i in range(images):  # what was created by now is watched
            if created[i] <= now and i not in registered:
                registered.add(i)
                if schedule is not None:
                    schedule.register()
        watched = [i for i in unseen if i in registered]
        if schedule is None:
            delay = interval
        else:
            delay = schedule.next_delay(now, (created[i] for i in watched), last=last)
        now += delay
        if schedule is not None and schedule.skip():
            continue
        polls += 1
        if schedule is not None:
            schedule.begin_poll(now)
        for i in watched:
            if ready[i] <= now:
                unseen.discard(i)
                fractions.append((now - ready[i]) / (ready[i] - created[i]))
                if schedule is not None:
                    schedule.settled(created[i], now)
    return polls / images, sum(fractions) / len(fractions), now - max(ready)


def test_no_pending_time_seen_yet_polls_at_the_ceiling() -> None:
    schedule = PollSchedule(floor_s=1.0, ceiling_s=15.0, polls_per_image=0.05)
    for _ in range(100):
        schedule.register()
    assert schedule.next_delay(0.0, [0.0] * 100) == 15.0


def test_learned_pending_times_put_the_poll_where_images_settle() -> None:
    schedule = PollSchedule(floor_s=1.0, ceiling_s=120.0, polls_per_image=0.05)
    for k in range(50):
        schedule.pending.observe(30.0 + (k % 10) - 4.5)  # 25.5 … 34.5 s
    for _ in range(400):
        schedule.register()
    schedule.begin_poll(0.0)
    delay = schedule.next_delay(0.0, [0.0] * 400)
    # 400 images pending since 0, ~19 polls to spend: the first once ~21 of them settled,
    # early in the learned distribution, neither at the floor nor at the ceiling.
    assert 20.0 < delay < 30.0


def test_the_floor_and_the_budget_hold() -> None:
    schedule = PollSchedule(floor_s=2.0, ceiling_s=15.0, polls_per_image=0.05)
    for _ in range(200):
        schedule.pending.observe(1.0)  # images settle within a second: all due at once
    for _ in range(40):  # 2 polls of budget
        schedule.register()
    schedule.begin_poll(100.0)
    registered = [99.5] * 40
    assert schedule.next_delay(100.0, registered) == pytest.approx(2.0)  # never below the floor
    schedule.begin_poll(102.0)
    assert schedule.credits == 0.0
    # Budget spent: the body rule is off, the tail rule still times the poll (all due).
    assert schedule.next_delay(102.0, registered) == pytest.approx(2.0)
    # ...but no sooner than 5 % of the youngest watched image's age.
    schedule.begin_poll(300.0)
    assert schedule.next_delay(300.0, [100.0] * 40) == pytest.approx(10.0)


def test_a_short_configured_interval_wins_over_the_floor() -> None:
    schedule = PollSchedule(floor_s=1.0, ceiling_s=0.05, polls_per_image=0.05)
    assert schedule.floor_s == 0.05
    schedule.begin_poll(0.0)
    assert schedule.next_delay(0.0, [0.0]) == 0.05


def test_images_still_pending_count_in_the_quantiles() -> None:
    times = PendingTimes()
    for value in (10.0, 11.0, 12.0, 13.0, 14.0):
        times.observe(value)  # the quickest five of a lane of twenty...
    mu, _ = times.fit() or (0.0, 0.0)
    assert math.exp(mu) == pytest.approx(12.0)
    # ...whose other fifteen are still pending at 20 s: the median is beyond 20 s
    mu, _ = times.fit([20.0] * 15) or (0.0, 0.0)
    assert math.exp(mu) == pytest.approx(20.0)  # (the oldest age: a lower bound)


def test_pending_times_fit_from_quantiles_and_forget_the_oldest() -> None:
    times = PendingTimes(window=5)
    assert times.fit() is None
    for value in (10.0, 20.0, 30.0, 40.0, 50.0, 1000.0):
        times.observe(value)
    assert len(times) == 5 and times.quantile(0.0) == 20.0  # 10 s was forgotten
    mu, sigma = times.fit() or (0.0, 0.0)
    assert math.exp(mu) == 40.0  # the median: the outlier moves it by one rank only
    assert 0.1 <= sigma <= 2.0


@pytest.mark.parametrize("images", [115, 1850])
def test_a_lane_sees_its_images_no_later_than_a_fixed_interval_within_the_budget(
    images: int,
) -> None:
    _, fixed_fraction, _ = _lane(None, images=images)
    schedule = PollSchedule(floor_s=1.0, ceiling_s=15.0, polls_per_image=0.05)
    polls, fraction, _ = _lane(schedule, images=images)
    # The budget is kept but for the polls before the first image settles (at the ceiling).
    assert polls <= 0.05 + 3 / images
    # ~115 images earn ~6 polls and the lane lives ~5 ceilings: the ceiling takes them all.
    assert fraction <= fixed_fraction + 1e-9
    if images > 1000:  # a budget of ~90 polls: images are seen within ~10 % of their time
        assert fraction < 0.5 * fixed_fraction


def test_a_lane_over_budget_polls_when_its_last_images_should_have_settled() -> None:
    """A lane of ~115 images has ~6 polls of budget and lives ~5 ceilings: it is over budget
    before its last images settle. Its ceiling polls are timed by the tail rule instead of a
    blind interval: the last image is seen ~3.7 s after it settles (~6 s with ceiling polls,
    a fifth of its pending time; ~2 s when the body spent its budget on the settlements
    before, for one poll more a lane: 0.063 polls per image instead of 0.055)."""
    lags, polls = [], []
    for seed in range(20):
        schedule = PollSchedule(floor_s=1.0, ceiling_s=15.0, polls_per_image=0.05)
        per_image, _, last_lag = _lane(schedule, images=115, seed=seed)
        lags.append(last_lag)
        polls.append(per_image)
    # (with ceiling polls over budget: 6.2 s, and up to 14.9 s)
    assert sum(lags) / len(lags) < 4.5 and max(lags) < 10.0
    assert sum(polls) / len(polls) < 0.05 + 2 / 115


def test_the_runs_last_lane_sees_its_last_image_sooner_for_a_few_polls_more() -> None:
    """The lane whose images the run waits for last decides the run's makespan: its tail
    polls come when its images have all settled with probability 0.1 (0.5 elsewhere), at
    least 2 % of the youngest's age apart (5 %). Here it is the last from its start (a run of
    one lane), the most it can cost."""
    runs = {}
    for last in (False, True):
        lags, polls = [], []
        for seed in range(20):
            schedule = PollSchedule(floor_s=1.0, ceiling_s=15.0, polls_per_image=0.05)
            per_image, _, last_lag = _lane(schedule, images=125, seed=seed, last=last)
            lags.append(last_lag)
            polls.append(per_image * 125)
        runs[last] = (sum(lags) / len(lags), sum(polls) / len(polls))
    (lag, polls), (last_lag, last_polls) = runs[False], runs[True]
    assert last_lag < 0.5 * lag
    assert last_polls < polls + 6.0


@pytest.mark.parametrize(
    ("last", "share", "polls_before_ceiling"),
    [(False, OVER_BUDGET_AGE_SHARE, 25), (True, LAST_AGE_SHARE, 105)],
)
def test_an_image_stuck_past_the_learned_times_is_polled_ever_less_often(
    last: bool, share: float, polls_before_ceiling: int
) -> None:
    """Over budget, the tail rule alone would poll an image far past the learned pending
    times every few seconds (the log-normal says it must settle any moment): the gap is at
    least 5 % of its age (2 % in the run's last lane), and the ceiling once that share of its
    age is past the ceiling."""
    rnd = random.Random(3)
    schedule = PollSchedule(floor_s=1.0, ceiling_s=15.0, polls_per_image=0.05)
    for _ in range(100):
        schedule.register()
        schedule.pending.observe(30.0 * math.exp(0.3 * rnd.gauss(0.0, 1.0)))
    schedule.polls = 5  # the budget is spent; one image, made at 0 s, never settles
    schedule.begin_poll(40.0)
    now, gaps = 40.0, []
    while now < 1240.0:
        gap = schedule.next_delay(now, [0.0], last=last)
        assert gap == 15.0 if now >= 15.0 / share else gap >= share * now - 1e-9
        gaps.append(gap)
        now += gap
        schedule.begin_poll(now)
    assert min(gaps) < 6.0  # early on, the tail rule polls sooner than the ceiling
    assert len(gaps) <= 1200 / 15 + polls_before_ceiling


def test_a_lane_over_budget_skips_ceiling_polls_only_while_it_registers() -> None:
    schedule = PollSchedule(floor_s=1.0, ceiling_s=15.0, polls_per_image=0.05)
    schedule.register()
    schedule.begin_poll(0.0)
    assert schedule.credits < 1.0
    assert not schedule.skip()  # nothing registered since the poll: the ceiling poll is made
    for _ in range(MAX_SKIPPED_CEILINGS):
        schedule.register()
        assert schedule.skip()
    schedule.register()
    assert not schedule.skip()  # skipped enough in a row: the watched images are polled
    schedule.begin_poll(75.0)
    schedule.register()
    assert schedule.skip()  # a poll starts the count again
    for _ in range(60):  # the 2 polls made are earned back, and one more: within the budget
        schedule.register()
    assert schedule.credits >= 1.0
    assert not schedule.skip()


def test_a_lane_that_creates_thinly_keeps_to_its_budget_and_still_sees_its_last_image() -> None:
    """Creations spread over ~8 pending times (a starved event loop, or a slow bucket): the
    lane is over its budget from its first polls on. Polling every ceiling while it creates
    would cost ~0.35 polls per image; the last image is still seen within one ceiling."""
    fixed, _, _ = _lane(None, images=93, burst=5, per_s=0.2)
    schedule = PollSchedule(floor_s=1.0, ceiling_s=15.0, polls_per_image=0.05)
    polls, _, last_lag = _lane(schedule, images=93, burst=5, per_s=0.2)
    assert fixed > 0.3
    assert polls < 0.1
    assert last_lag <= 15.0


def test_ages_spread_wide_are_grouped_coarser_without_moving_the_poll(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """3,000 images registered over 5 minutes at scattered instants: grouped into at most 64
    ages, the next poll comes within 1 % of the floor-to-ceiling range of where grouping at the
    floor's resolution puts it."""
    from fleetimage.engine import settling

    rnd = random.Random(3)
    registered_at = sorted(rnd.uniform(0.0, 300.0) for _ in range(3000))

    def delay(max_groups: int) -> float:
        monkeypatch.setattr(settling, "_MAX_GROUPS", max_groups)
        schedule = PollSchedule(floor_s=1.0, ceiling_s=15.0, polls_per_image=0.05)
        for pending in (22.0, 26.0, 28.0, 30.0, 31.0, 33.0, 36.0, 41.0):
            schedule.pending.observe(pending)
        for _ in registered_at:
            schedule.register()
        schedule.begin_poll(300.0)
        return schedule.next_delay(300.5, [t for t in registered_at if 300.0 - t < 20.0])

    fine, coarse = delay(10**9), delay(64)
    assert 1.0 <= fine < 15.0, fine  # the learnt schedule decides, not a bound
    assert abs(coarse - fine) <= 0.01 * (15.0 - 1.0), (fine, coarse)


# --- the process's budget, shared by its lanes -------------------------------------------------


def _process(lanes: int, images: int, *, seed: int, shared: bool) -> tuple[float, float, float]:
    """A process's ``lanes`` on one fake clock, each lane as in ``_lane`` (creations at AWS's
    bucket from a start within 0.3 s, ~30 s pending times), a waiter each; a lane is told it
    is among the last once at most ``LAST_LANES`` lanes have images left, and the lanes still
    waiting time their next poll again then (RunState's nudge). ``shared``: the lanes spend
    from one PollBudget (as a run's do); otherwise each keeps to its own.
    Returns (polls per image, mean lag of an image, lag of the run's last image)."""
    rnd = random.Random(seed)
    budget = PollBudget() if shared else None
    state = []
    for _ in range(lanes):
        start = 0.2 + 0.3 * rnd.random()
        created, ready = _made_and_ready(rnd, images, start=start)
        schedule = PollSchedule(floor_s=1.0, ceiling_s=15.0, polls_per_image=0.05, shared=budget)
        state.append(
            {
                "created": created,
                "ready": ready,
                "schedule": schedule,
                "next": 0,
                "watched": {},
                "wake": created[0],
                "planned": False,
            }
        )
    imaging, last_seen, lags = lanes, 0.0, []

    def plan(lane: dict[str, Any], now: float) -> None:
        if not lane["watched"]:  # waits for its next image to be created
            lane["wake"], lane["planned"] = lane["created"][lane["next"]], False
            return
        last = 0 < imaging <= LAST_LANES
        delay = lane["schedule"].next_delay(now, lane["watched"].values(), last=last)
        lane["wake"], lane["planned"] = now + delay, True

    while imaging:
        lane = min((ln for ln in state if ln["wake"] < math.inf), key=lambda ln: ln["wake"])
        now, schedule = lane["wake"], lane["schedule"]
        while lane["next"] < images and lane["created"][lane["next"]] <= now:
            lane["watched"][lane["next"]] = lane["created"][lane["next"]]
            schedule.register()
            lane["next"] += 1
        if not lane["planned"] or schedule.skip():
            plan(lane, now)
            continue
        schedule.begin_poll(now)
        for i in [i for i in lane["watched"] if lane["ready"][i] <= now]:
            schedule.settled(lane["created"][i], now)
            lags.append(now - lane["ready"][i])
            del lane["watched"][i]
        if lane["watched"] or lane["next"] < images:
            plan(lane, now)
            continue
        lane["wake"], imaging, last_seen = math.inf, imaging - 1, now
        if 0 < imaging <= LAST_LANES:
            for other in state:
                if other["wake"] < math.inf and other["planned"]:
                    plan(other, now)
    polls = sum(ln["schedule"].polls for ln in state)
    last_ready = max(max(ln["ready"]) for ln in state)
    return polls / (lanes * images), sum(lags) / len(lags), last_seen - last_ready


def test_the_ceilings_polls_are_paid_before_the_body_spends() -> None:
    """At 30 s, 125 images made over the first 15 s, none seen settle at the poll before:
    ~4 ceilings until they have all settled, and 5.25 polls left of the budget. The body
    rule (about every 40 settlements, ~10 s apart) would spend what those ceilings need; it
    waits for the ceiling. With the budget of 2,000 images it polls sooner."""
    rnd = random.Random(5)
    ages = [30.0 - 15.0 * k / 124 for k in range(125)]  # made at 0-15 s
    for images, sooner in ((125, False), (2000, True)):
        schedule = PollSchedule(floor_s=1.0, ceiling_s=15.0, polls_per_image=0.05)
        for _ in range(64):
            schedule.pending.observe(30.0 * math.exp(0.3 * rnd.gauss(0.0, 1.0)))
        for _ in range(images):
            schedule.register()
        schedule.begin_poll(30.0)
        delay = schedule.next_delay(30.0, [30.0 - age for age in ages])
        assert (delay < 15.0) is sooner, (images, delay)


def test_the_runs_last_lanes_spend_what_the_processs_other_lanes_left() -> None:
    budget = PollBudget()
    busy = PollSchedule(floor_s=1.0, ceiling_s=15.0, polls_per_image=0.05, shared=budget)
    for _ in range(400):  # earned 20 polls and spent 5
        busy.register()
    for at in range(5):
        busy.begin_poll(float(at))
    assert busy.credits == pytest.approx(0.7 * 20 - 5)  # its own share: 70 %
    last = PollSchedule(floor_s=1.0, ceiling_s=15.0, polls_per_image=0.05, shared=budget)
    rnd = random.Random(9)
    for _ in range(64):
        last.pending.observe(30.0 * math.exp(0.3 * rnd.gauss(0.0, 1.0)))
    for _ in range(40):  # earned 2 polls and spent 2: over its own budget
        last.register()
    last.begin_poll(10.0, calls=2)
    assert last.credits < 1.0 and budget.credits == pytest.approx(22 - 7)
    watched = [0.0] * 40  # all made at 0 s, 25 s ago
    alone = last.next_delay(25.0, watched)
    as_last = last.next_delay(25.0, watched, last=True)
    # Alone it waits until all 40 have settled with probability 0.5 (~20 s on); as one of the
    # run's last lanes it spends the process's 15 polls on the settlements (~40 % by 30 s).
    assert as_last < 0.5 * alone, (as_last, alone)


@pytest.mark.parametrize(("lanes", "images"), [(8, 125), (16, 312)])
def test_a_processs_lanes_keep_their_budget_and_its_last_lanes_spend_what_they_left(
    lanes: int, images: int
) -> None:
    """Lanes each on their own budget spend it all, the last ones like the others. Sharing
    one, every lane leaves 30 % of its images' polls to the run's last lanes: the process
    spends less, and the run's last image is seen sooner (its end). Lanes of 125 spend
    their budget on the ceiling's polls either way."""
    alone = [_process(lanes, images, seed=seed, shared=False) for seed in range(4)]
    shared = [_process(lanes, images, seed=seed, shared=True) for seed in range(4)]

    def mean(runs: list[tuple[float, float, float]], k: int) -> float:
        return sum(run[k] for run in runs) / len(runs)

    assert mean(shared, 0) <= 0.051
    assert mean(shared, 2) < mean(alone, 2) and max(run[2] for run in shared) < 1.5
    assert mean(shared, 1) < 7.5  # an image is seen within half a ceiling on average
    if images > 200:  # (alone: 0.055 polls per image, the run's last image 0.8 s late)
        assert mean(shared, 0) < mean(alone, 0) - 0.008
