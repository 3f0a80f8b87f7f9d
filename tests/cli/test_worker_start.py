"""How a ``--workers`` run starts its worker processes and what crosses their pipes.

The workers are started before the run knows its lanes (their start-up overlaps the STS calls
that find them); those that get no lanes are dismissed, and none outlives the run. A run
nobody journals sends its write-aheads to the parent as ordinary events, without waiting.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest
from cli_helpers import MockFactory, fleet_config, imageable, write_config

from fleetimage import (
    Created,
    Event,
    FleetImageError,
    Outcome,
    Requested,
    load_config,
    run_fleet,
)
from fleetimage.core.models import LaneKey
from fleetimage.engine.bus import Bus
from fleetimage.engine.runstate import RunState
from fleetimage.engine.worker_process import WORKER_MODULE
from fleetimage.engine.workers import run_in_workers


def _workers_alive() -> list[psutil.Process]:
    """This process's worker processes that are still running (zombies excluded)."""
    alive = []
    for child in psutil.Process(os.getpid()).children():
        try:
            if WORKER_MODULE in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                alive.append(child)
        except psutil.NoSuchProcess:
            continue
    return alive


async def test_workers_are_started_before_the_lanes_are_found_and_dismissed_if_that_fails(
    tmp_path: Path,
) -> None:
    config = load_config(write_config(tmp_path / "fleet.yaml", fleet_config()))
    seen: list[int] = []

    async def lanes() -> Sequence[LaneKey]:
        seen.append(len(_workers_alive()))  # both already started, waiting for their jobs
        raise FleetImageError("the accounts could not be listed")

    with pytest.raises(FleetImageError, match="could not be listed"):
        await run_in_workers(
            2,
            config=config,
            run_id="never-dealt",
            started_at=datetime.now(UTC),
            lanes=lanes,
            plan=None,
            state=RunState(config.max_errors, total=0),
            bus=Bus([]),
            endpoint_url="http://127.0.0.1:9",  # never called: no worker gets a job
            dry_run=False,
            wait=True,
            retry_failed=False,
            adopt=False,
            resume=(),
            copies=(),
        )
    assert seen == [2]
    assert _workers_alive() == []


def test_a_worker_left_without_lanes_is_dismissed_and_the_run_completes(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    mock = mock_thread(regions=("us-east-1",), instances_per_region=8)
    config = load_config(
        write_config(tmp_path / "fleet.yaml", fleet_config(regions=("us-east-1",)))
    )
    report = run_fleet(
        config,
        journal=tmp_path / "j.sqlite3",
        run_id="one-lane",
        endpoint_url=mock.endpoint_url,
        workers=2,
    )
    available = {
        (r.account, r.region, r.instance_id)
        for r in report.results
        if r.outcome is Outcome.AVAILABLE
    }
    assert available == imageable(mock)
    assert mock.call(lambda m: m.duplicates()) == {}
    assert _workers_alive() == []


def test_without_a_journal_each_write_ahead_reaches_the_run_once_and_before_its_image(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    regions = ("us-east-1", "eu-west-1", "us-west-2")
    mock = mock_thread(regions=regions, instances_per_region=10)
    config = load_config(write_config(tmp_path / "fleet.yaml", fleet_config(regions)))
    order: list[tuple[str, tuple[str, str, str]]] = []

    def on_event(event: Event) -> None:
        if isinstance(event, Requested | Created):
            key = (event.account, event.region, event.instance_id or "")
            order.append((type(event).__name__, key))

    report = run_fleet(config, endpoint_url=mock.endpoint_url, on_event=on_event, workers=2)
    expected = imageable(mock)
    assert {
        (r.account, r.region, r.instance_id)
        for r in report.results
        if r.outcome is Outcome.AVAILABLE
    } == expected
    requested = Counter(key for kind, key in order if kind == "Requested")
    assert set(requested) == expected
    assert set(requested.values()) == {1}  # neither lost nor sent twice over the pipe
    first: dict[tuple[str, str, str], str] = {}
    for kind, key in order:
        first.setdefault(key, kind)
    assert set(first.values()) == {"Requested"}  # each target's Created came after it
    assert mock.call(lambda m: m.duplicates()) == {}


@pytest.mark.parametrize("stdin", ["/dev/null", "file"])
def test_a_worker_started_by_hand_says_so_and_exits(stdin: str, tmp_path: Path) -> None:
    # Without the check, asyncio fails to watch such a stdin and the worker waits for ever.
    source = Path(os.devnull) if stdin == "/dev/null" else tmp_path / "job"
    if stdin == "file":
        source.write_bytes(b"")
    with source.open("rb") as job:
        done = subprocess.run(
            [sys.executable, "-m", WORKER_MODULE],
            stdin=job,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert "fleetimage run --workers N" in done.stderr
    assert done.stdout == ""
