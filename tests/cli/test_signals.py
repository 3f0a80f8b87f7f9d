"""Ctrl-C once: stop starting, let in-flight settle, save, exit 130. Twice: exit at once.

Both leave a consistent journal that ``fleetimage resume`` finishes with one image each.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from cli_helpers import (
    MockFactory,
    cli,
    cli_process,
    fleet_config,
    imageable,
    journal_rows,
    write_config,
)

from fleetimage.mock import FaultConfig
from fleetimage.mock.faults import FaultInjector
from fleetimage.mock.runner import MockEC2Thread


def _wait_for_state(
    proc: subprocess.Popen[str], journal: Path, state: str, n: int, timeout: float = 20
) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        rows = journal_rows(
            journal, "SELECT run_id, COUNT(*) FROM targets WHERE state = ? GROUP BY run_id", state
        )
        if rows and rows[0][1] >= n:
            return str(rows[0][0])
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"no {n} {state} targets in time")


def _finish_with_resume(mock: MockEC2Thread, run_id: str, journal: Path) -> None:
    ran = cli("resume", run_id, "--endpoint-url", mock.endpoint_url, "--journal", journal)
    assert ran.code == 0, ran.output
    per_instance = mock.call(lambda m: m.images_per_instance())
    assert mock.call(lambda m: m.duplicates()) == {}
    assert set(per_instance) == imageable(mock)


def test_one_sigint_stops_gracefully_and_is_resumable(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    mock = mock_thread(
        instances_per_region=24, time_scale=1.0, pending_s=1.5, limits={"CreateImage": (5, 15)}
    )
    cfg = fleet_config(scale=1, limits={"CreateImage": {"burst": 5, "rate_per_s": 15}})
    path = write_config(tmp_path / "fleet.yaml", cfg)
    journal = tmp_path / "j.sqlite3"
    proc = cli_process(
        "run", "-c", path, "--endpoint-url", mock.endpoint_url, "--journal", journal, "--yes"
    )
    run_id = _wait_for_state(proc, journal, "pending", 5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, out + err
    assert "SIGINT: stopping — no new images" in err
    assert f"to finish this run: fleetimage resume {run_id} --journal {journal}" in out
    report = json.loads((tmp_path / f"fleetimage-{run_id}.json").read_text())
    assert report["interrupted"] is True
    assert report["counts"]["available"] < len(imageable(mock))
    assert journal_rows(journal, "SELECT status FROM runs") == [("interrupted",)]
    assert "Traceback" not in err
    _finish_with_resume(mock, run_id, journal)


def test_second_sigint_exits_at_once(mock_thread: MockFactory, tmp_path: Path) -> None:
    # CreateImage is applied at once but answered 5 s later: in-flight calls are slow to settle.
    mock = mock_thread(
        instances_per_region=20,
        time_scale=1.0,
        pending_s=0.5,
        faults=FaultConfig(slow=1.0, slow_s=5.0, actions=frozenset({"CreateImage"})),
    )
    path = write_config(tmp_path / "fleet.yaml", fleet_config(scale=1))
    journal = tmp_path / "j.sqlite3"
    proc = cli_process(
        "run", "-c", path, "--endpoint-url", mock.endpoint_url, "--journal", journal, "--yes"
    )
    run_id = _wait_for_state(proc, journal, "requesting", 5)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    second = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    took = time.monotonic() - second
    assert proc.returncode == 130, out + err
    assert took < 3.0, f"the second Ctrl-C took {took:.1f} s to exit"
    assert "SIGINT again: exiting now" in err
    assert f"fleetimage resume {run_id}" in err
    assert "Traceback" not in err
    assert journal_rows(journal, "SELECT status FROM runs") == [("interrupted",)]
    states = dict(journal_rows(journal, "SELECT state, COUNT(*) FROM targets GROUP BY state"))
    assert states.get("requesting", 0) > 0  # sent, never answered: resume looks them up
    mock.call(lambda m: setattr(m, "faults", FaultInjector(FaultConfig(), 0)))
    _finish_with_resume(mock, run_id, journal)
