"""``fleetimage resume`` flags that change what a resume does, and their bad input."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import MockFactory, cli, fleet_config, one_line_error, write_config
from test_commands import _run_id

from fleetimage.mock import MockEC2Thread


def _finished_run(mock_thread: MockFactory, tmp_path: Path) -> tuple[MockEC2Thread, str]:
    mock = mock_thread(instances_per_region=3, state_mix={"running": 1.0})
    cfg = write_config(tmp_path / "fleet.yaml", fleet_config())
    ran = cli("run", "-c", cfg, "--endpoint-url", mock.endpoint_url)
    assert ran.code == 0, ran.output
    return mock, _run_id(ran.stdout)


def test_retry_failed_without_failures_and_rediscover_of_a_finished_run_send_nothing(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    mock, run_id = _finished_run(mock_thread, tmp_path)
    before = mock.call(lambda m: dict(m.counters))
    url = mock.endpoint_url

    ran = cli("resume", run_id, "--endpoint-url", url, "--retry-failed", "--yes")
    assert ran.code == 2
    assert "has no failed target to retry" in one_line_error(ran)

    ran = cli("resume", run_id, "--endpoint-url", url, "--rediscover", "--yes")
    assert ran.code == 2
    assert "is finished" in one_line_error(ran)

    assert mock.call(lambda m: dict(m.counters)) == before


def test_rediscover_shows_what_it_adds(mock_thread: MockFactory, tmp_path: Path) -> None:
    mock = mock_thread(instances_per_region=3, state_mix={"running": 1.0})
    cfg = write_config(tmp_path / "fleet.yaml", fleet_config())
    ran = cli("run", "-c", cfg, "--endpoint-url", mock.endpoint_url, "--no-wait")
    assert ran.code == 0, ran.output
    run_id = _run_id(ran.stdout)
    account = mock.mock.config.default_account
    region = mock.mock.config.regions[0]
    new = mock.call(lambda m: m.add_instance(account, region, tags={"Name": "late"}))
    ran = cli("resume", run_id, "--endpoint-url", mock.endpoint_url, "--rediscover", "--yes")
    assert ran.code == 0, ran.output
    assert f"found since the run started: 1 instance ({account}/{region}/{new})" in ran.stderr
    assert not mock.call(lambda m: m.duplicates())
