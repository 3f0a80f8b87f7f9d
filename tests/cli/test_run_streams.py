"""`fleetimage run` asking nothing (--yes, or no terminal) images each lane from its first
discovery page, a named run (--run-id: perhaps a restart) once its lanes are looked up; an
empty fleet is refused, with nothing sent or kept."""

from __future__ import annotations

import json
from pathlib import Path

from cli_helpers import (
    UNLIMITED_IMAGING,
    MockFactory,
    cli,
    cli_process,
    fleet_config,
    imageable,
    journal_rows,
    one_line_error,
    paged_fleet,
    write_config,
)
from test_crash import _kill, _wait_for

REGION = ("us-east-1",)


def _events(log: Path) -> list[str]:
    return [json.loads(line)["event"] for line in log.read_text().splitlines()]


def _run(mock_url: str, tmp_path: Path, *flags: str) -> tuple[list[str], str]:
    cfg = write_config(tmp_path / "fleet.yaml", fleet_config(REGION, limits=UNLIMITED_IMAGING))
    log = tmp_path / "events.log"
    ran = cli(
        "run", "-c", cfg, "--endpoint-url", mock_url, "--yes", "--journal", tmp_path / "j.db",
        "--report", tmp_path / "r.json", "--log-format", "json", "--log-file", log, *flags,
    )  # fmt: skip
    assert ran.code == 0, ran.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["counts"]["available"] == report["counts"]["total"] == 1100
    return _events(log), ran.stderr


def test_run_yes_images_each_lane_from_its_first_discovery_page(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    """A lane of two DescribeInstances pages, each answered after 1 s: its first image is
    created before the lane is discovered, and each instance gets one image."""
    mock = paged_fleet(mock_thread, REGION, 1100, pending_s=0.5)
    events, stderr = _run(mock.endpoint_url, tmp_path)
    assert "imaging each lane as discovery finds its instances" in stderr
    assert events.count("laneplanned") == 1
    assert events.index("created") < events.index("laneplanned")
    assert not mock.call(lambda m: m.duplicates())
    assert journal_rows(tmp_path / "j.db", "SELECT state FROM lanes") == [("planned",)]


def test_a_named_run_looks_its_lanes_up_then_images_from_the_first_page(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    """--run-id may be a restart that lost its journal: each lane is asked for the run's
    images first (here it has none; test_paged_lanes.py restarts one that has), then imaged
    from its first page like any run that asks nothing."""
    mock = paged_fleet(mock_thread, REGION, 1100, pending_s=0.5)
    events, stderr = _run(mock.endpoint_url, tmp_path, "--run-id", "named-run")
    assert "run named-run: imaging each lane as discovery finds its instances" in stderr
    assert events.index("created") < events.index("laneplanned")
    assert not mock.call(lambda m: m.duplicates())


def test_a_streamed_run_warns_of_a_failed_lane_and_refuses_an_empty_fleet(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    """One lane's role is denied, the other's filter matches nothing: the failure is shown
    when it happens, the run is refused (exit 2) with nothing sent, and the journal keeps
    nothing of it (its lanes neither)."""
    mock = mock_thread(
        denied_roles=frozenset({"222222222222"}), accounts=("123456789012", "222222222222")
    )
    cfg = fleet_config(
        targets=[
            {"regions": list(REGION), "filters": {"tag:Env": "nope"}},
            {
                "regions": list(REGION),
                "all_instances": True,
                "accounts": [{"role_arn": "arn:aws:iam::222222222222:role/fleetimage"}],
            },
        ],
    )
    path = write_config(tmp_path / "fleet.yaml", cfg)
    journal = tmp_path / "j.db"
    ran = cli("run", "-c", path, "--endpoint-url", mock.endpoint_url, "--yes", "--journal", journal)
    assert ran.code == 2, ran.output
    assert "warning: 222222222222/us-east-1: AssumeRole: " in ran.stderr
    error = one_line_error(ran, alone=False)
    assert "resolve to no instance to image; 1 lanes failed" in error, error
    assert mock.count(action="CreateImage") == 0
    for table in ("runs", "targets", "lanes"):
        assert journal_rows(journal, f"SELECT count(*) FROM {table}") == [(0,)], table


def test_run_yes_killed_between_a_lanes_pages_is_finished_by_resume(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    """`fleetimage run --yes` as a process, SIGKILLed while its lane of three pages (each
    answered after 1 s) is imaged from the first: the lane is not marked discovered, and
    `fleetimage resume` discovers it again and finishes it, one image per instance."""
    mock = paged_fleet(mock_thread, REGION, 2100, pending_s=1.0)
    expected = imageable(mock)
    wait = {"poll_interval_s": 0.2, "timeout_s": 120, "not_found_grace_s": 5}
    cfg = fleet_config(REGION, scale=1, limits=UNLIMITED_IMAGING, wait=wait)
    config, journal = write_config(tmp_path / "fleet.yaml", cfg), tmp_path / "j.db"
    proc = cli_process(
        "run", "-c", config, "--journal", journal, "--endpoint-url", mock.endpoint_url,
        "--yes", "--report", tmp_path / "r.json",
    )  # fmt: skip
    _wait_for("images of the first page", lambda: mock.count(action="CreateImage") >= 50, proc)
    _kill(proc)
    assert mock.count(action="CreateImage") < len(expected), "killed after the last page"
    assert journal_rows(journal, "SELECT state FROM lanes") == [], "killed after discovery"
    [(run_id,)] = journal_rows(journal, "SELECT run_id FROM runs")

    ran = cli(
        "resume", run_id, "--journal", journal, "--endpoint-url", mock.endpoint_url, "--yes",
        "--report", tmp_path / "r2.json",
    )  # fmt: skip
    assert ran.code == 0, ran.output
    assert mock.call(lambda m: m.duplicates()) == {}
    per_instance = mock.call(lambda m: m.images_per_instance())
    assert set(per_instance) == expected and set(per_instance.values()) == {1}
    assert journal_rows(journal, "SELECT state FROM lanes") == [("planned",)]
