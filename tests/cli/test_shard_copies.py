"""Copies into one destination from several shards: N shards (N processes, one source lane
each) copy into ONE destination region of one mock. Shards share nothing, so each shard's
adaptive limiter takes the destination's CopyImage bucket for its own; the mock's accounting
(``/_mock/copy_stats``) shows what they did together:

- every request that passed the destination's bucket fits it: in every window of AWS time
  ``[t_i, t_j]`` at most ``burst + rate * (t_j - t_i)`` passed (the mock enforces it; this
  checks that the shards' requests were all counted against that one bucket);
- the throttled answers stay a small share (the bound and why: :func:`throttle_bound`);
- every copy lands exactly once: none lost, 0 duplicates by token, name or source;
- the destination's concurrent-copy cap holds: the most copies pending at once never passed
  it, and no shard was refused by it.

The cap is the one limit the shards' configs must split (``max_concurrent_per_region`` of
cap / shards each): a ``ResourceLimitExceeded`` with none of a shard's own copies in flight
stops that shard's destination (``engine/copy_slots.py``), and with several shards the
destination can be full of the others' copies (the last test shows it).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import MockFactory, cli_command, fleet_config, write_config

from fleetimage.core.models import LaneKey
from fleetimage.core.shards import lane_shard
from fleetimage.mock import MockEC2Thread, load_default_limits
from fleetimage.mock.copy_config import CopyConfig

ACCOUNT = "123456789012"  # the mock's default account
DESTINATION = "eu-north-1"  # imaged by no shard: only a copy destination
CANDIDATES = (
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "eu-west-1", "eu-west-2",
    "eu-central-1", "ap-south-1", "ap-northeast-1", "sa-east-1", "ca-central-1", "eu-west-3",
    "ap-southeast-1", "ap-southeast-2", "ap-northeast-2", "ap-northeast-3",
)  # fmt: skip
# engine/plan.py CONFIRM_SHARE: a lane acts on throttles once this share of its last ~10
# answers were throttled.
CONFIRM_SHARE = 0.2


@dataclass(frozen=True)
class Shape:
    """One run: ``shards`` processes with ``per_lane`` instances in each one's source lane;
    the destination's CopyImage bucket (``burst``, ``rate`` per AWS second) and cap (``cap``
    copies pending, each for about ``copy_pending_s`` AWS seconds)."""

    shards: int
    per_lane: int
    burst: int
    rate: float
    cap: int
    copy_pending_s: float
    time_scale: float
    # False: every shard is configured with the destination's whole CopyImage bucket, as if
    # alone, and only the adaptive limiters share it; True: each is given 1/shards of it.
    split_bucket: bool = False
    # Each shard's copy.max_concurrent_per_region (None: the cap split, cap // shards).
    shard_cap: int | None = None
    copy_pending_sigma: float = 0.3


def sources_one_per_shard(count: int) -> tuple[str, ...]:
    """One source region per hash shard of ``count``: shard i images exactly the i-th."""
    picked: dict[int, str] = {}
    for region in CANDIDATES:
        picked.setdefault(lane_shard(LaneKey(ACCOUNT, region), count), region)
    assert len(picked) == count, picked
    return tuple(picked[i] for i in range(count))


def throttle_bound(shape: Shape, passed: int, per_passed: float) -> float:
    """The most throttled CopyImage answers the destination may give.

    ``(shards - 1) * burst``: each shard's limiter starts with a full bucket of its own, so
    the first round can cost that many (the server had one bucket for all). Then
    ``per_passed`` per request that passed. Shards that did not adapt, each sending at the
    full rate, would be throttled ``shards - 1`` times per request that passed (3 for 4
    shards). Each shard's limiter lets throttles by only until three come in a row or
    ``CONFIRM_SHARE`` of its last ~20 answers were throttled, then empties its bucket, cuts
    its rate (x0.7) and recovers additively: the tests allow 0.5 per request that passed
    (measured: 0.2-0.3). With the split bucket the shards' buckets add up to the
    destination's, so only network jitter (a request sent in time that arrives late)
    throttles one: 0.05 allowed.
    """
    first_round = 0 if shape.split_bucket else (shape.shards - 1) * shape.burst
    return first_round + passed * per_passed


def worst_window_excess(times: list[float], burst: float, rate: float) -> float:
    """max over i <= j of ``(j - i + 1) - (burst + rate * (t_j - t_i))``: > 0 means the
    requests of some window were more than the bucket holds. O(n), with a running maximum."""
    worst = -burst
    best_start = float("-inf")  # max over i <= j of (rate * t_i - i)
    for j, t in enumerate(sorted(times)):
        best_start = max(best_start, rate * t - j)
        worst = max(worst, j + 1 - rate * t + best_start - burst)
    return worst


def copy_stats(mock: MockEC2Thread) -> dict[str, Any]:
    """The destination's entry of ``/_mock/copy_stats`` (the mock's HTTP surface)."""
    url = f"{mock.endpoint_url}/_mock/copy_stats"
    with urllib.request.urlopen(url, timeout=30) as answer:
        stats = json.loads(answer.read())
    assert {s["region"] for s in stats} <= {DESTINATION}  # no shard copied anywhere else
    return next((s for s in stats if s["region"] == DESTINATION), {})


def start_mock(mock_thread: MockFactory, shape: Shape) -> MockEC2Thread:
    limits = {**load_default_limits(), "CopyImage": (float(shape.burst), shape.rate)}
    return mock_thread(
        regions=sources_one_per_shard(shape.shards),
        instances_per_region=shape.per_lane,
        seed=21,
        state_mix={"running": 1.0},
        time_scale=shape.time_scale,
        pending_s=10.0,
        limits=limits,
        copies=CopyConfig(
            pending_s=shape.copy_pending_s,
            pending_sigma=shape.copy_pending_sigma,
            max_concurrent=shape.cap,
        ),
    )


def shard_config(tmp_path: Path, shape: Shape, *, max_wait_s: float = 6000) -> Path:
    """The one config every shard runs (AWS seconds and rates, ``time_scale`` of the mock);
    ``max_wait_s``: how long a copy is waited for, and a paused destination too."""
    own = {"burst": max(1, shape.burst // shape.shards), "rate_per_s": shape.rate / shape.shards}
    cap = shape.shard_cap if shape.shard_cap is not None else shape.cap // shape.shards
    cfg = fleet_config(
        sources_one_per_shard(shape.shards),
        scale=1,
        time_scale=shape.time_scale,
        limits={
            "CreateImage": {"burst": 50, "rate_per_s": 5},
            "DescribeImages": {"burst": 100, "rate_per_s": 20},
            "DescribeInstances": {"burst": 100, "rate_per_s": 20},
            "CopyImage": {"burst": shape.burst, "rate_per_s": shape.rate},
            "regions": {DESTINATION: {"CopyImage": own}} if shape.split_bucket else {},
        },
        copy={"regions": [DESTINATION], "max_concurrent_per_region": cap},
        wait={"poll_interval_s": 2, "timeout_s": max_wait_s, "not_found_grace_s": 60},
        retry={
            "base_delay_s": 0.5,
            "max_delay_s": 10,
            "quota_delay_s": 5,
            "max_outage_s": max_wait_s,
            "breaker_cooldown_s": 2.5,
            "breaker_max_cooldown_s": 15,
        },
    )
    return write_config(tmp_path / "fleet.yaml", cfg)


def start_shard(
    mock: MockEC2Thread, config: Path, tmp_path: Path, i: int, count: int
) -> subprocess.Popen[str]:
    args = [
        "run", "-c", config, "--endpoint-url", mock.endpoint_url, "--run-id", "dr-1",
        "--shard", f"{i}/{count}", "--report", tmp_path / f"shard-{i}.json",
        "--journal", tmp_path / f"journal-{i}.sqlite3", "--yes",
    ]  # fmt: skip
    return subprocess.Popen(
        cli_command(*args),
        env={**os.environ, "COLUMNS": "200"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_shards(
    mock_thread: MockFactory, tmp_path: Path, shape: Shape
) -> tuple[list[dict[str, Any]], dict[str, Any], MockEC2Thread]:
    """All shards at once, each its own process; their reports, the destination's stats."""
    mock = start_mock(mock_thread, shape)
    config = shard_config(tmp_path, shape)
    procs = [start_shard(mock, config, tmp_path, i, shape.shards) for i in range(shape.shards)]
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"shard {i}: {out}\n{err}"
    reports = [json.loads((tmp_path / f"shard-{i}.json").read_text()) for i in range(shape.shards)]
    return reports, copy_stats(mock), mock


