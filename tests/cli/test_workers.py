"""``--workers N``: one run's lanes in N processes; this one is the run's journal and report.

The kill tests use the crash tests' slow mock: CreateImage is applied at once and answered a
second later, so a kill mid-create leaves ``requesting`` rows whose image exists — what a
blind resend would duplicate.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
from cli_helpers import (
    UNLIMITED_IMAGING,
    MockFactory,
    cli,
    cli_process,
    fleet_config,
    imageable,
    journal_rows,
    paged_fleet,
    write_config,
)
from test_crash import _kill, _states, _wait_for

from fleetimage import Outcome, load_config, run_fleet
from fleetimage.mock import FaultConfig, MockEC2Thread

REGIONS4 = ("us-east-1", "eu-west-1", "us-west-2", "ap-southeast-2")


def _children(pid: int) -> list[int]:
    """The live (not zombie) processes whose parent is ``pid``."""
    return [c.pid for c in psutil.Process(pid).children() if _alive(c.pid)]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _slow_mock(mock_thread: MockFactory) -> MockEC2Thread:
    return mock_thread(
        regions=REGIONS4,
        instances_per_region=16,
        seed=12,
        time_scale=1.0,
        pending_s=2.0,
        limits={"CreateImage": (5, 8)},
        faults=FaultConfig(slow=1.0, slow_s=1.0, actions=frozenset({"CreateImage"})),
    )


def _slow_config(tmp_path: Path) -> Path:
    return write_config(
        tmp_path / "fleet.yaml",
        fleet_config(
            REGIONS4,
            scale=1,
            limits={"CreateImage": {"burst": 5, "rate_per_s": 8}},
            wait={"poll_interval_s": 0.2, "timeout_s": 120, "not_found_grace_s": 5},
        ),
    )


def _mid_create(
    mock_thread: MockFactory, tmp_path: Path, run_id: str, created: int | None = None
) -> tuple[MockEC2Thread, Path, set[tuple[str, str, str]], subprocess.Popen[str], list[int]]:
    """``run --workers 2`` on the slow mock, once ``created`` images (default: a third) are
    made: (mock, journal, imageable targets, the run's process, its two workers)."""
    mock = _slow_mock(mock_thread)
    config, journal = _slow_config(tmp_path), tmp_path / "j.sqlite3"
    expected = imageable(mock)
    proc = cli_process(
        "run", "-c", config, "--journal", journal, "--run-id", run_id, "--workers", "2",
        "--endpoint-url", mock.endpoint_url, "--yes", "--report", tmp_path / "r.json",
    )  # fmt: skip
    wanted = len(expected) // 3 if created is None else created
    _wait_for(
        f"{wanted} images",
        lambda: mock.count(action="CreateImage", outcome="ok") >= wanted,
        proc,
    )
    workers = _children(proc.pid)
    assert len(workers) == 2, workers
    return mock, journal, expected, proc, workers


def _all_settled(journal: Path, run_id: str, imageable: int) -> None:
    states = _states(journal, run_id)
    assert states.pop("available") == imageable
    assert set(states) <= {"skipped"}, states  # stopped-or-gone instances, never an open row


def _each_instance_once(mock: MockEC2Thread) -> None:
    assert mock.call(lambda m: m.duplicates()) == {}
    per_instance = mock.call(lambda m: m.images_per_instance())
    assert set(per_instance) == imageable(mock)
    assert set(per_instance.values()) == {1}


def test_two_workers_image_every_target_once_into_one_journal(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    mock = mock_thread(regions=REGIONS4, instances_per_region=15)
    config = load_config(write_config(tmp_path / "fleet.yaml", fleet_config(REGIONS4)))
    journal = tmp_path / "j.sqlite3"
    report = run_fleet(
        config, journal=journal, run_id="two-workers", endpoint_url=mock.endpoint_url, workers=2
    )
    expected = imageable(mock)
    available = {
        (r.account, r.region, r.instance_id)
        for r in report.results
        if r.outcome is Outcome.AVAILABLE
    }
    assert available == expected
    assert len(report.results) == len(
        {(r.account, r.region, r.instance_id) for r in report.results}
    )
    _each_instance_once(mock)
    _all_settled(journal, "two-workers", len(expected))
    lanes = journal_rows(journal, "SELECT count(*) FROM lanes WHERE state = 'planned'")
    assert lanes == [(len(REGIONS4),)]


def test_workers_image_each_lane_from_its_first_discovery_page(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    """Lanes of two DescribeInstances pages (each answered after 1 s, real time), discovered
    by the workers themselves: images are made before the lanes are marked discovered, the
    parent's journal has every target's row before its image, and each instance gets one."""
    regions = REGIONS4[:2]
    mock = paged_fleet(mock_thread, regions, 1100, pending_s=0.5)
    cfg = fleet_config(regions, limits=UNLIMITED_IMAGING)
    config = load_config(write_config(tmp_path / "fleet.yaml", cfg))
    journal = tmp_path / "j.sqlite3"
    order: list[str] = []
    report = run_fleet(
        config,
        journal=journal,
        run_id="paged-workers",
        endpoint_url=mock.endpoint_url,
        workers=2,
        on_event=lambda e: order.append(type(e).__name__),
    )
    assert report.ok and report.counts["available"] == 2 * 1100
    assert order.count("LanePlanned") == 2
    assert order.index("Created") < order.index("LanePlanned")
    _each_instance_once(mock)
    _all_settled(journal, "paged-workers", 2 * 1100)
    lanes = journal_rows(journal, "SELECT count(*) FROM lanes WHERE state = 'planned'")
    assert lanes == [(2,)]


def test_a_killed_worker_is_started_again_and_nothing_is_made_twice(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    mock, journal, expected, proc, workers = _mid_create(mock_thread, tmp_path, "worker-kill")
    os.kill(workers[0], signal.SIGKILL)
    assert mock.count(action="CreateImage", outcome="ok") < len(expected)
    out, err = proc.communicate(timeout=180)

    assert proc.returncode == 0, out + err
    assert "workerrestarted" in err and "exit_code=-9" in err, err
    _each_instance_once(mock)
    _all_settled(journal, "worker-kill", len(expected))


def test_kill_9_of_the_parent_stops_its_workers_and_resume_finishes(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    mock, journal, expected, proc, workers = _mid_create(mock_thread, tmp_path, "parent-kill")
    _kill(proc)
    # Their pipe closed, the workers stop at once (bounded: a hung one fails the test).
    deadline = time.monotonic() + 60
    while any(_alive(pid) for pid in workers):
        assert time.monotonic() < deadline, "a worker outlived its parent"
        time.sleep(0.05)
    made = mock.count(action="CreateImage", outcome="ok")
    assert made < len(expected), "the kill came too late to be mid-create"
    states = _states(journal, "parent-kill")
    assert states.get("requesting", 0) > 0, states

    ran = cli(
        "resume", "parent-kill", "--journal", journal, "--endpoint-url", mock.endpoint_url,
        "--yes", "--workers", "2", "--report", tmp_path / "r2.json",
    )  # fmt: skip
    assert ran.code == 0, ran.output
    _each_instance_once(mock)
    _all_settled(journal, "parent-kill", len(expected))


def test_workers_must_be_a_count_or_auto(tmp_path: Path) -> None:
    config = write_config(tmp_path / "fleet.yaml", fleet_config())
    for bad in ("0", "two", "-1"):
        ran = cli("run", "-c", config, "--workers", bad, "--yes")
        assert ran.code == 2, ran.output
        assert "--workers" in ran.output
        assert bad in ran.output


def test_one_sigint_reaches_every_worker_through_the_parent(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    # The workers run in their own session: the terminal's Ctrl-C reaches only the parent,
    # which stops them all gracefully (in-flight calls settle), then resume finishes.
    mock, journal, expected, proc, workers = _mid_create(
        mock_thread, tmp_path, "ctrl-c", created=10
    )
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 130, out + err
    assert "Traceback" not in err
    assert not any(_alive(pid) for pid in workers)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["interrupted"] is True
    assert report["counts"]["available"] < len(expected)
    ran = cli("resume", "ctrl-c", "--journal", journal, "--endpoint-url", mock.endpoint_url)
    assert ran.code == 0, ran.output
    _each_instance_once(mock)


def test_the_error_budget_is_the_runs_not_each_workers(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    # Every image fails: with max_errors 20 the run stops after 21 failures counted across both
    # workers; a budget per worker would let each reach 21, so 42 or more.
    mock = mock_thread(
        regions=REGIONS4,
        instances_per_region=30,
        pending_s=0.5,
        failure_rate=1.0,
        state_mix={"running": 1.0},
    )
    cfg = fleet_config(
        REGIONS4,
        max_errors=20,
        concurrency={"max_in_flight_per_region": 1, "max_pending_images_per_region": 1},
    )
    report = run_fleet(
        load_config(write_config(tmp_path / "fleet.yaml", cfg)),
        endpoint_url=mock.endpoint_url,
        workers=2,
    )
    counts = report.counts
    # After the 21st failure, what was in flight or pending still fails: one image per lane,
    # plus what a lane started while the stop travelled to its worker (a few, never 21).
    assert 21 <= counts["failed"] < 42, counts
    assert counts["failed"] + counts["not_started"] == len(REGIONS4) * 30
    not_started = [r for r in report.results if r.outcome is Outcome.NOT_STARTED]
    assert {r.error_code for r in not_started} == {"ErrorBudgetExceeded"}


def test_copies_of_both_workers_images_land_once_each(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    # Two source lanes (one per worker), both copying into us-west-2; eu-west-1 is a source
    # and a destination (its worker's lane carries both).
    sources = ("us-east-1", "eu-west-1")
    mock = mock_thread(regions=(*sources, "us-west-2"), instances_per_region=15)
    base = fleet_config(sources)
    limits = {**base["limits"], "CopyImage": {"burst": 100, "rate_per_s": 50}}
    cfg = fleet_config(sources, limits=limits, copy={"regions": ["eu-west-1", "us-west-2"]})
    journal = tmp_path / "j.sqlite3"
    ran = cli(
        "run", "-c", write_config(tmp_path / "fleet.yaml", cfg), "--workers", "2",
        "--journal", journal, "--run-id", "copies", "--endpoint-url", mock.endpoint_url,
        "--report", tmp_path / "r.json",
    )  # fmt: skip
    assert ran.code == 0, ran.output
    made = {k for k in imageable(mock) if k[1] in sources}
    expected = sum(1 if region == "eu-west-1" else 2 for _, region, _ in made)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["copy_counts"]["available"] == report["copy_counts"]["total"] == expected
    assert not any(mock.call(lambda m: m.copy_duplicates()).values())
    rows = journal_rows(journal, "SELECT state, count(*) FROM copies GROUP BY state")
    assert rows == [("available", expected)]
    assert mock.call(lambda m: m.duplicates()) == {}
    assert set(mock.call(lambda m: m.images_per_instance())) == made
