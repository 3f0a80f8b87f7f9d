"""SIGKILL a real ``fleetimage prune`` mid-deletion; ``fleetimage resume`` finishes it.

The mock holds a run's images (each with a snapshot) in two regions, plus images the prune must
not touch: another run of the same fleet and another fleet's run. DeregisterImage is applied
on arrival and answered later (a slow fault), so the kill leaves ``deleting`` rows whose image
is already gone, and rows not yet sent. Resume must deregister each planned image exactly once
(the mock counts DeregisterImage per image id), sweep the snapshots, and touch nothing else.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_helpers import MockFactory, cli_process, fleet_config, journal_rows, write_config

from fleetimage.core.tags import FLEET_TAG, RUN_TAG
from fleetimage.mock import FaultConfig

REGIONS = ("us-east-1", "eu-west-1")
RUN = "20260101T000000Z-aaaaaa"


def _wait_for(
    what: str, check: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"process ended (rc {proc.returncode}) before {what}:\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _prune_kill_resume(mock_thread: MockFactory, tmp_path: Path, per_region: int) -> None:
    # Real time; DeregisterImage burst 10 + 100/s per region, each answered 0.5 s after it is
    # applied: a few seconds of deleting, and a kill always finds calls applied, unanswered.
    mock = mock_thread(
        regions=REGIONS,
        instances_per_region=0,
        time_scale=1.0,
        limits={"DeregisterImage": (10, 100)},
        faults=FaultConfig(slow=1.0, slow_s=0.5, actions=frozenset({"DeregisterImage"})),
    )
    account = mock.mock.config.default_account
    seeded: dict[str, set[str]] = {}
    others: dict[str, set[str]] = {}
    for region in REGIONS:
        seeded[region] = set(
            mock.call(
                lambda m, r=region: m.seed_images(
                    account, r, per_region, {FLEET_TAG: "blue", RUN_TAG: RUN}
                )
            )
        )
        others[region] = set(
            mock.call(
                lambda m, r=region: m.seed_images(
                    account, r, 5, {FLEET_TAG: "blue", RUN_TAG: "20260102T000000Z-bbbbbb"}
                )
            )
        ) | set(
            mock.call(
                lambda m, r=region: m.seed_images(account, r, 5, {FLEET_TAG: "red", RUN_TAG: RUN})
            )
        )
    snapshots_before = {r: mock.call(lambda m, r=r: m.snapshot_ids(account, r)) for r in REGIONS}
    cfg = fleet_config(
        REGIONS,
        scale=1,
        name="blue",
        limits={"DeregisterImage": {"burst": 10, "rate_per_s": 100}},
        retention={"keep_last": 1, "min_age": 0},
    )
    config = write_config(tmp_path / "fleet.yaml", cfg)
    journal = tmp_path / "journal.sqlite3"
    common: list[str | Path] = ["--endpoint-url", mock.endpoint_url, "--journal", journal, "--yes"]
    total = per_region * len(REGIONS)

    proc = cli_process("prune", "-c", config, "--run", RUN, *common, "--progress-interval", "1")
    _wait_for(
        "a third of the deletions",
        lambda: mock.count(action="DeregisterImage") >= total // 3,
        proc,
    )
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    [(prune_id,)] = journal_rows(journal, "SELECT prune_id FROM prune_runs")
    states = dict(
        journal_rows(
            journal,
            "SELECT state, COUNT(*) FROM prune_items WHERE prune_id = ? GROUP BY state",
            prune_id,
        )
    )
    sent_at_kill = mock.count(action="DeregisterImage")
    assert sent_at_kill < total, "the kill came too late to be mid-deletion"
    assert states.get("deleting", 0) > 0 and states.get("planned", 0) > 0, states
    assert sum(states.values()) == total

    proc = cli_process("resume", prune_id, *common, "--report", tmp_path / "resume.csv")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "resuming prune" in err

    for region in REGIONS:
        calls = mock.call(lambda m, r=region: m.deregister_calls(account, r))
        assert {i: n for i, n in calls.items() if n != 1} == {}, "deregistered twice"
        assert set(calls) == seeded[region], "deregistered something the plan did not show"
        images = {i["image_id"]: i for i in mock.call(lambda m, r=region: m.images(account, r))}
        assert all(images[i]["deregistered"] for i in seeded[region])
        assert not any(images[i]["deregistered"] for i in others[region])
        snapshots = mock.call(lambda m, r=region: m.snapshot_ids(account, r))
        assert snapshots == {
            s
            for s in snapshots_before[region]
            if any(s in images[i]["snapshot_ids"] for i in others[region])
        }, "orphaned or wrongly deleted snapshots"
    assert journal_rows(journal, "SELECT status FROM prune_runs") == [("finished",)]
    assert journal_rows(journal, "SELECT DISTINCT state FROM prune_items") == [("deleted",)]
    rows = (tmp_path / "resume.csv").read_text().splitlines()
    assert rows[0].startswith("account,region,image_id") and len(rows) == total + 1
    print(
        f"prune crash test: {total} images, killed after {sent_at_kill} DeregisterImage "
        f"(journal {states}); resumed: every planned image deregistered once, nothing else"
    )


def test_sigkill_mid_prune_then_resume_deletes_each_planned_image_once(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    _prune_kill_resume(mock_thread, tmp_path, per_region=150)


@pytest.mark.slow
def test_sigkill_mid_prune_of_2000_images_then_resume(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    _prune_kill_resume(mock_thread, tmp_path, per_region=1000)
