"""Smoke test of the benchmark harness (``python -m benchmarks --quick``).

Runs the quick scenarios (small fleets; fleetimage and boto3-threads, each against its own mock
process) and checks that the harness works and its numbers are sane — never timings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
        assert set(rows) == {"fleetimage", "boto3-threads"}, name
        for row in rows.values():
            assert "error" not in row, row.get("traceback")
            assert row["targets"] > 0
            assert row["duplicates"] == 0
            assert 0 <= row["available"] <= row["targets"]
            assert row["create_calls"] >= row["available"]
            assert row["cpu_s"] > 0 and row["peak_rss_mb"] > 0
        ours = rows["fleetimage"]
        # fleetimage finishes the quick fleets and accounts for every target.
        assert ours["finished"], name
        assert ours["available"] + ours["failed"] == ours["targets"], name
        assert ours["lost"] == 0 and ours["unaccounted"] == 0 and ours["missing_images"] == 0
        assert ours["makespan_s"] > 0
        assert len([ok for _, ok in ours["completions"] if ok]) == ours["available"]
        if name == "fleet-1k":
            assert 0 < ours["efficiency"] <= 1.05
            assert ours["bound_s"] > 0
        else:  # no buckets: no bound, no efficiency
            assert ours["efficiency"] is None
