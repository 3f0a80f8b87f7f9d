"""Smoke test of the benchmark harness (``python -m benchmarks --quick``).

Runs the quick scenarios (small fleets; fleetimage and boto3-batch-standard, once each, each
against its own mock process) and checks that the harness works and its numbers are sane —
never timings. Any efficiency above 1.01 fails: the bound is a lower bound on the makespan.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.results_format import completion_times

REPO = Path(__file__).resolve().parents[2]


def test_quick_benchmark_runs_and_accounts_for_every_target(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "quick.json").read_text())
    assert (tmp_path / "quick.md").read_text().startswith("# fleetimage benchmark results")
    assert (tmp_path / "quick.png").stat().st_size > 1000
    assert "--quick" in results["command"]
    assert set(results["scenarios"]) == {"fleet-1k", "unthrottled"}

    for name, scenario in results["scenarios"].items():
        rows = {row["contender"]: row for row in scenario["rows"]}
        assert set(rows) == {"fleetimage", "boto3-batch-standard"}, name
        for row in (r for runs in scenario["runs"].values() for r in runs):
            assert "error" not in row, row.get("traceback")
            assert row["targets"] > 0
            assert row["duplicates"] == 0
            assert 0 <= row["available"] <= row["targets"]
            assert row["create_calls"] >= row["available"]
            assert row["cpu_s"] > 0 and row["peak_rss_mb"] > 0
            for key in ("efficiency", "efficiency_imaging"):
                assert row[key] is None or 0 < row[key] <= 1.01, (name, row["contender"], key)
            if not row["finished"]:  # no per-image figures for a run cut off
                assert row["cpu_ms_per_image"] is None and row["makespan_s"] is None
        ours = rows["fleetimage"]
        # fleetimage finishes the quick fleets and accounts for every target.
        assert ours["finished"], name
        assert ours["available"] + ours["failed"] == ours["targets"], name
        assert ours["lost"] == 0 and ours["unaccounted"] == 0 and ours["missing_images"] == 0
        assert ours["makespan_s"] > 0
        assert len(completion_times(ours)[0]) == ours["available"]
        # per-run rows are summaries only; the median run's curve is in the summary row
        assert all("completions" not in r for rs in scenario["runs"].values() for r in rs)
        # polls/image counts the polls the mock answered, nothing else
        assert 0 < ours["describe_images_polls"] <= ours["describe_images_calls"]
        assert ours["describe_images_per_image"] == pytest.approx(
            ours["describe_images_polls"] / ours["available"]
        )
        if name == "fleet-1k":
            assert scenario["bound_s"] > 0 and ours["bound_s"] == scenario["bound_s"]
            assert rows["boto3-batch-standard"]["bound_s"] == scenario["bound_s"]
            assert ours["efficiency"] is not None and ours["efficiency_imaging"] is not None
            assert ours["efficiency"] <= ours["efficiency_imaging"]
        else:  # no buckets: no bound, no efficiency
            assert scenario["bound_s"] is None and ours["efficiency"] is None
