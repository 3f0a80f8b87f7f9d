"""``fleetimage report show``: a saved report as a table (ids whole at any width), Markdown
for a change ticket, and CSV; bad files are one line and exit 2."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cli_helpers import cli
from typer.testing import CliRunner

from fleetimage.cli import app
from fleetimage.core.models import ImageResult, LaneFailure, Outcome
from fleetimage.output.report import RunReport

T0 = datetime(2026, 11, 29, 5, 22, 13, tzinfo=UTC)
RUN_ID = "20261129T052213Z-f00dfeed"
INSTANCES = ("i-0123456789abcdef0", "i-0fedcba9876543210", "i-00000000000000aaa")
IMAGES = ("ami-0a1b2c3d4e5f60718", None, None)


def _report(*, ok: bool = False) -> RunReport:
    results = [
        ImageResult("111122223333", "eu-west-1", INSTANCES[0], Outcome.AVAILABLE, IMAGES[0]),
    ]
    lanes: tuple[LaneFailure, ...] = ()
    if not ok:
        results += [
            ImageResult(
                "444455556666",
                "us-east-1",
                INSTANCES[1],
                Outcome.FAILED,
                error_code="InvalidParameterValue",
                error_message="Instance is in | an invalid\nstate [for] imaging",
            ),
            ImageResult("444455556666", "us-east-1", INSTANCES[2], Outcome.SKIPPED),
        ]
        lanes = (LaneFailure("777788889999", "ap-south-1", "AssumeRole", "AccessDenied", "denied"),)
    return RunReport(RUN_ID, T0, T0 + timedelta(minutes=3), tuple(results), lanes)


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "report.json"
    _report().write(path)
    return path


@pytest.mark.parametrize("width", [60, 80, 200])
def test_table_keeps_every_id_whole(saved: Path, width: int) -> None:
    result = CliRunner().invoke(
        app, ["report", "show", str(saved)], env={"COLUMNS": str(width)}, catch_exceptions=False
    )
    assert result.exit_code == 1, result.output  # the run was not ok
    out = result.stdout
    for value in (RUN_ID, *INSTANCES, IMAGES[0], "111122223333", "444455556666"):
        assert any(value in line for line in out.splitlines()), (width, value, out)
    assert "…" not in out
    assert "lane 777788889999/ap-south-1 failed: AssumeRole: AccessDenied: denied" in out
    assert out.rstrip().endswith(
        "3 targets in 0:03:00: 1 available, 1 failed, 1 skipped, 1 lane failed: not ok"
    )


def test_markdown_for_a_change_ticket(saved: Path) -> None:
    ran = cli("report", "show", saved, "--format", "md")
    assert ran.code == 1
    md = ran.stdout
    assert md.startswith(f"## fleetimage run {RUN_ID}")
    assert "| region | available | failed | skipped | total |" in md
    assert "| eu-west-1 | 1 | 0 | 0 | 1 |" in md
    assert "| **all** | **1** | **1** | **1** | **3** |" in md
    # ids in code spans; a pipe in an AWS message escaped, its newline folded
    assert f"| `{INSTANCES[1]}` | `444455556666` | us-east-1 | failed |" in md
    assert "Instance is in \\| an invalid state [for] imaging |" in md
    assert "| `777788889999` | ap-south-1 | AssumeRole | AccessDenied | denied |" in md
    for row in (line for line in md.splitlines() if line.startswith("| `i-")):
        assert row.count(" | ") == 6, row  # seven cells, whatever the message held


def test_csv_round_trips(saved: Path) -> None:
    ran = cli("report", "show", saved, "-f", "csv")
    rows = list(csv.DictReader(io.StringIO(ran.stdout)))
    # sorted by (account, region, instance), as the report keeps them
    assert [r["instance_id"] for r in rows] == [INSTANCES[0], INSTANCES[2], INSTANCES[1]]
    assert rows[0]["image_id"] == IMAGES[0]


def test_an_ok_report_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "ok.json"
    _report(ok=True).write(path)
    ran = cli("report", "show", path)
    assert ran.code == 0, ran.output
    assert ran.stdout.rstrip().endswith("1 targets in 0:03:00: 1 available: ok")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "cannot read report"),
        ("{not json", "is not a JSON run report"),
        ('{"hello": 1}', "is not a fleetimage run report"),
        ('{"run_id": "x", "results": [], "started_at": "yesterday"}', "malformed run report"),
    ],
)
def test_bad_files_are_one_line_exit_2(tmp_path: Path, content: str | None, says: str) -> None:
    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    ran = cli("report", "show", path)
    assert ran.code == 2
    assert ran.stdout == ""
    assert len(ran.stderr.strip().splitlines()) == 1 and says in ran.stderr, ran.stderr


def test_unknown_format_is_exit_2(saved: Path) -> None:
    ran = cli("report", "show", saved, "--format", "html")
    assert ran.code == 2 and "--format must be one of table, md, csv" in ran.stderr
