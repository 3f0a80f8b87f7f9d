"""``accounts[].duration_s`` outside STS's 900-43,200: one line, exit 2, nothing sent."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import MockFactory, cli, fleet_config, one_line_error, write_config

ROLE = "arn:aws:iam::210987654321:role/fleetimage"


@pytest.mark.parametrize("duration_s", [600, 43201])
@pytest.mark.parametrize("command", ["run", "plan"])
def test_duration_s_out_of_range_is_refused_before_any_call(
    mock_thread: MockFactory, tmp_path: Path, duration_s: int, command: str
) -> None:
    mock = mock_thread()
    cfg = fleet_config()
    cfg["targets"] = [
        {
            "regions": ["us-east-1"],
            "all_instances": True,
            "accounts": [{"role_arn": ROLE, "duration_s": duration_s}],
        }
    ]
    path = write_config(tmp_path / "fleet.yaml", cfg)
    yes = ["--yes"] if command == "run" else []
    ran = cli(command, "-c", path, "--endpoint-url", mock.endpoint_url, *yes)
    assert ran.code == 2, ran.output
    line = one_line_error(ran)
    assert "targets[0].accounts[0].duration_s" in line and "900-43200" in line
    assert mock.count() == 0