def check_shared_destination(
    shape: Shape,
    reports: list[dict[str, Any]],
    dest: dict[str, Any],
    mock: MockEC2Thread,
    *,
    per_passed: float,
) -> dict[str, Any]:
    """Every assertion of the module docstring; returns the figures to print."""
    sources = sources_one_per_shard(shape.shards)
    # Each shard imaged its own lane and copied each of its images into the destination.
    expected: set[tuple[str, str]] = set()  # (source region, source image id)
    for i, rep in enumerate(reports):
        assert rep["shard"] == f"{i}/{shape.shards}"
        assert {r["region"] for r in rep["results"]} == {sources[i]}
        assert {r["outcome"] for r in rep["results"]} == {"available"}
        images = {(r["region"], r["image_id"]) for r in rep["results"]}
        assert len(images) == shape.per_lane
        copies = rep["copies"]
        bad = [(c["outcome"], c["error_code"]) for c in copies if c["outcome"] != "available"]
        assert not bad, bad[:3]
        assert sorted((c["source_region"], c["source_image_id"]) for c in copies) == sorted(images)
        assert {c["destination"] for c in copies} == {DESTINATION}
        expected |= images
    total = shape.shards * shape.per_lane
    assert len(expected) == total

    # Exactly once, by the mock's books: one copy per source image, none twice.
    assert mock.call(lambda m: m.copy_duplicates()) == {
        "by_token": {},
        "by_name": {},
        "by_source": {},
    }
    made = mock.call(lambda m: dict(m.fleet.copies.by_source))
    assert made == {(ACCOUNT, DESTINATION, r, i): 1 for r, i in expected}
    landed = mock.call(lambda m: m.images(ACCOUNT, DESTINATION))
    assert len(landed) == total == dest["made"]
    assert {(i["source_region"], i["source_image_id"]) for i in landed} == expected
    assert {i["state"] for i in landed} == {"available"}

    # The bucket: the requests that passed it fit burst + rate x elapsed in every window.
    bucket = dest["bucket"]
    assert (bucket["burst"], bucket["rate_per_s"]) == pytest.approx((shape.burst, shape.rate))
    times = dest["passed_at_s"]
    assert len(times) >= total  # every copy took a token (a refusal by the cap takes one too)
    assert worst_window_excess(times, bucket["burst"], bucket["rate_per_s"]) <= 1e-6
    # The throttles: within the bound (throttle_bound says why).
    passed, throttled = len(times), dest["throttled"]
    assert throttled == len(dest["throttled_at_s"])
    bound = throttle_bound(shape, passed, per_passed)
    assert throttled <= bound, (throttled, passed, bound)
    # The cap: never more copies pending than the destination allows, and no shard refused.
    assert 0 < dest["peak_pending"] <= dest["max_concurrent"] == shape.cap
    assert dest["limit_refused"] == 0
    span = max(times) - min(times)
    return {
        "copies": total,
        "passed": passed,
        "throttled": throttled,
        "throttled_share": round(throttled / (throttled + passed), 3),
        "bound": round(bound, 1),
        "peak_pending": dest["peak_pending"],
        "cap": shape.cap,
        "aws_s_first_to_last": round(span, 1),
        "bucket_floor_aws_s": round((passed - shape.burst) / shape.rate, 1),
    }


