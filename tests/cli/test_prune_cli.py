"""``fleetimage prune``: bad input is one line, exit 2, nothing sent; the plan, --dry-run,
--yes, --run, the JSON report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import MockFactory, cli, fleet_config, one_line_error, write_config

MUTATING = ("DeregisterImage", "DeleteSnapshot")


def prune_config(**retention: Any) -> dict[str, Any]:
    cfg = fleet_config(name="blue")
    cfg["retention"] = retention or {"keep_last": 1, "min_age": 0}
    return cfg


@pytest.mark.parametrize(
    ("retention", "fragment"),
    [
        ({"keep_last": 0}, "retention.keep_last: must be >= 1"),
        ({"max_age": "-3d"}, "retention.max_age: age '-3d' is not a duration"),
        ({"min_age": "tomorrow"}, "retention.min_age: age 'tomorrow' is not a duration"),
        ({"keep_tagged": "Keep"}, "retention.keep_tagged: expected a list"),
    ],
)
def test_bad_retention_exits_2_and_sends_nothing(
    mock_thread: MockFactory, tmp_path: Path, retention: dict[str, Any], fragment: str
) -> None:
    mock = mock_thread()
    cfg = write_config(tmp_path / "fleet.yaml", prune_config(**retention))
    ran = cli("prune", "-c", cfg, "--yes", "--endpoint-url", mock.endpoint_url)
    assert ran.code == 2, ran.output
    assert fragment in one_line_error(ran)
    assert mock.count() == 0


def test_no_tty_without_yes_exits_2_and_sends_nothing(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    mock = mock_thread()
    cfg = write_config(tmp_path / "fleet.yaml", prune_config())
    ran = cli("prune", "-c", cfg, "--endpoint-url", mock.endpoint_url)
    assert ran.code == 2, ran.output
    assert "pass --yes" in one_line_error(ran)
    assert mock.count() == 0


def test_prune_after_two_runs(mock_thread: MockFactory, tmp_path: Path) -> None:
    mock = mock_thread(instances_per_region=6)
    url = mock.endpoint_url
    cfg = write_config(tmp_path / "fleet.yaml", prune_config())
    journal = tmp_path / "journal.sqlite3"
    for _ in range(2):
        ran = cli("run", "-c", cfg, "--yes", "--endpoint-url", url, "--journal", journal)
        assert ran.code == 0, ran.output
    dry = cli(
        "prune", "-c", cfg, "--dry-run", "--endpoint-url", url, "--report", tmp_path / "d.json"
    )
    assert dry.code == 0, dry.output
    assert "prune plan for fleet blue" in dry.stderr
    planned = json.loads((tmp_path / "d.json").read_text())["summary"]["planned"]
    assert planned > 0 and mock.count(action="DeregisterImage") == 0
    ran = cli(
        "prune",
        "-c",
        cfg,
        "--yes",
        "--endpoint-url",
        url,
        "--journal",
        journal,
        "--report",
        tmp_path / "p.json",
    )
    assert ran.code == 0, ran.output
    report = json.loads((tmp_path / "p.json").read_text())
    assert report["summary"]["deleted"] == planned
    assert mock.count(action="DeregisterImage", outcome="ok") == planned
    # each instance keeps its newest image: half of two runs' images go
    assert report["summary"]["kept"] == planned
    assert all(
        i["outcome"] == "kept" and "keep_last" in i["reason"]
        for i in report["items"]
        if i["outcome"] != "deleted"
    )


def test_unknown_run_exits_2_and_deletes_nothing(mock_thread: MockFactory, tmp_path: Path) -> None:
    mock = mock_thread()
    cfg = write_config(tmp_path / "fleet.yaml", prune_config())
    ran = cli(
        "prune",
        "-c",
        cfg,
        "--run",
        "20200101T000000Z-000000",
        "--yes",
        "--endpoint-url",
        mock.endpoint_url,
        "--journal",
        tmp_path / "j.sqlite3",
    )
    assert ran.code == 2, ran.output
    assert "not in the journal nor on any image" in ran.stderr
    assert all(mock.count(action=a) == 0 for a in MUTATING)
