"""Shards, run ids and merging shard reports: the pure parts of running past one machine."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from fleetimage.core.errors import UsageError
from fleetimage.core.models import ImageResult, LaneFailure, LaneKey, Outcome
from fleetimage.core.naming import new_run_id, validate_run_id
from fleetimage.core.shards import Shard, balance_lanes, lane_shard, parse_shard, shard_from_env
from fleetimage.output.merge import merge_reports
from fleetimage.output.report import RunReport

T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
REGIONS = [f"r-{i}" for i in range(17)]
ACCOUNTS = [f"{100000000000 + i}" for i in range(6)]
LANES = [LaneKey(a, r) for a in ACCOUNTS for r in REGIONS]


# --- run ids ------------------------------------------------------------------------------


@pytest.mark.parametrize("good", ["nightly-2026-11-29", "a", "A1-b2", "x" * 40])
def test_valid_run_ids(good: str) -> None:
    validate_run_id(good)


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("", "empty"),
        ("x" * 41, "41 characters"),
        ("night_ly", "'_'"),
        ("a b", "' '"),
        ("run/1", "'/'"),
        ("zürich", "'ü'"),
    ],
)
def test_invalid_run_ids_say_why(bad: str, why: str) -> None:
    with pytest.raises(ValueError, match="letters, digits and -") as err:
        validate_run_id(bad)
    assert why in str(err.value)


def test_generated_run_ids_are_valid() -> None:
    validate_run_id(new_run_id(T0))


# --- shards -------------------------------------------------------------------------------


def test_parse_shard() -> None:
    assert parse_shard("0/4") == (0, 4)
    assert parse_shard(" 3 / 4 ") == (3, 4)
    assert parse_shard("0/1") == (0, 1)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("4/4", "out of range"),
        ("0/0", "at least 1"),
        ("1", "not I/N"),
        ("-1/4", "not I/N"),
        ("a/b", "not I/N"),
        ("1/2/3", "not I/N"),
    ],
)
def test_bad_shards_name_the_flag(text: str, why: str) -> None:
    with pytest.raises(ValueError, match="--shard") as err:
        parse_shard(text)
    assert why in str(err.value)


def test_hash_is_stable_and_not_pythons_hash() -> None:
    # Pinned (sha256 of "account/region"): every machine, every Python (whatever its hash
    # seed), every run must agree on a lane's shard.
    assert lane_shard(LaneKey("123456789012", "us-east-1"), 1000) == 853
    assert lane_shard(LaneKey("123456789012", "eu-west-1"), 1000) == 848


def test_every_lane_has_exactly_one_hash_shard() -> None:
    shards = [Shard(i, 4) for i in range(4)]
    owners = [[s.index for s in shards if s.owns(k)] for k in LANES]
    assert all(len(o) == 1 for o in owners)
    # 102 lanes over 4 shards: none empty, none holding most of them.
    per_shard = Counter(o[0] for o in owners)
    assert set(per_shard) == {0, 1, 2, 3} and max(per_shard.values()) < 40


def test_balance_by_target_counts() -> None:
    sizes = {k: (500 if i % 10 == 0 else 20 + i % 7) for i, k in enumerate(LANES)}
    owner = balance_lanes(sizes, 4)
    assert set(owner) == set(sizes)
    loads = Counter()
    for key, shard in owner.items():
        loads[shard] += sizes[key]
    # Greedy largest-first: no shard exceeds the ideal by more than the largest lane.
    ideal = sum(sizes.values()) / 4
    assert max(loads.values()) - ideal <= max(sizes.values())
    assert max(loads.values()) / min(loads.values()) < 1.2
    assert balance_lanes(dict(reversed(sizes.items())), 4) == owner  # order-independent


def test_shard_round_trips_through_the_journal_form() -> None:
    hashed = Shard(1, 4)
    dealt = Shard(2, 3, frozenset(LANES[:3]))
    for shard in (hashed, dealt):
        assert Shard.from_dict(shard.to_dict()) == shard
    assert dealt.owns(LANES[0]) and not dealt.owns(LANES[5])
    with pytest.raises(ValueError):
        Shard(4, 4)


def test_shard_from_the_jobs_environment() -> None:
    assert shard_from_env({}) is None
    k8s = {"JOB_COMPLETION_INDEX": "2", "FLEETIMAGE_SHARD_COUNT": "5"}
    assert shard_from_env(k8s) == (2, 5)
    batch = {"AWS_BATCH_JOB_ARRAY_INDEX": "0", "AWS_BATCH_JOB_ARRAY_SIZE": "3"}
    assert shard_from_env(batch) == (0, 3)
    with pytest.raises(ValueError, match="FLEETIMAGE_SHARD_COUNT is not"):
        shard_from_env({"JOB_COMPLETION_INDEX": "1"})
    with pytest.raises(ValueError, match="out of range"):
        shard_from_env({"JOB_COMPLETION_INDEX": "5", "FLEETIMAGE_SHARD_COUNT": "5"})
    with pytest.raises(ValueError, match="AWS_BATCH_JOB_ARRAY_SIZE='x'"):
        shard_from_env({"AWS_BATCH_JOB_ARRAY_INDEX": "1", "AWS_BATCH_JOB_ARRAY_SIZE": "x"})


# --- merging reports ----------------------------------------------------------------------


def _report(shard: str | None, lanes: list[LaneKey], run_id: str = "nightly") -> RunReport:
    results = tuple(
        ImageResult(k.account, k.region, f"i-{k.region}-{n}", Outcome.AVAILABLE, f"ami-{n}")
        for k in lanes
        for n in range(3)
    )
    index = 0 if shard is None else int(shard.split("/")[0])
    return RunReport(
        run_id=run_id,
        started_at=T0 + timedelta(seconds=index),
        finished_at=T0 + timedelta(minutes=5, seconds=index),
        results=results,
        shard=shard,
    )


def test_merge_holds_every_result_once() -> None:
    parts = [(f"r{i}.json", _report(f"{i}/3", LANES[i::3][:4])) for i in (2, 0, 1)]
    merged = merge_reports(parts)
    assert merged.shards == ("0/3", "1/3", "2/3") and merged.shard is None
    assert merged.counts["total"] == 3 * 4 * 3 and merged.ok
    assert merged.started_at == T0 and merged.finished_at == T0 + timedelta(minutes=5, seconds=2)
    assert RunReport.from_dict(merged.to_dict()) == merged


def test_merge_refuses_what_would_lie() -> None:
    a, b = _report("0/2", LANES[:2]), _report("1/2", LANES[2:4])
    with pytest.raises(UsageError, match=r"missing shards: 1/2"):
        merge_reports([("a", a)])
    with pytest.raises(UsageError, match="overlapping shards: a and b2 are both shard 0/2"):
        merge_reports([("a", a), ("b2", _report("0/2", LANES[4:5]))])
    with pytest.raises(UsageError, match=r"lane .* is in a and in b"):
        merge_reports([("a", a), ("b", _report("1/2", LANES[1:3]))])
    with pytest.raises(UsageError, match="not a shard's report"):
        merge_reports([("a", a), ("whole", _report(None, LANES[2:4]))])
    with pytest.raises(UsageError, match="same --run-id"):
        merge_reports([("a", a), ("b", _report("1/2", LANES[2:4], run_id="other"))])
    with pytest.raises(UsageError, match="others are of 2 shards"):
        merge_reports([("a", a), ("b", _report("1/3", LANES[2:4]))])
    # a lane failure holds its lane too
    failure = LaneFailure(LANES[0].account, LANES[0].region, "AssumeRole", "Denied", "no")
    failed = RunReport("nightly", T0, T0, (), lane_failures=(failure,), shard="1/2")
    with pytest.raises(UsageError, match="overlapping"):
        merge_reports([("a", a), ("f", failed)])
    assert merge_reports([("a", a), ("b", b)]).counts["total"] == 12
