"""Every command's --help: flags are shown as flags (``--yes``), never ``--yes <bool>``."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from fleetimage.cli import app


def _paths(command: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, sub in sorted((getattr(command, "commands", None) or {}).items()):
        found += _paths(sub, (*prefix, name))
    return found


COMMANDS = _paths(typer.main.get_command(app))


def test_the_tree_is_walked() -> None:
    names = {" ".join(p) for p in COMMANDS}
    assert {"", "run", "resume", "plan", "runs", "status", "demo", "mock serve"} <= names


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "fleetimage")
def test_help_shows_flags_as_flags(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "<bool>" not in out
    assert re.search(r"--help\s+Show this message", out), out
    for flag in ("--yes", "--no-wait", "--dry-run", "--allow-empty", "--json", "--debug"):
        for line in out.splitlines():
            if re.search(rf"{flag}\b(?!-)", line):
                # Nothing between the flag (and its short form) and its help text.
                assert re.search(rf"{flag}(\s+-\w)?\s{{2,}}[A-Z]", line), line


def test_run_help_names_every_flag() -> None:
    out = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "120"}).output
    for flag in ("--yes", "--no-wait", "--dry-run", "--allow-empty"):
        assert flag in out
    assert "json|console" in out and "LEVEL" in out  # values named, not typed
    assert "<str>" not in out
