"""Ids stay whole in every table the CLI prints: at 60, 80 and 200 columns, piped and on a
terminal (rich's TTY_COMPATIBLE=1 in a real subprocess, and a real pseudo-terminal)."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
from pathlib import Path

import pytest
from cli_helpers import MockFactory, cli, cli_command, fleet_config, write_config
from typer.testing import CliRunner

from fleetimage.cli import app

WIDTHS = (60, 80, 200)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _piped(width: int, *args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, [str(a) for a in args], env={"COLUMNS": str(width)}, catch_exceptions=False
    )
    return result.exit_code, result.stdout


def _tty(width: int, *args: str | Path) -> tuple[int, str]:
    """The CLI as a process whose stdout rich treats as a terminal of ``width`` columns."""
    env = {**os.environ, "COLUMNS": str(width), "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "0"}
    done = subprocess.run(
        cli_command(*args), env=env, capture_output=True, text=True, timeout=120, check=False
    )
    return done.returncode, ANSI.sub("", done.stdout)


def assert_whole(out: str, ids: set[str], *, width: int, where: str) -> None:
    print(f"--- {where}, {width} columns\n{out}")
    lines = out.splitlines()
    for line in lines:
        # "… and 55 more targets" is a sentence; anywhere else an ellipsis is a cut value.
        if not line.startswith("…"):
            assert "…" not in line, (where, line)
    for value in ids:
        assert any(value in line for line in lines), (where, value)


@pytest.fixture
def journaled_run(mock_thread: MockFactory, tmp_path: Path) -> dict[str, object]:
    mock = mock_thread(failure_rate=0.3)
    cfg = write_config(tmp_path / "fleet.yaml", fleet_config())
    journal = tmp_path / "j.sqlite3"
    ran = cli("run", "-c", cfg, "--endpoint-url", mock.endpoint_url, "--journal", journal)
    assert ran.code == 1, ran.output  # some images failed on purpose
    run_id = ran.stdout.split("run id: ")[1].split()[0]
    status = json.loads(cli("status", run_id, "--journal", journal, "--json").stdout)
    failed = [t for t in status["targets"] if t["state"] == "failed"]
    assert failed
    plan = json.loads(cli("plan", "-c", cfg, "--endpoint-url", mock.endpoint_url, "--json").stdout)
    return {
        "mock": mock,
        "config": cfg,
        "journal": journal,
        "run_id": run_id,
        "failed": {t["instance_id"] for t in failed} | {t["image_id"] for t in failed},
        "planned": {t["instance_id"] for lane in plan["lanes"] for t in lane["targets"][:10]},
        "account": plan["lanes"][0]["account"],
    }


@pytest.mark.parametrize("width", WIDTHS)
def test_runs_status_plan_piped(journaled_run: dict[str, object], width: int) -> None:
    run_id, journal = str(journaled_run["run_id"]), journaled_run["journal"]
    account = str(journaled_run["account"])
    code, out = _piped(width, "runs", "--journal", journal)
    assert code == 0
    assert_whole(out, {run_id}, width=width, where="runs piped")
    assert any(line.startswith(f"{run_id}: status finished") for line in out.splitlines())
    code, out = _piped(width, "status", run_id, "--journal", journal)
    assert code == 1
    failed = journaled_run["failed"]
    assert isinstance(failed, set)
    assert_whole(out, {run_id, account, *failed}, width=width, where="status piped")
    mock = journaled_run["mock"]
    url = mock.endpoint_url  # type: ignore[attr-defined]
    code, out = _piped(width, "plan", "-c", journaled_run["config"], "--endpoint-url", url)
    assert code == 0
    planned = journaled_run["planned"]
    assert isinstance(planned, set)
    assert_whole(out, {account, *planned}, width=width, where="plan piped")
    assert "+ pending time" in out and " 0s" not in out


@pytest.mark.parametrize("width", WIDTHS)
def test_runs_status_plan_on_a_terminal(journaled_run: dict[str, object], width: int) -> None:
    run_id, journal = str(journaled_run["run_id"]), journaled_run["journal"]
    account = str(journaled_run["account"])
    failed = journaled_run["failed"]
    assert isinstance(failed, set)
    code, out = _tty(width, "runs", "--journal", journal)
    assert code == 0
    assert_whole(out, {run_id}, width=width, where="runs tty")
    code, out = _tty(width, "status", run_id, "--journal", journal)
    assert code == 1
    assert_whole(out, {run_id, account, *failed}, width=width, where="status tty")
    if width == 200:  # wide enough: tables, with their headers whole
        assert "┃ instance" in out and "┃ message" in out
    mock = journaled_run["mock"]
    url = mock.endpoint_url  # type: ignore[attr-defined]
    code, out = _tty(width, "plan", "-c", journaled_run["config"], "--endpoint-url", url)
    assert code == 0
    planned = journaled_run["planned"]
    assert isinstance(planned, set)
    assert_whole(out, {account, *planned}, width=width, where="plan tty")
    if width == 200:
        assert "┃ account      ┃ region    ┃ to image ┃" in out


@pytest.mark.parametrize("width", (60, 80))
def test_run_summary_failures_keep_ids(
    mock_thread: MockFactory, tmp_path: Path, width: int
) -> None:
    mock = mock_thread(failure_rate=0.3)
    cfg = write_config(tmp_path / "fleet.yaml", fleet_config())
    report = tmp_path / "r.json"
    code, out = _piped(
        width, "run", "-c", cfg, "--endpoint-url", mock.endpoint_url, "--report", report
    )
    assert code == 1
    data = json.loads(report.read_text())
    failed = {r["instance_id"] for r in data["results"] if r["outcome"] == "failed"}
    assert failed
    assert_whole(out, {data["run_id"], *failed}, width=width, where="run summary piped")
    code, out = _tty(width, "run", "-c", cfg, "--endpoint-url", mock.endpoint_url)
    assert code == 1
    ids = {line.split()[0] for line in out.splitlines() if line.startswith("i-")}
    assert ids  # the failures, one per line, each id whole
    assert_whole(out, ids, width=width, where="run summary tty")


def test_runs_in_a_real_pseudo_terminal(journaled_run: dict[str, object]) -> None:
    """No environment hint: stdout is a pty of 80 columns."""
    run_id = str(journaled_run["run_id"])
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["COLUMNS"] = "80"
    proc = subprocess.Popen(
        cli_command("runs", "--journal", journaled_run["journal"]),
        stdout=follower,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the pty
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert proc.wait(timeout=60) == 0
    os.close(leader)
    out = ANSI.sub("", b"".join(chunks).decode()).replace("\r\n", "\n")
    assert_whole(out, {run_id}, width=80, where="runs in a pty")


def test_demo_narrow_keeps_ids_and_one_verdict(tmp_path: Path) -> None:
    report = tmp_path / "demo.json"
    code, out = _piped(
        60,
        "demo",
        "--regions",
        "2",
        "--instances-per-region",
        "30",
        "--time-scale",
        "40",
        "--report",
        report,
    )
    assert code == 0, out
    data = json.loads(report.read_text())
    failed = {r["instance_id"] for r in data["results"] if r["outcome"] == "failed"}
    assert_whole(out, {data["run_id"], *failed}, width=60, where="demo piped")
    lines = out.strip().splitlines()
    assert lines[-1].startswith("demo: ok — ")
    assert "not ok" not in out
    assert sum(line.startswith("demo: ") for line in lines) == 2  # the intro, the verdict
    for instance in failed:
        assert any(instance in line and "failed (expected)" in line for line in lines)
