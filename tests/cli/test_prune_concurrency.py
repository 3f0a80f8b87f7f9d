"""A prune runs while an imaging run holds the same journal: one writer per run kind.

The imaging run (a real process) is held in its wait: its images stay pending until the test
makes them available. Meanwhile a second imaging run on the journal is refused (one imaging
writer at a time), and a prune of an older run, in another process on the same journal file,
plans, deletes and journals. Then the imaging run is released; both are journaled finished.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from cli_helpers import (
    REGIONS,
    MockFactory,
    cli,
    cli_process,
    fleet_config,
    journal_rows,
    one_line_error,
    write_config,
)

from fleetimage.core.tags import FLEET_TAG, RUN_TAG

OLD_RUN = "20260101T000000Z-aaaaaa"


def _wait_for(what: str, check: Callable[[], bool], proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while not check():
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"process ended (rc {proc.returncode}) before {what}:\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_prune_and_imaging_run_share_a_journal(mock_thread: MockFactory, tmp_path: Path) -> None:
    mock = mock_thread(instances_per_region=4, pending_s=10_000)  # pending until released
    account = mock.mock.config.default_account
    old = {
        r: set(
            mock.call(
                lambda m, r=r: m.seed_images(account, r, 20, {FLEET_TAG: "blue", RUN_TAG: OLD_RUN})
            )
        )
        for r in REGIONS
    }
    cfg = fleet_config(name="blue", retention={"keep_last": 1, "min_age": 0})
    cfg["wait"]["timeout_s"] = 100_000
    config = write_config(tmp_path / "fleet.yaml", cfg)
    journal = tmp_path / "journal.sqlite3"
    common: list[str | Path] = ["--endpoint-url", mock.endpoint_url, "--journal", journal, "--yes"]
    imageable = 2 * 4 - sum(
        i["state"] not in ("running", "stopped", "stopping")
        for r in REGIONS
        for i in mock.call(lambda m, r=r: m.instances(account, r))
    )

    run = cli_process("run", "-c", config, *common, "--progress-interval", "1")
    try:
        _wait_for(
            "every image created (the run now waits)",
            lambda: mock.count(action="CreateImage", outcome="ok") == imageable,
            run,
        )
        second = cli("run", "-c", config, *common)
        assert (
            second.code == 2
            and "in use by another fleetimage process (a run, pid" in one_line_error(second)
        )

        pruned = cli("prune", "-c", config, "--run", OLD_RUN, *common)
        assert pruned.code == 0, pruned.output
        assert run.poll() is None, "the imaging run must still hold the journal"
        assert journal_rows(journal, "SELECT status FROM runs") == [("running",)]
        assert journal_rows(journal, "SELECT run_id, status FROM prune_runs") == [
            (OLD_RUN, "finished")
        ]
        for r in REGIONS:
            deleted = {
                i for i, n in mock.call(lambda m, r=r: m.deregister_calls(account, r)).items() if n
            }
            assert deleted == old[r]

        for r in REGIONS:  # release the imaging run
            for image in mock.call(lambda m, r=r: m.images(account, r)):
                if not image["deregistered"]:
                    mock.call(
                        lambda m, r=r, i=image["image_id"]: m.set_image_state(
                            account, r, i, "available"
                        )
                    )
        _, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert journal_rows(journal, "SELECT status FROM runs") == [("finished",)]
    states = journal_rows(journal, "SELECT state, COUNT(*) FROM targets GROUP BY state")
    assert dict(states).get("available") == imageable
