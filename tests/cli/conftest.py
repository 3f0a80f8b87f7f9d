"""CLI test fixtures: a sandboxed working directory and a mock EC2 in a thread.

The root conftest points the AWS environment at fake credentials that the mock maps to its
default account, so the CLI (in-process or as a subprocess) reaches the mock only through
``--endpoint-url``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import REGIONS, MockFactory

from fleetimage.mock import MockConfig, MockEC2Thread


@pytest.fixture(autouse=True)
def _cli_sandbox(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Default report paths land in tmp_path; the default journal too; no colours."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLEETIMAGE_JOURNAL", str(tmp_path / "default-journal.sqlite3"))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def mock_thread() -> Iterator[MockFactory]:
    """``mock = mock_thread(regions=..., ...)``: a MockEC2Thread, stopped at teardown."""
    started: list[MockEC2Thread] = []

    def factory(**kwargs: Any) -> MockEC2Thread:
        kwargs.setdefault("regions", REGIONS)
        kwargs.setdefault("instances_per_region", 12)
        kwargs.setdefault("seed", 4)
        kwargs.setdefault("time_scale", 50.0)
        kwargs.setdefault("pending_s", 5.0)
        mock = MockEC2Thread(MockConfig(**kwargs)).start()
        started.append(mock)
        return mock

    yield factory
    for mock in started:
        mock.stop()
