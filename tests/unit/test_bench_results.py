"""The benchmarks' results files: the compact form (round trip, the one-off conversion of an
old file, the report and plot drawn from either form) and the DescribeImages split."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.counters import describe_images_split
from benchmarks.report import markdown, plot
from benchmarks.results_format import (
    compact,
    completion_times,
    convert_file,
    dumps,
    pack_completions,
)

# (seconds since the run's start, available?) as the harness records them, unsorted
RAW = [(1.23449, True), (0.5, True), (2.0004, False), (1.2346, True), (0.5, True), (3.9996, True)]


def row(contender: str, **extra: Any) -> dict[str, Any]:
    """A finished run's metrics row with the fields the report reads."""
    base: dict[str, Any] = {
        "contender": contender,
        "scenario": "faults",
        "time_scale": 5,
        "workers": 1,
        "finished": True,
        "targets": 5,
        "available": 4,
        "failed": 1,
        "lost": 0,
        "duplicates": 0,
        "elapsed_s": 4.5,
        "makespan_s": 4.0,
        "makespan_aws_s": 20.0,
        "images_per_s": 1.0,
        "images_per_aws_s": 0.2,
        "efficiency": None,
        "efficiency_imaging": None,
        "first_create_s": 0.2,
        "create_calls": 6,
        "create_throttled": 0,
        "create_throttled_pct": 0.0,
        "describe_images_calls": 9,
        "describe_images_throttled": 1,
        "describe_images_per_image": 0.05,
        "cpu_ms_per_image": 2.0,
        "cpu_s": 0.01,
        "cpu_children_s": 0.0,
        "cores_used": 0.5,
        "peak_rss_mb": 80.0,
        "completions": list(RAW),
    }
    return {**base, **extra}


def results(**extra: Any) -> dict[str, Any]:
    """An old-form (format 1) results file: completions pairs in every row and run."""
    runs = {"fleetimage": [row("fleetimage", **extra), row("fleetimage", **extra)]}
    return {
        "command": "python -m benchmarks --scenario faults",
        "date": "2026-11-29 16:17:37 +0000",
        "host": "test",
        "python": "3.11",
        "scenarios": {
            "faults": {
                "description": "faults",
                "time_scale": 5,
                "targets": 5,
                "settings": {"refill": "per_second"},
                "bound_s": 3.0,
                "bound_aws_s": 15.0,
                "bound_lane": "1/us-east-1",
                "rows": [row("fleetimage", **extra)],
                "runs": runs,
                "skipped_contenders": {},
            }
        },
    }


def test_completions_round_trip_to_the_millisecond() -> None:
    packed = pack_completions(RAW)
    # delta-encoded whole milliseconds, failures apart
    assert packed == {"unit_s": 0.001, "available": [500, 0, 734, 1, 2765], "failed": [2000]}
    ok, bad = completion_times({"completions": packed})
    assert ok == sorted(ok) and len(ok) == 5 and bad == [2.0]
    expected = sorted(t for t, good in RAW if good)
    assert all(abs(a - b) <= 0.0005 + 1e-12 for a, b in zip(ok, expected, strict=True))
    # the old form reads the same
    old_ok, old_bad = completion_times({"completions": RAW})
    assert old_ok == expected and old_bad == [2.0004]
    assert completion_times({}) == ([], [])


def test_compact_keeps_summaries_and_the_median_runs_curve(tmp_path: Path) -> None:
    original = results(describe_images_polls=1, describe_images_lookups=3)
    before = copy.deepcopy(original)
    small = compact(original)
    assert original == before  # not modified in place
    sc = small["scenarios"]["faults"]
    assert sc["rows"][0]["completions"]["available"] == [500, 0, 734, 1, 2765]
    assert all("completions" not in r for r in sc["runs"]["fleetimage"])
    assert {k: v for k, v in sc["rows"][0].items() if k != "completions"} == {
        k: v for k, v in before["scenarios"]["faults"]["rows"][0].items() if k != "completions"
    }
    text = dumps(small)
    assert json.loads(text) == small
    assert '"available": [500,0,734,1,2765]' in text  # one line, not one line per value
    # the report and the plot read the compact form
    md = markdown(json.loads(text))
    assert "| 0.050 (—) | 3 / — / 1 |" in md
    plot(json.loads(text), tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_an_old_file_converts_once_with_its_figures_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "latest.json"
    old = results()
    path.write_text(json.dumps(old, indent=1) + "\n")
    before, after = convert_file(path)
    assert after < before
    new = json.loads(path.read_text())
    assert new["results_format"] == 2
    new_row = new["scenarios"]["faults"]["rows"][0]
    old_row = old["scenarios"]["faults"]["rows"][0]
    # then every DescribeImages per image: kept under the name that says so; no polls figure
    assert new_row["describe_images_calls_per_image"] == old_row["describe_images_per_image"]
    assert "describe_images_per_image" not in new_row
    for key, value in old_row.items():
        if key not in ("completions", "describe_images_per_image"):
            assert new_row[key] == value, key
    assert completion_times(new_row) == (pytest.approx([0.5, 0.5, 1.234, 1.235, 4.0]), [2.0])
    run = new["scenarios"]["faults"]["runs"]["fleetimage"][0]
    assert "completions" not in run and run["describe_images_calls_per_image"] == 0.05
    # the split it predates shows as "—"; the throttled count it had is kept
    assert "| — (0.050) | — / — / 1 |" in markdown(new)
    # a second conversion changes nothing
    text = path.read_text()
    assert convert_file(path) == (after, after) and path.read_text() == text


def test_describe_images_split_counts_answered_polls_only_as_polls() -> None:
    def kind(k: str, outcome: str, n: int, action: str = "DescribeImages") -> dict[str, Any]:
        return {
            "account": "1",
            "region": "r",
            "action": action,
            "kind": k,
            "outcome": outcome,
            "count": n,
        }

    split = describe_images_split(
        [
            kind("poll", "ok", 40),
            kind("poll", "throttled", 3),
            kind("poll", "fault", 2),
            kind("poll", "lost_answer", 1),
            kind("poll", "error", 1),
            kind("lookup", "ok", 5),
            kind("lookup", "fault", 1),
            kind("lookup", "throttled", 1),
            kind("listing", "ok", 2),
            kind("poll", "ok", 99, action="DescribeSnapshots"),
        ]
    )
    assert split == {
        "describe_images_polls": 40,
        "describe_images_lookups": 7,
        "describe_images_listings": 2,
        "describe_images_throttled": 4,
        "describe_images_failed": 5,
    }
    assert describe_images_split([]) == dict.fromkeys(split, 0)
