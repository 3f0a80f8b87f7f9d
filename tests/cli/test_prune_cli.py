"""``fleetimage prune``: bad input is one line, exit 2, nothing sent; the plan, --dry-run,
--yes, --run (with a config, from the journal, or with --regions), the JSON and CSV
reports, the progress lines."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import (
    REGIONS,
    MockFactory,
    cli,
    fleet_config,
    journal_rows,
    one_line_error,
    write_config,
)

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
    # the journal shows the prune beside the runs, and its status by its id
    prune_id = report["prune_id"]
    runs = cli("runs", "--journal", journal)
    assert (
        f"prune {prune_id}: fleet blue, status finished" in runs.stdout
        and f"{planned} deleted, {planned} kept, 0 failed, 0 left" in runs.stdout
    ), runs.output
    status = cli("status", prune_id, "--journal", journal, "--json")
    assert status.code == 0, status.output
    items = json.loads(status.stdout)["items"]
    assert sorted(i["state"] for i in items) == ["deleted"] * planned + ["kept"] * planned


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


def _run_ids(journal: Path) -> list[str]:
    return [r[0] for r in journal_rows(journal, "SELECT run_id FROM runs ORDER BY started_at")]


def test_run_without_config_takes_the_run_from_the_journal(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    mock = mock_thread(instances_per_region=4)
    url = mock.endpoint_url
    cfg = write_config(tmp_path / "fleet.yaml", prune_config())
    journal = tmp_path / "journal.sqlite3"
    for _ in range(2):
        assert cli("run", "-c", cfg, "--yes", "--endpoint-url", url, "--journal", journal).code == 0
    first, second = _run_ids(journal)
    csv_path = tmp_path / "p.csv"
    ran = cli(
        "prune", "--run", first, "--yes", "--endpoint-url", url, "--journal", journal,
        "--report", csv_path, "--progress-interval", "0.1",
    )  # fmt: skip
    assert ran.code == 0, ran.output
    rows = list(csv.DictReader(csv_path.read_text(encoding="utf-8").splitlines()))
    assert rows and {r["outcome"] for r in rows} == {"deleted"}
    assert {r["run_id"] for r in rows} == {first}
    assert all(r["snapshots"] and r["snapshots"].endswith("=deleted") for r in rows)
    assert mock.count(action="DeregisterImage", outcome="ok") == len(rows)
    assert "deleted/s" in ran.stderr  # the plain progress lines
    account = mock.mock.config.default_account
    left = [
        i
        for r in REGIONS
        for i in mock.call(lambda m, r=r: m.images(account, r))
        if not i["deregistered"]
    ]
    assert left and {i["tags"]["fleetimage:run-id"] for i in left} == {second}
    # journaled as a prune of its own kind
    assert journal_rows(journal, "SELECT run_id, status FROM prune_runs") == [(first, "finished")]


def test_run_with_regions_when_the_journal_is_elsewhere(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    mock = mock_thread(instances_per_region=3)
    url = mock.endpoint_url
    cfg = write_config(tmp_path / "fleet.yaml", prune_config())
    shard = tmp_path / "shard.sqlite3"
    assert cli("run", "-c", cfg, "--yes", "--endpoint-url", url, "--journal", shard).code == 0
    [run_id] = _run_ids(shard)
    here = tmp_path / "here.sqlite3"
    ran = cli(
        "prune", "--run", run_id, "--regions", ",".join(REGIONS), "--yes",
        "--endpoint-url", url, "--journal", here, "--report", tmp_path / "p.json",
    )  # fmt: skip
    assert ran.code == 0, ran.output
    report = json.loads((tmp_path / "p.json").read_text())
    assert report["fleet"] == "blue"  # the fleet its images carry
    assert report["summary"]["deleted"] == mock.count(action="DeregisterImage", outcome="ok") > 0


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ((), "not in journal"),
        (("--accounts", "arn:aws:iam::111122223333:role/x"), "--accounts needs --regions"),
        (("--regions", "us-east-1,"), "--regions 'us-east-1,': empty entry"),
    ],
)
def test_run_without_config_bad_input_exits_2_and_sends_nothing(
    mock_thread: MockFactory, tmp_path: Path, extra: tuple[str, ...], fragment: str
) -> None:
    mock = mock_thread()
    ran = cli(
        "prune", "--run", "20200101T000000Z-000000", *extra, "--yes",
        "--endpoint-url", mock.endpoint_url, "--journal", tmp_path / "j.sqlite3",
    )  # fmt: skip
    assert ran.code == 2, ran.output
    assert fragment in one_line_error(ran)
    assert mock.count() == 0


def test_no_config_and_no_run_exits_2(mock_thread: MockFactory) -> None:
    mock = mock_thread()
    ran = cli("prune", "--yes", "--endpoint-url", mock.endpoint_url)
    assert ran.code == 2 and "-c FILE" in one_line_error(ran)
    assert mock.count() == 0


def test_unknown_run_with_regions_exits_2_and_deletes_nothing(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    mock = mock_thread()
    ran = cli(
        "prune", "--run", "20200101T000000Z-000000", "--regions", "us-east-1", "--yes",
        "--endpoint-url", mock.endpoint_url, "--journal", tmp_path / "j.sqlite3",
    )  # fmt: skip
    assert ran.code == 2, ran.output
    assert "not in the journal nor on any image" in ran.stderr
    assert all(mock.count(action=a) == 0 for a in MUTATING)
