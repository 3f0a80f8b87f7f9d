"""Bad input: every expected error is one clear line on stderr, exit 2, and no API call."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from cli_helpers import MockFactory, cli, fleet_config, one_line_error, write_config

from fleetimage.journal import Journal
from fleetimage.mock import MockEC2Thread

Setup = tuple[MockEC2Thread, str, Path]


@pytest.fixture
def setup(mock_thread: MockFactory, tmp_path: Path) -> Setup:
    mock = mock_thread()
    cfg = write_config(tmp_path / "fleet.yaml", fleet_config())
    return mock, mock.endpoint_url, cfg


def _no_calls(mock: MockEC2Thread) -> None:
    assert mock.count() == 0


def test_missing_config_file(setup: Setup) -> None:
    mock, url, _ = setup
    for command in ("run", "plan", "permissions"):
        extra = ["--endpoint-url", url] if command != "permissions" else []
        ran = cli(command, "-c", "nope.yaml", *extra)
        assert ran.code == 2, ran.output
        assert "nope.yaml: file not found" in one_line_error(ran)
    _no_calls(mock)


def test_invalid_yaml(setup: Setup, tmp_path: Path) -> None:
    mock, url, _ = setup
    bad = write_config(tmp_path / "bad.yaml", "targets:\n  - regions: [us-east-1\n")
    ran = cli("run", "-c", bad, "--endpoint-url", url, "--yes")
    assert ran.code == 2
    assert "invalid YAML at line" in one_line_error(ran)
    _no_calls(mock)


def test_unknown_key(setup: Setup, tmp_path: Path) -> None:
    mock, url, _ = setup
    bad = write_config(tmp_path / "bad.yaml", {**fleet_config(), "wiat": {"timeout_s": 5}})
    ran = cli("plan", "-c", bad, "--endpoint-url", url)
    assert ran.code == 2
    line = one_line_error(ran)
    assert "unknown key 'wiat'" in line and "did you mean 'wait'" in line
    _no_calls(mock)


def test_garbage_journal(setup: Setup, tmp_path: Path) -> None:
    mock, url, cfg = setup
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"\x00\xffnot a database at all\x13" * 300)
    cases: list[list[str | Path]] = [
        ["run", "-c", cfg, "--endpoint-url", url, "--yes", "--journal", garbage],
        ["resume", "20260101T000000Z-abcdef", "--endpoint-url", url, "--journal", garbage],
        ["runs", "--journal", garbage],
        ["status", "20260101T000000Z-abcdef", "--journal", garbage],
    ]
    for args in cases:
        ran = cli(*args)
        assert ran.code == 2, (args, ran.output)
        assert "not a readable fleetimage journal" in one_line_error(ran)
    _no_calls(mock)


def test_unknown_run_id(setup: Setup, tmp_path: Path) -> None:
    mock, url, cfg = setup
    journal = tmp_path / "j.sqlite3"
    assert cli("run", "-c", cfg, "--endpoint-url", url, "--yes", "--journal", journal).code == 0
    before = mock.count()
    unknown: list[list[str | Path]] = [
        ["resume", "20260101T000000Z-abcdef", "--endpoint-url", url, "--journal", journal],
        ["status", "20260101T000000Z-abcdef", "--journal", journal],
    ]
    for args in unknown:
        ran = cli(*args)
        assert ran.code == 2
        assert "unknown run id 20260101T000000Z-abcdef" in one_line_error(ran)
    assert mock.count() == before


def test_missing_journal_for_listing(tmp_path: Path) -> None:
    ran = cli("runs", "--journal", tmp_path / "none.sqlite3")
    assert ran.code == 2
    assert "no journal at" in one_line_error(ran)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--dry-run", "--no-wait"], "--dry-run and --no-wait conflict"),
        (["--dry-run", "--journal", "j.sqlite3"], "--dry-run and --journal conflict"),
        (["--deadline", "2001-01-01T00:00:00Z"], "is in the past"),
        (["--deadline", "0s"], "must be a positive duration"),
        (["--deadline", "soon"], "is not a duration"),
        (["--max-errors", "lots"], "--max-errors: expected a count"),
        (["--max-errors", "150%"], "--max-errors"),
        (["--log-format", "xml"], "--log-format must be json or console"),
        (["--report", "."], "is a directory"),
        (["--log-file", "/nonexistent-dir/x.log"], "--log-file"),
    ],
)
def test_bad_flags(setup: Setup, flags: list[str], message: str) -> None:
    mock, url, cfg = setup
    ran = cli("run", "-c", cfg, "--endpoint-url", url, "--yes", *flags)
    assert ran.code == 2, ran.output
    assert message in one_line_error(ran)
    _no_calls(mock)


def test_bad_endpoint_url(setup: Setup) -> None:
    _, _, cfg = setup
    ran = cli("plan", "-c", cfg, "--endpoint-url", "localhost:9")
    assert ran.code == 2
    assert "is not an http(s) URL" in one_line_error(ran)


def test_empty_plan_is_refused_unless_allowed(setup: Setup, tmp_path: Path) -> None:
    mock, url, _ = setup
    nothing = fleet_config(targets=[{"regions": ["us-east-1"], "filters": {"tag:Env": "nope"}}])
    cfg = write_config(tmp_path / "empty.yaml", nothing)
    ran = cli("run", "-c", cfg, "--endpoint-url", url, "--yes")
    assert ran.code == 2
    assert "resolve to no instance to image" in one_line_error(ran, alone=False)
    assert mock.count(action="CreateImage") == 0
    ran = cli("run", "-c", cfg, "--endpoint-url", url, "--yes", "--allow-empty")
    assert ran.code == 0, ran.output
    report = json.loads(next(tmp_path.glob("fleetimage-*.json")).read_text())
    assert report["counts"]["total"] == 0


def test_journal_in_use_by_another_process(setup: Setup, tmp_path: Path) -> None:
    mock, url, cfg = setup
    path = tmp_path / "busy.sqlite3"

    async def hold() -> None:
        async with await Journal.open(path):
            # same process, but the flock is per open file description: a second open fails
            ran = await anyio.to_thread.run_sync(
                lambda: cli("run", "-c", cfg, "--endpoint-url", url, "--yes", "--journal", path)
            )
            assert ran.code == 2
            assert "is in use by another fleetimage process" in one_line_error(ran)

    anyio.run(hold)
    _no_calls(mock)


def test_usage_errors_exit_2(setup: Setup) -> None:
    ran = cli("run")  # no -c
    assert ran.code == 2
    assert "Missing option" in ran.stderr
