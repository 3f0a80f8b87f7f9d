"""SIGKILL a real ``fleetimage run`` during its copy phase; ``resume`` copies each image once.

CopyImage is applied at once and answered 0.4 s later (a slow answer), so the kill
leaves ``requesting`` copies whose copy exists: what a resend without its token (or without
the lookup by name and tags) would duplicate.
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
from fleetimage.mock.copy_config import CopyConfig
from fleetimage.mock.runner import MockEC2Thread

SOURCE = "us-east-1"
DESTINATION = "eu-west-1"


def _wait_for(what: str, check: Callable[[], bool], proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not check():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"process ended (rc {proc.returncode}) before {what}:\n{out}{err}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_sigkill_mid_copy_then_resume_copies_each_image_once(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    mock: MockEC2Thread = mock_thread(
        regions=(SOURCE, DESTINATION),
        instances_per_region=12,
        seed=5,
        time_scale=1.0,
        pending_s=0.2,
        state_mix={"running": 1.0},
        limits={"CopyImage": (2, 10)},
        faults=FaultConfig(slow=1.0, slow_s=0.4, actions=frozenset({"CopyImage"})),
        copies=CopyConfig(pending_s=0.5),
    )
    cfg = fleet_config(
        (SOURCE,),
        scale=1,
        limits={"CopyImage": {"burst": 2, "rate_per_s": 10}},
        wait={"poll_interval_s": 0.05, "timeout_s": 120, "not_found_grace_s": 5},
        copy={"regions": [DESTINATION], "tags": {"Purpose": "dr"}},
    )
    config = write_config(tmp_path / "fleet.yaml", cfg)
    journal = tmp_path / "journal.sqlite3"
    common: list[str | Path] = ["--endpoint-url", mock.endpoint_url, "--journal", journal, "--yes"]
    sources = {k for k in imageable(mock) if k[1] == SOURCE}
    assert len(sources) == 12

    def applied() -> int:
        return int(mock.call(lambda m: sum(m.fleet.copies.by_source.values())))

    proc = cli_process("run", "-c", config, *common)
    _wait_for("a third of the copies", lambda: applied() >= len(sources) // 3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    [(run_id,)] = journal_rows(journal, "SELECT run_id FROM runs")
    states = dict(
        journal_rows(
            journal, "SELECT state, COUNT(*) FROM copies WHERE run_id = ? GROUP BY state", run_id
        )
    )
    at_kill = applied()
    assert at_kill < len(sources), "the kill came too late to be mid-copy"
    # Copies EC2 made that the journal does not know the id of: resume must not copy again.
    assert states.get("requesting", 0) > 0, states

    proc = cli_process("resume", run_id, *common)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err

    copies = mock.call(lambda m: dict(m.fleet.copies.by_source))
    assert mock.call(lambda m: m.copy_duplicates()) == {
        "by_token": {},
        "by_name": {},
        "by_source": {},
    }
    assert len(copies) == len(sources) and set(copies.values()) == {1}
    rows = journal_rows(journal, "SELECT state FROM copies WHERE run_id = ?", run_id)
    assert [r[0] for r in rows] == ["available"] * len(sources)
    report = json.loads((tmp_path / f"fleetimage-{run_id}.json").read_text())
    assert report["copy_counts"]["available"] == len(sources)
    print(f"copy crash: killed with {at_kill} copies made, journal {states}; 0 duplicates")
