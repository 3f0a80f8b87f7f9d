"""Copies through the CLI: plan shows them and their bound, run waits for them (summary,
progress, JSON and CSV reports, exit codes), --no-wait leaves them to resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from cli_helpers import MockFactory, cli, fleet_config, imageable, write_config

from fleetimage.mock.copy_config import CopyConfig

REGIONS = ("us-east-1", "eu-west-1")  # sources; each is the other's destination too


def copy_fleet(**copy: Any) -> dict[str, Any]:
    base = fleet_config()
    limits = {**base["limits"], "CopyImage": {"burst": 100, "rate_per_s": 50}}
    return fleet_config(limits=limits, copy={"regions": ["eu-west-1", "us-west-2"], **copy})


def _run_id(stdout: str) -> str:
    line = next(line for line in stdout.splitlines() if line.startswith("run id: "))
    return line.removeprefix("run id: ").strip()


def _report(tmp_path: Path, run_id: str) -> Any:
    return json.loads((tmp_path / f"fleetimage-{run_id}.json").read_text())


def test_plan_shows_copies_and_their_bound(mock_thread: MockFactory, tmp_path: Path) -> None:
    mock = mock_thread(instances_per_region=60, state_mix={"running": 1.0})
    cfg = write_config(
        tmp_path / "fleet.yaml", fleet_config(scale=1, copy={"regions": ["eu-west-1", "us-west-2"]})
    )
    ran = cli("plan", "-c", cfg, "--endpoint-url", mock.endpoint_url, "--json")
    assert ran.code == 0, ran.output
    copies = json.loads(ran.stdout)["copies"]
    lanes = {lane["region"]: lane for lane in copies["lanes"]}
    # eu-west-1 gets us-east-1's images only; us-west-2 gets both regions'.
    assert (lanes["eu-west-1"]["copies"], lanes["us-west-2"]["copies"]) == (60, 120)
    assert lanes["us-west-2"]["minimum_seconds"] == (120 - 100) / 1  # 100 burst, then 1/s
    assert lanes["eu-west-1"]["minimum_seconds"] == 0  # within the burst
    assert copies["minimum_seconds"] == 20 and copies["copies"] == 180
    table = cli("plan", "-c", cfg, "--endpoint-url", mock.endpoint_url)
    assert "180 copies into eu-west-1, us-west-2" in table.stdout
    assert mock.count(action="CopyImage") == 0


def test_run_waits_for_copies_and_reports_them(mock_thread: MockFactory, tmp_path: Path) -> None:
    mock = mock_thread(regions=(*REGIONS, "us-west-2"))
    cfg = write_config(tmp_path / "fleet.yaml", copy_fleet())
    ran = cli("run", "-c", cfg, "--endpoint-url", mock.endpoint_url, "--report", "r.csv")
    assert ran.code == 0, ran.output
    sources = {k for k in imageable(mock) if k[1] in REGIONS}
    expected = sum(1 if region == "eu-west-1" else 2 for _, region, _ in sources)
    assert f"{expected} copies in" in ran.stdout and ": ok" in ran.stdout
    assert "copies → us-west-2" in ran.stderr  # progress
    with open(tmp_path / "r.copies.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == expected and {r["outcome"] for r in rows} == {"available"}
    assert list(rows[0])[:5] == [
        "account",
        "source_region",
        "instance_id",
        "destination",
        "outcome",
    ]
    assert not any(mock.call(lambda m: m.copy_duplicates()).values())


def test_failed_copy_is_a_failure(mock_thread: MockFactory, tmp_path: Path) -> None:
    mock = mock_thread(regions=("us-east-1", "eu-west-1"), copies=CopyConfig(kms_keys=frozenset()))
    cfg = fleet_config(
        ("us-east-1",),
        limits={**fleet_config()["limits"], "CopyImage": {"burst": 100, "rate_per_s": 50}},
        copy={
            "regions": ["eu-west-1"],
            "encrypted": True,
            "kms_key_id": {"eu-west-1": "alias/gone"},
        },
    )
    path = write_config(tmp_path / "fleet.yaml", cfg)
    ran = cli("run", "-c", path, "--endpoint-url", mock.endpoint_url)
    assert ran.code == 1, ran.output
    assert "copy failures" in ran.stdout and "Client.InvalidKMSKey.NotFound" in ran.stdout
    report = _report(tmp_path, _run_id(ran.stdout))
    assert report["copy_counts"]["failed"] == report["copy_counts"]["total"] > 0
    assert report["counts"]["available"] == len({k for k in imageable(mock) if k[1] == "us-east-1"})
    status = cli("status", _run_id(ran.stdout), "--json")
    assert status.code == 1  # the journal knows the copies failed
    copies = json.loads(status.stdout)["copies"]
    assert len(copies) == report["copy_counts"]["total"]
    assert {(c["destination"], c["state"], c["error_code"]) for c in copies} == {
        ("eu-west-1", "failed", "Client.InvalidKMSKey.NotFound")
    }


def test_no_wait_leaves_copies_to_resume(mock_thread: MockFactory, tmp_path: Path) -> None:
    mock = mock_thread(regions=(*REGIONS, "us-west-2"))
    cfg = write_config(tmp_path / "fleet.yaml", copy_fleet())
    ran = cli("run", "-c", cfg, "--endpoint-url", mock.endpoint_url, "--no-wait")
    assert ran.code == 0, ran.output
    run_id = _run_id(ran.stdout)
    assert mock.count(action="CopyImage") == 0  # no source is known available yet
    waiting = cli("status", run_id)
    assert waiting.code == 1, waiting.output  # images pending, copies not yet made
    ran = cli("resume", run_id, "--endpoint-url", mock.endpoint_url)
    assert ran.code == 0, ran.output
    report = _report(tmp_path, run_id)
    assert report["copy_counts"]["available"] == report["copy_counts"]["total"] > 0
    assert not any(mock.call(lambda m: m.copy_duplicates()).values())
    done = cli("status", run_id)
    total = report["copy_counts"]["total"]
    assert done.code == 0 and f"copies: {total}: {total} available" in done.stdout, done.output
