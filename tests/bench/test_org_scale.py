"""The org-scale benchmark scenario and what it needs from the harness: 100 lanes of 5
accounts (4 of them through AssumeRole on the mock), the bound over 100 lanes, fleetimage
with worker processes as its own contender, and CPU counted over the contender's children.

Small fleets on a time-compressed mock; the 10,000-instance scenario itself is run by
``python -m benchmarks --scenario org-scale`` (results/org-scale.md), never here.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest

from benchmarks.__main__ import _contenders_for
from benchmarks.bound import lane_bound
from benchmarks.contenders import (
    CONTENDERS,
    OPT_IN,
    WORKERS,
    ContenderJob,
    _boto3_lanes,
    _discover_lane,
    unavailable,
)
from benchmarks.harness import fleet_lanes, run_scenario, scenario_bound
from benchmarks.meter import Meter
from benchmarks.mockproc import IMAGEABLE
from benchmarks.scenarios import Scenario, load_scenarios
from fleetimage import Outcome, image_fleet, parse_config

# A child that burns this much CPU (its own measure, not wall time) before it reports.
BURN_S = 0.2
_BURN = (
    "import sys, time\n"
    f"while time.process_time() < {BURN_S}: pass\n"
    "print('burnt', flush=True)\n"
    "sys.stdin.read()\n"
)


@pytest.fixture(scope="module")
def org() -> Scenario:
    return load_scenarios()["org-scale"]


def small(org: Scenario, regions: int = 1, per_lane: int = 4) -> Scenario:
    """org-scale's shape (5 accounts, AWS's buckets) with a few instances in a few regions."""
    return replace(
        org,
        regions=regions,
        instances=per_lane * regions * org.accounts,
        time_scale=500.0,
        pending_s=2.0,
    )


def test_org_scale_is_100_lanes_of_5_accounts_by_20_regions(org: Scenario) -> None:
    assert len(set(org.account_ids)) == 5 and len(set(org.region_names)) == 20
    assert org.instances_per_region == 100  # per (account, region) lane
    assert org.limits()["CreateImage"] == (50.0, 5.0) and org.refill == "per_second"
    assert org.contenders is not None
    assert {"fleetimage", "fleetimage-w2", "boto3-batch-standard"} <= set(org.contenders)
    config = parse_config(org.fleet_config())
    roles = [a.role_arn for t in config.targets for a in t.accounts]
    assert sorted(r.split(":")[4] for r in roles if r) == sorted(org.account_ids[1:])


@pytest.fixture(scope="module")
def org_lanes(org: Scenario) -> dict[str, dict[str, Any]]:
    return fleet_lanes(org)


def test_the_bound_over_100_lanes_is_the_slowest_lanes_own(
    org: Scenario, org_lanes: dict[str, dict[str, Any]]
) -> None:
    lanes = org_lanes
    assert set(lanes) == {f"{a}/{r}" for a in org.account_ids for r in org.region_names}
    # Each lane on its own bucket (AWS's 50 at once, then 5 a second), nothing shared across
    # lanes: the run's bound is the largest lane bound, whichever lane holds it.
    per_lane = {
        key: lane_bound(lane["pending_aws_s"], burst=50, rate_per_s=5, refill="per_second")
        for key, lane in lanes.items()
    }
    bound, deciding = scenario_bound(org)
    assert bound == max(per_lane.values()) == per_lane[deciding]
    # Every lane's last token comes after its burst: ceil((n - 50) / 5) whole seconds.
    for key, lane in lanes.items():
        n = len(lane["pending_aws_s"])
        assert per_lane[key] >= -(-(n - 50) // 5) + lane["pending_aws_s"][-1]
    assert sum(len(lane["pending_aws_s"]) for lane in lanes.values()) > 8_000


def _imageable(sc: Scenario, mock: Any) -> set[tuple[str, str, str]]:
    return {
        (a, r, i.instance_id)
        for a in sc.account_ids
        for r in sc.region_names
        for i in mock.fleet.state(a, r).instance_list
        if i.state in IMAGEABLE
    }


async def test_five_accounts_image_through_assumed_roles(org: Scenario, mock_ec2: Any) -> None:
    sc = small(org)
    mock = await mock_ec2(sc.mock_config())
    expected = _imageable(sc, mock)
    # fleetimage: one role per other account, from the scenario's own config.
    report = await image_fleet(parse_config(sc.fleet_config()), endpoint_url=mock.endpoint_url)
    imaged = [r for r in report.results if r.outcome is not Outcome.SKIPPED]
    got = {(r.account, r.region, r.instance_id) for r in imaged}
    assert got == expected and {a for a, _, _ in got} == set(sc.account_ids)
    assert all(r.outcome is Outcome.AVAILABLE for r in imaged)
    assert mock.count("AssumeRole") >= len(sc.account_ids) - 1


@pytest.mark.slow  # ~2 s of CPU, most of it loading boto3's EC2 model; the benchmark uses it
async def test_the_scripts_assume_roles_in_five_accounts(org: Scenario, mock_ec2: Any) -> None:
    """Each boto3 (account, region) client lists that account's own instances, in the order
    the bound assumes (the fleet's, as fleet_lanes reads it)."""
    # The scripts' assumed-role sessions do not renew: an hour on the mock's clock must
    # outlast the test on a loaded machine (at 500x it is 7 s).
    sc = replace(small(org), time_scale=20.0)
    mock = await mock_ec2(sc.mock_config())
    expected = _imageable(sc, mock)
    job = ContenderJob("boto3-batch-standard", sc, mock.endpoint_url, mock.credentials(), 30, "t")
    lanes = await anyio.to_thread.run_sync(lambda: _boto3_lanes(job, {"mode": "standard"}, 2))
    order = fleet_lanes(sc)  # the bound's order: imageable instances as the fleet lists them
    assert len(lanes) == 5
    for account, region, ec2 in lanes:
        listed = await anyio.to_thread.run_sync(_discover_lane, ec2)
        assert {(account, region, i) for i in listed} <= expected
        pending = [mock.fleet.pending_aws_s(account, region, i) for i in listed]
        assert pending == order[f"{account}/{region}"]["pending_aws_s"]
    assert mock.count("AssumeRole") == len(sc.account_ids) - 1


def test_opt_in_contenders_run_only_where_named(org: Scenario) -> None:
    fleet_1k = load_scenarios()["fleet-1k"]
    everyone = list(CONTENDERS)
    assert set(WORKERS) >= OPT_IN and "fleetimage-w2" in everyone
    assert "fleetimage-w2" not in _contenders_for(fleet_1k, everyone, set())
    assert "fleetimage-w2" in _contenders_for(fleet_1k, everyone, {"fleetimage-w2"})
    assert _contenders_for(org, everyone, set()) == [c for c in everyone if c in org.contenders]


def test_workers_contender_is_skipped_with_its_reason_where_the_engine_has_none(
    org: Scenario,
) -> None:
    has_workers = "workers" in inspect.signature(image_fleet).parameters
    reason = unavailable("fleetimage-w2")
    assert unavailable("fleetimage") is None
    assert (reason is None) == has_workers
    if has_workers:  # the run itself: test_workers_contender_images_in_worker_processes
        return
    logged: list[str] = []
    outcome = run_scenario(small(org), ["fleetimage-w2"], log=logged.append)
    assert reason is not None and "workers" in reason
    assert outcome["skipped_contenders"] == {"fleetimage-w2": reason}
    assert outcome["rows"] == [] and outcome["runs"] == {}
    assert any(line.strip() == f"fleetimage-w2 skipped: {reason}" for line in logged)


@pytest.mark.slow  # a mock process and a contender process: ~20 s on a loaded 2-core machine
def test_workers_contender_images_in_worker_processes(org: Scenario) -> None:
    if unavailable("fleetimage-w2") is not None:
        pytest.skip("image_fleet has no workers parameter in this checkout")
    sc = replace(small(org), repeats=1)
    # Its bound is milliseconds of wall time: cut off after two minutes, not 20 bounds.
    sc = replace(sc, cutoff_bounds=120.0 / sc.wall(scenario_bound(sc)[0]))
    outcome = run_scenario(sc, ["fleetimage-w2"], log=lambda _: None)
    (row,) = outcome["runs"]["fleetimage-w2"]
    assert "error" not in row, row.get("traceback")
    assert row["finished"] and row["available"] == row["targets"] > 0
    assert row["duplicates"] == 0 and row["lost"] == 0 and row["workers"] == 2
    # The workers' CPU is counted: they are the contender's children.
    assert row["cpu_children_s"] > 0 and row["cpu_s"] >= row["cpu_children_s"]


def test_meter_counts_children_that_ended_and_children_still_alive() -> None:
    meter = Meter()
    ended = subprocess.Popen(
        [sys.executable, "-c", _BURN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    ended.communicate("", timeout=60)
    alive = subprocess.Popen(
        [sys.executable, "-c", _BURN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert alive.stdout is not None and alive.stdout.readline() == "burnt\n"
        mine = time.process_time() + BURN_S
        while time.process_time() < mine:  # the main thread's own CPU
            pass
        measured = meter.result()
    finally:
        alive.communicate("", timeout=60)
    # Each child burnt BURN_S of its own CPU (start-up comes on top).
    assert measured["cpu_children_s"] >= 0.9 * 2 * BURN_S  # /proc counts whole ticks
    assert measured["live_children"] >= 1
    assert measured["cpu_s"] == pytest.approx(measured["cpu_self_s"] + measured["cpu_children_s"])
    assert measured["cpu_self_s"] >= 0.9 * BURN_S
    if Path("/proc/self/schedstat").exists():  # Linux: the main thread's time on a CPU
        assert measured["main_thread_run_s"] >= 0.9 * BURN_S
        assert measured["main_thread_wait_s"] >= 0
