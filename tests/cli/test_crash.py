"""SIGKILL a real ``fleetimage run`` at several points; ``resume`` finishes with one image each.

One run is killed three times, each kill picked from the mock's counters and the journal:

1. during discovery (the run is journaled, DescribeInstances is in flight, nothing created);
2. mid-create (some CreateImage answered, others in flight or waiting for tokens: the journal
   holds ``requesting`` rows whose image may or may not exist);
3. mid-wait (every target created, images still pending).

Each time ``fleetimage resume`` picks up where the dead process left off; the last one runs
to the end. The mock then shows exactly one image per imageable instance and no duplicate.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from cli_helpers import (
    MockFactory,
    cli_process,
    fleet_config,
    imageable,
    journal_rows,
    write_config,
)

from fleetimage.mock import FaultConfig
from fleetimage.mock.runner import MockEC2Thread

REGIONS = ("us-east-1", "eu-west-1")


def _wait_for(
    what: str, check: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(
                f"process ended (rc {proc.returncode}) before {what}:\n{out}\n{err}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL


def _states(journal: Path, run_id: str) -> dict[str, int]:
    rows = journal_rows(
        journal, "SELECT state, COUNT(*) FROM targets WHERE run_id = ? GROUP BY state", run_id
    )
    return {state: n for state, n in rows}


def test_sigkill_at_three_points_then_resume_images_each_instance_once(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    # Real time (time_scale 1), CreateImage limited to burst 5 + 8/s per region, so creating
    # ~100 images takes ~6 s; images pend 3 s. DescribeInstances and CreateImage answers take
    # 1 s: a CreateImage is applied at once and answered a second later, so a kill mid-create
    # leaves `requesting` rows whose image exists (what a naive retry would duplicate).
    mock: MockEC2Thread = mock_thread(
        instances_per_region=60,
        seed=11,
        time_scale=1.0,
        pending_s=3.0,
        limits={"CreateImage": (5, 8)},
        faults=FaultConfig(
            slow=1.0, slow_s=1.0, actions=frozenset({"DescribeInstances", "CreateImage"})
        ),
    )
    url = mock.endpoint_url
    cfg = fleet_config(
        REGIONS,
        scale=1,
        limits={"CreateImage": {"burst": 5, "rate_per_s": 8}},
        wait={"poll_interval_s": 0.2, "timeout_s": 120, "not_found_grace_s": 5},
    )
    config = write_config(tmp_path / "fleet.yaml", cfg)
    journal = tmp_path / "journal.sqlite3"
    common: list[str | Path] = [
        "--endpoint-url",
        url,
        "--journal",
        journal,
        "--yes",
        "--progress-interval",
        "1",
    ]
    expected = imageable(mock)
    assert len(expected) > 90

    # 1. during discovery: the run row exists, DescribeInstances is in flight.
    proc = cli_process("run", "-c", config, *common)
    run_ids: list[str] = []

    def journaled() -> bool:
        run_ids[:] = [r[0] for r in journal_rows(journal, "SELECT run_id FROM runs")]
        return bool(run_ids)

    _wait_for("the run to be journaled", journaled, proc)
    [run_id] = run_ids
    # The run is journaled before planning. The mock counts a request on arrival and its
    # answer takes 1 s, so killing as soon as one is counted kills mid-discovery.
    _wait_for("discovery", lambda: mock.count(action="DescribeInstances") >= 1, proc)
    _kill(proc)
    assert mock.count(action="CreateImage") == 0
    states = _states(journal, run_id)
    assert not states.get("requesting") and not states.get("pending"), states

    # 2. mid-create: a quarter of the images answered, more requests in flight.
    proc = cli_process("resume", run_id, *common)
    _wait_for(
        "a quarter of the images",
        lambda: mock.count(action="CreateImage", outcome="ok") >= len(expected) // 4,
        proc,
    )
    _kill(proc)
    states = _states(journal, run_id)
    created = mock.count(action="CreateImage", outcome="ok")
    assert created < len(expected), "the kill came too late to be mid-create"
    assert states.get("requesting", 0) + states.get("planned", 0) > 0, states
    # images the journal does not know of yet: resume must find them by name
    unrecorded = created - states.get("pending", 0)
    assert unrecorded > 0, (created, states)

    # 3. mid-wait: nothing left to create, images still pending.
    proc = cli_process("resume", run_id, *common)

    def all_created() -> bool:
        s = _states(journal, run_id)
        return (
            not s.get("planned")
            and not s.get("requesting")
            and not s.get("not_started")
            and s.get("pending", 0) > 0
        )

    _wait_for("every image created", all_created, proc)
    _kill(proc)
    pending_at_kill = _states(journal, run_id).get("pending", 0)
    assert pending_at_kill > 0

    # 4. resume to the end.
    proc = cli_process("resume", run_id, *common)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert "resuming run" in err

    per_instance = mock.call(lambda m: m.images_per_instance())
    assert mock.call(lambda m: m.duplicates()) == {}
    assert {k for k, n in per_instance.items() if n == 1} == expected
    assert set(per_instance) == expected
    report = json.loads((tmp_path / f"fleetimage-{run_id}.json").read_text())
    assert report["counts"]["available"] == len(expected)
    assert report["counts"]["total"] == 2 * 60
    assert journal_rows(journal, "SELECT status FROM runs WHERE run_id = ?", run_id) == [
        ("finished",)
    ]
    print(
        f"crash test: kills at discovery, mid-create ({created} created, {unrecorded} of them "
        f"unrecorded, states {states}), "
        f"mid-wait ({pending_at_kill} pending); {len(expected)} images, 0 duplicates"
    )
