"""`fleetimage run` on a terminal shows the whole plan and asks before anything is sent: the
answer goes through a real pseudo-terminal (stdin and stderr), as a user's would."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

import pytest
from cli_helpers import MockFactory, cli_command, fleet_config, journal_rows, write_config

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
PROMPT = "Create images of"


def _answer(command: list[str], answer: str, timeout_s: float = 60) -> tuple[int, str, str]:
    """Run ``command`` with a terminal for stdin and stderr; answer its prompt with
    ``answer`` once it shows. Returns (exit code, stdout, the terminal's text)."""
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen(
        command, stdin=follower, stderr=follower, stdout=subprocess.PIPE, env=env, text=True
    )
    os.close(follower)
    seen, answered = b"", False
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            if not answered and PROMPT.encode() in seen:
                os.write(leader, f"{answer}\n".encode())
                answered = True
            if proc.poll() is not None and not ready:
                break
        assert answered, seen.decode(errors="replace")
        out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        if proc.stdout is not None:
            proc.stdout.close()
        proc.wait()
        os.close(leader)
    text = ANSI.sub("", seen.decode(errors="replace")).replace("\r\n", "\n")
    return proc.returncode, out, text


@pytest.mark.parametrize("answer", ["n", "y"])
def test_a_run_on_a_terminal_shows_its_plan_and_asks(
    mock_thread: MockFactory, tmp_path: Path, answer: str
) -> None:
    mock = mock_thread(instances_per_region=12, state_mix={"running": 1.0})
    cfg = write_config(tmp_path / "fleet.yaml", fleet_config())
    journal = tmp_path / "j.db"
    command = cli_command(
        "run", "-c", cfg, "--endpoint-url", mock.endpoint_url, "--journal", journal,
        "--report", tmp_path / "r.json",
    )  # fmt: skip
    code, out, terminal = _answer(command, answer)
    # asking, the run shows the whole plan's count before the question, not as it discovers
    count = re.search(r"run \S+: 24 instances in 2 regions \(1 account\); 0 skipped", terminal)
    assert count is not None and count.start() < terminal.index(PROMPT), terminal
    assert "first discovery page" not in terminal
    if answer == "n":
        assert "aborted: nothing was sent" in terminal, terminal
        assert mock.count(action="CreateImage") == 0
        assert journal_rows(journal, "SELECT count(*) FROM runs") == [(0,)]
    else:
        assert code == 0, (out, terminal)
        assert mock.count(action="CreateImage") == 24
        assert "run id: " in out
