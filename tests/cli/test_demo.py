"""``fleetimage demo``: the README's first command works without AWS and exits 0."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import cli, cli_process

from fleetimage.engine import workers as workers_module


def _all_row(stdout: str) -> list[int]:
    row = next(line for line in stdout.splitlines() if re.match(r"^\W*all\b", line))
    return [int(n) for n in re.findall(r"\d+", row)]


def test_demo_small(tmp_path: Path) -> None:
    before = dict(os.environ)
    ran = cli(
        "demo",
        "--regions",
        "3",
        "--instances-per-region",
        "30",
        "--time-scale",
        "40",
        "--report",
        tmp_path / "demo.json",
    )
    assert ran.code == 0, ran.output
    assert "no AWS account used" in ran.stdout
    assert ran.stdout.strip().splitlines()[-1].startswith("demo: ok — ")
    assert "exactly one image per imageable instance" in ran.stdout and "not ok" not in ran.stdout
    *_, total = _all_row(ran.stdout)
    assert total == 90
    report = json.loads((tmp_path / "demo.json").read_text())
    counts = report["counts"]
    assert counts["total"] == 90
    assert counts["available"] + counts["failed"] + counts["skipped"] == 90
    assert counts["available"] > 70 and counts["skipped"] > 0
    assert {r["error_code"] for r in report["results"] if r["outcome"] == "failed"} <= {
        "Server.InternalError"
    }
    assert dict(os.environ) == before  # the demo's fake AWS environment is undone


def test_demo_with_worker_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--workers 2``: the lanes go to two worker processes, which reach the demo's mock over
    loopback with the demo's fake credentials (inherited), and the check holds as in one."""
    started = []
    start = workers_module.start_worker

    async def counted() -> Any:
        started.append(await start())
        return started[-1]

    monkeypatch.setattr(workers_module, "start_worker", counted)
    ran = cli(
        "demo", "--regions", "3", "--instances-per-region", "20", "--time-scale", "40",
        "--workers", "2", "--report", tmp_path / "demo.json",
    )  # fmt: skip
    assert ran.code == 0, ran.output
    assert "lanes over 2 worker processes" in ran.stdout
    assert ran.stdout.strip().splitlines()[-1].startswith("demo: ok — ")
    assert len(started) == 2 and all(p.returncode == 0 for p in started)
    assert json.loads((tmp_path / "demo.json").read_text())["counts"]["total"] == 60


def test_demo_bad_flags() -> None:
    ran = cli("demo", "--regions", "0")
    assert ran.code == 2 and ran.stderr.startswith("error: --regions must be 1-")
    ran = cli("demo", "--workers", "0")
    assert ran.code == 2 and ran.stderr.startswith("error: --workers: workers must be at least 1")


@pytest.mark.slow
def test_demo_defaults_under_a_minute(tmp_path: Path) -> None:
    start = time.monotonic()
    proc = cli_process("demo")
    out, err = proc.communicate(timeout=90)
    took = time.monotonic() - start
    assert proc.returncode == 0, out + err
    assert took < 60, took
    assert _all_row(out)[-1] == 300
    assert "demo: ok" in out
