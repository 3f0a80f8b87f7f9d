"""The Python API survives a crash like the CLI does: a batch job calling ``run_fleet`` with a
journal and a run id is SIGKILLed mid-create; ``resume_fleet_sync`` finishes it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from cli_helpers import (
    UNLIMITED_IMAGING,
    MockFactory,
    fleet_config,
    imageable,
    journal_rows,
    paged_fleet,
    write_config,
)
from test_crash import _kill, _states, _wait_for

from fleetimage import Outcome, resume_fleet_sync
from fleetimage.engine.discovery import FIRST_PAGE_SIZE
from fleetimage.mock import FaultConfig
from fleetimage.mock.runner import MockEC2Thread

BATCH_JOB = textwrap.dedent(
    """
    import sys
    from fleetimage import load_config, run_fleet

    config, journal, run_id, url = sys.argv[1:]
    run_fleet(load_config(config), journal=journal, run_id=run_id, endpoint_url=url)
    """
)


def _batch_job(
    mock: MockEC2Thread,
    tmp_path: Path,
    run_id: str,
    regions: tuple[str, ...],
    *,
    limits: dict[str, Any],
) -> tuple[subprocess.Popen[str], Path]:
    """The batch job started on ``mock`` (real time) with its journal's path."""
    wait = {"poll_interval_s": 0.2, "timeout_s": 120, "not_found_grace_s": 5}
    config = write_config(
        tmp_path / "fleet.yaml", fleet_config(regions, scale=1, limits=limits, wait=wait)
    )
    journal = tmp_path / "batch.sqlite3"
    proc = subprocess.Popen(
        [sys.executable, "-c", BATCH_JOB, str(config), str(journal), run_id, mock.endpoint_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    return proc, journal


def test_batch_job_killed_mid_create_is_finished_by_resume_fleet(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    # CreateImage answers take 1 s and are applied at once: a kill leaves `requesting` rows
    # whose image exists, which a blind resend would duplicate.
    mock = mock_thread(
        instances_per_region=40,
        seed=12,
        time_scale=1.0,
        pending_s=2.0,
        limits={"CreateImage": (5, 8)},
        faults=FaultConfig(slow=1.0, slow_s=1.0, actions=frozenset({"CreateImage"})),
    )
    run_id = "nightly-2026-11-29"
    expected = imageable(mock)
    proc, journal = _batch_job(
        mock,
        tmp_path,
        run_id,
        ("us-east-1", "eu-west-1"),
        limits={"CreateImage": {"burst": 5, "rate_per_s": 8}},
    )
    _wait_for(
        "a third of the images",
        lambda: mock.count(action="CreateImage", outcome="ok") >= len(expected) // 3,
        proc,
    )
    _kill(proc)
    created = mock.count(action="CreateImage", outcome="ok")
    states = _states(journal, run_id)
    assert created < len(expected), "the kill came too late to be mid-create"
    assert states.get("requesting", 0) > 0, states

    report = resume_fleet_sync(run_id, journal=journal, endpoint_url=mock.endpoint_url)

    assert mock.call(lambda m: m.duplicates()) == {}
    per_instance = mock.call(lambda m: m.images_per_instance())
    assert set(per_instance) == expected and set(per_instance.values()) == {1}
    available = {
        (r.account, r.region, r.instance_id)
        for r in report.results
        if r.outcome is Outcome.AVAILABLE
    }
    assert available == expected and report.ok
    assert journal_rows(journal, "SELECT status FROM runs WHERE run_id = ?", run_id) == [
        ("finished",)
    ]
    print(f"api crash: killed with {created} created and {states} journaled; 0 duplicates")


def test_batch_job_killed_between_a_lanes_discovery_pages_is_finished_by_resume_fleet(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    """A lane of three DescribeInstances pages (100, 1,000 and 1,000 instances, each answered
    after 1 s) is imaged from its first page. Killed then (later pages not read, the lane not
    marked discovered), the run resumes by discovering the lane again and finishing what it
    journaled: one image each."""
    region = "us-east-1"
    mock = paged_fleet(mock_thread, (region,), 2100, pending_s=1.0)
    run_id = "nightly-2026-11-30"
    expected = imageable(mock)
    proc, journal = _batch_job(
        mock,
        tmp_path,
        run_id,
        (region,),
        limits=UNLIMITED_IMAGING,
    )
    _wait_for(
        "images of the first page",
        lambda: mock.count(action="CreateImage", outcome="ok") >= 50,
        proc,
    )
    _kill(proc)
    assert journal_rows(journal, "SELECT state FROM lanes") == [], "killed after discovery"
    journaled = sum(_states(journal, run_id).values())
    assert FIRST_PAGE_SIZE <= journaled < len(expected)

    report = resume_fleet_sync(run_id, journal=journal, endpoint_url=mock.endpoint_url)

    assert mock.count(action="DescribeInstances") >= 5  # the lane was discovered again
    assert mock.call(lambda m: m.duplicates()) == {}
    per_instance = mock.call(lambda m: m.images_per_instance())
    assert set(per_instance) == expected and set(per_instance.values()) == {1}
    assert report.ok and report.counts["available"] == len(expected) == 2100
    assert journal_rows(journal, "SELECT state FROM lanes") == [("planned",)]
