"""benchmarks/bound.py on hand-computed cases, and against the mock's own bucket."""

from __future__ import annotations

import pytest

from benchmarks.bound import copy_bound, creation_times, deletion_bound, lane_bound, run_bound
from fleetimage.mock.buckets import TokenBucket


def test_creation_times_continuous_burst_then_refill() -> None:
    # burst 2, 1 token/s: two at once, then one a second.
    assert creation_times(5, burst=2, rate_per_s=1.0, refill="continuous") == [0, 0, 1, 2, 3]
    # 4 tokens/s: a quarter second apart after the burst.
    assert creation_times(4, burst=1, rate_per_s=4.0, refill="continuous") == [0, 0.25, 0.5, 0.75]


def test_creation_times_per_second_come_in_whole_seconds() -> None:
    # burst 5, 4 tokens once a second: 5 at 0, then 4 at t=1, the next 4 at t=2.
    times = creation_times(10, burst=5, rate_per_s=4.0, refill="per_second")
    assert times == [0, 0, 0, 0, 0, 1, 1, 1, 1, 2]
    # A fractional rate (a neighbour leaves 0.5/s): a token every other second.
    assert creation_times(4, burst=2, rate_per_s=0.5, refill="per_second") == [0, 0, 2, 4]
    # AWS's CreateImage, 50/5: the 51st..55th at 1 s, the 56th at 2 s.
    times = creation_times(56, burst=50, rate_per_s=5.0, refill="per_second")
    assert times[49] == 0 and times[50] == times[54] == 1 and times[55] == 2
    # A tick never lifts the bucket past its burst: burst 1, 0.6/s loses 0.2 at every second
    # tick (0.6, then 1.2 capped to 1.0), so one image every 2 s, not 5 in 8 s.
    assert creation_times(5, burst=1, rate_per_s=0.6, refill="per_second") == [0, 2, 4, 6, 8]


def test_lane_bound_is_the_latest_creation_plus_its_pending_time() -> None:
    # burst 2, 1/s continuous: created at 0, 0, 1, 2.
    assert lane_bound([5, 1, 1, 1], burst=2, rate_per_s=1.0) == 5  # the first image decides
    assert lane_bound([1, 1, 1, 5], burst=2, rate_per_s=1.0) == 7  # the last one: 2 + 5
    assert lane_bound([1, 1, 3, 1], burst=2, rate_per_s=1.0) == 4  # the third: 1 + 3
    # Per second, burst 2, 2 tokens a second: created at 0, 0, 1, 1, 2.
    assert lane_bound([1, 1, 1, 1, 1], burst=2, rate_per_s=2.0, refill="per_second") == 3
    assert lane_bound([1, 1, 4, 1, 1], burst=2, rate_per_s=2.0, refill="per_second") == 5
    assert lane_bound([], burst=50, rate_per_s=5.0) == 0


def test_run_bound_takes_the_slowest_lane_and_the_capacity_a_neighbour_leaves() -> None:
    lanes = {
        "a/us-east-1": {"pending_aws_s": [10.0] * 4},  # burst 2, 1/s: 2 + 10 = 12
        "a/eu-west-1": {"pending_aws_s": [10.0] * 6},  # 4 + 10 = 14
    }
    kw = {"burst": 2.0, "rate_per_s": 1.0, "refill": "continuous", "throttling": True}
    assert run_bound(lanes, neighbour_load=0.0, **kw) == (14.0, "a/eu-west-1")
    # Half the bucket left: burst 1, 0.5/s: the 6th at (6 - 1) / 0.5 = 10 s.
    assert run_bound(lanes, neighbour_load=0.5, **kw) == (20.0, "a/eu-west-1")
    # No buckets: the longest pending time.
    lanes["a/us-east-1"]["pending_aws_s"] = [1.0, 30.0]
    kw["throttling"] = False
    assert run_bound(lanes, neighbour_load=0.0, **kw) == (30.0, "a/us-east-1")


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="refill"):
        creation_times(1, burst=1, rate_per_s=1.0, refill="sometimes")
    with pytest.raises(ValueError, match="rate_per_s"):
        creation_times(1, burst=1, rate_per_s=0.0, refill="continuous")


@pytest.mark.parametrize("refill", ["continuous", "per_second"])
@pytest.mark.parametrize(("burst", "rate"), [(50.0, 5.0), (20.0, 2.0), (30.0, 3.0), (2.0, 0.6)])
def test_creation_times_match_a_greedy_client_on_the_mocks_bucket(
    refill: str, burst: float, rate: float
) -> None:
    """The bound's pace is exactly what the mock's bucket lets a greedy client do."""
    step = 1e-3
    period = 1.0 if refill == "per_second" else 0.0
    bucket = TokenBucket(burst, rate, burst, 0.0, period)
    n, i, seen = 120, 0, []
    while len(seen) < n:
        now = i * step
        while len(seen) < n and bucket.try_take(now):
            seen.append(now)
        i += 1
    expected = creation_times(n, burst=burst, rate_per_s=rate, refill=refill)
    assert seen == pytest.approx(expected, abs=step * 2)  # the client polls every step


def test_the_cap_matches_the_mocks_bucket_per_second() -> None:
    bucket = TokenBucket(1.0, 0.6, 1.0, 0.0, 1.0)
    seen = [t / 10 for t in range(100) if bucket.try_take(t / 10)]
    assert seen == creation_times(5, burst=1, rate_per_s=0.6, refill="per_second")


def test_deletion_bound_is_the_slowest_lanes_last_token() -> None:
    # DeregisterImage: 100 at once, then 5 a second; 2,497 deletions end at (2497 - 100) / 5.
    bound, lane = deletion_bound(
        {"a/us-east-1": 2497, "a/eu-west-1": 100}, burst=100, rate_per_s=5, refill="per_second"
    )
    assert (bound, lane) == (480.0, "a/us-east-1")
    assert deletion_bound({"a/x": 100}, burst=100, rate_per_s=5, refill="continuous") == (
        0.0,
        "a/x",
    )


def test_copy_bound_without_a_binding_cap_is_the_bucket_bound() -> None:
    pending = [3.0, 1.0, 4.0, 1.0, 5.0]
    for refill in ("continuous", "per_second"):
        assert copy_bound(
            pending, burst=2, rate_per_s=1.0, max_concurrent=100, refill=refill
        ) == lane_bound(pending, burst=2, rate_per_s=1.0, refill=refill)


def test_copy_bound_waits_for_a_slot_and_the_bucket_fills_meanwhile() -> None:
    # One slot: strictly one after another (the bucket has tokens to spare).
    assert copy_bound([2, 3, 4], burst=10, rate_per_s=1.0, max_concurrent=1) == 9
    # Two slots, burst 1, 1/s: starts at 0 and 1 (bucket); the third waits for a slot (5).
    assert copy_bound([5, 5, 5], burst=1, rate_per_s=1.0, max_concurrent=2) == 10
    # The bucket refilled while the cap held copies back: 3 and 4 start at once when slots free.
    assert copy_bound([4, 4, 1, 1], burst=2, rate_per_s=1.0, max_concurrent=2) == 5
    # Per whole second: a slot freed at 2.5 is used at once if a token is there.
    assert (
        copy_bound([2.5, 1], burst=5, rate_per_s=1.0, max_concurrent=1, refill="per_second") == 3.5
    )
    # In order: a copy never starts before the one listed before it.
    assert copy_bound([10, 1, 1], burst=1, rate_per_s=1.0, max_concurrent=2) == 10