SMALL = Shape(
    shards=4, per_lane=20, burst=8, rate=1.0, cap=16, copy_pending_s=4.0, time_scale=100.0
)


def test_four_shards_copy_into_one_destination_within_its_bucket(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    reports, dest, mock = run_shards(mock_thread, tmp_path, SMALL)
    figures = check_shared_destination(SMALL, reports, dest, mock, per_passed=0.5)
    print("shared destination: " + json.dumps(figures))


BIG = Shape(shards=4, per_lane=150, burst=20, rate=1.0, cap=48, copy_pending_s=8.0, time_scale=60.0)


@pytest.mark.slow
@pytest.mark.parametrize("split_bucket", [False, True], ids=["as-if-alone", "split-bucket"])
def test_four_shards_600_copies_into_one_destination(
    mock_thread: MockFactory, tmp_path: Path, split_bucket: bool
) -> None:
    shape = Shape(**{**BIG.__dict__, "split_bucket": split_bucket})
    reports, dest, mock = run_shards(mock_thread, tmp_path, shape)
    figures = check_shared_destination(
        shape, reports, dest, mock, per_passed=0.05 if split_bucket else 0.5
    )
    print(
        f"shared destination, 600 copies, {'split' if split_bucket else 'whole'} bucket: "
        + json.dumps(figures)
    )


@pytest.mark.slow
def test_a_shard_meeting_a_destination_full_of_another_shards_copies_waits(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    # Both shards configured with the destination's whole cap (3), as a user would. Copies
    # stay pending 20,000 AWS s (20 s of wall time): shard 1 starts once shard 0's copies
    # fill the destination and meets it full. Right: it waits for a free slot (bounded by
    # retry.max_outage_s) and copies; today its destination stops and its copies are
    # not_started (exit 1).
    shape = Shape(
        shards=2, per_lane=3, burst=100, rate=1.0, cap=3, copy_pending_s=20_000.0,
        time_scale=1000.0, shard_cap=3, copy_pending_sigma=0.0,
    )  # fmt: skip
    mock = start_mock(mock_thread, shape)
    config = shard_config(tmp_path, shape, max_wait_s=100_000)
    first = start_shard(mock, config, tmp_path, 0, 2)
    try:
        deadline = time.monotonic() + 120
        while copy_stats(mock).get("peak_pending", 0) < shape.cap:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "shard 0 never filled the destination"
            time.sleep(0.05)
        second = start_shard(mock, config, tmp_path, 1, 2)
        out, err = second.communicate(timeout=300)
        assert copy_stats(mock)["limit_refused"] >= 1, "shard 1 never met the full destination"
        report = json.loads((tmp_path / "shard-1.json").read_text())
        assert second.returncode == 0, f"{out}\n{err}"
        assert {c["outcome"] for c in report["copies"]} == {"available"}
    finally:
        first.kill()  # its copies are not this test's business
        first.communicate(timeout=30)
