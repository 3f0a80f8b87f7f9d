"""Helpers for the CLI tests (imported by the test modules; fixtures live in conftest.py)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from fleetimage.cli import app
from fleetimage.mock import FaultConfig, MockEC2Thread

REGIONS = ("us-east-1", "eu-west-1")
IMAGEABLE = frozenset({"running", "stopped", "stopping"})
MockFactory = Callable[..., MockEC2Thread]


def fleet_config(
    regions: tuple[str, ...] = REGIONS, *, scale: float = 50.0, **overrides: Any
) -> dict[str, Any]:
    """A config whose limits match the mock's time-scaled buckets and whose waits are short."""
    cfg: dict[str, Any] = {
        "targets": [{"regions": list(regions), "all_instances": True}],
        "limits": {
            "CreateImage": {"burst": 50, "rate_per_s": 5 * scale},
            "DescribeImages": {"burst": 100, "rate_per_s": 20 * scale},
            "DescribeInstances": {"burst": 100, "rate_per_s": 20 * scale},
        },
        "wait": {"poll_interval_s": 0.05, "timeout_s": 60, "not_found_grace_s": 5},
        "retry": {
            "base_delay_s": 0.01,
            "max_delay_s": 0.2,
            "quota_delay_s": 0.1,
            "max_outage_s": 30,
            "breaker_cooldown_s": 0.05,
            "breaker_max_cooldown_s": 0.3,
        },
        "max_errors": "100%",
    }
    cfg.update(overrides)
    return cfg


def write_config(path: Path, data: dict[str, Any] | str) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def cli(*args: str | Path) -> Ran:
    """Run the CLI in-process (CliRunner: stdin is not a TTY, so no confirmation prompt)."""
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    return Ran(result.exit_code, result.stdout, result.stderr)


def cli_command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "fleetimage.cli", *(str(a) for a in args)]


def cli_process(*args: str | Path, **kwargs: Any) -> subprocess.Popen[str]:
    """The CLI as a real process (own process group: signals reach only it)."""
    return subprocess.Popen(
        cli_command(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        start_new_session=True,
        **kwargs,
    )


# Limits for the client that never pace it (the paged fleet's mock has no buckets).
UNLIMITED_IMAGING = {
    action: {"burst": 1_000_000, "rate_per_s": 1.0e9}
    for action in ("CreateImage", "DescribeImages")
}


def paged_fleet(
    mock_thread: MockFactory, regions: tuple[str, ...], instances: int, *, pending_s: float
) -> MockEC2Thread:
    """Lanes of several DescribeInstances pages, each answered after 1 s (real time), no
    buckets: what a lane images while its later pages are still coming."""
    return mock_thread(
        regions=regions,
        instances_per_region=instances,
        state_mix={"running": 1.0},
        time_scale=1.0,
        pending_s=pending_s,
        throttling=False,
        faults=FaultConfig(slow=1.0, slow_s=1.0, actions=frozenset({"DescribeInstances"})),
    )


def imageable(mock: MockEC2Thread) -> set[tuple[str, str, str]]:
    cfg = mock.mock.config
    account = cfg.default_account
    return {
        (account, region, i["instance_id"])
        for region in cfg.regions
        for i in mock.call(lambda m, r=region: m.instances(account, r))
        if i["state"] in IMAGEABLE
    }


def journal_rows(path: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Read the journal with plain sqlite3, read-only (works while a run writes to it)."""
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError:  # the schema is not created yet
        return []
    finally:
        conn.close()


def one_line_error(ran: Ran, *, alone: bool = True) -> str:
    """Assert the run failed with one ``error: ...`` line, last on stderr (``alone``: the only
    line at all); return it."""
    lines = [line for line in ran.stderr.splitlines() if line.strip()]
    assert lines, ran.output
    assert sum(line.startswith("error: ") for line in lines) == 1, ran.stderr
    if alone:
        assert len(lines) == 1, ran.stderr
    lines = lines[-1:]
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in ran.output
    return lines[0]
