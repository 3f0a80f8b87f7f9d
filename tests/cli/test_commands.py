"""Every command end to end against the mock: plan, run, resume, runs, status, permissions."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from cli_helpers import MockFactory, cli, fleet_config, imageable, write_config

from fleetimage.mock import FaultConfig


def _report(tmp_path: Path, run_id: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((tmp_path / f"fleetimage-{run_id}.json").read_text())
    return data


def _run_id(stdout: str) -> str:
    line = next(line for line in stdout.splitlines() if line.startswith("run id: "))
    return line.removeprefix("run id: ").strip()


def test_plan_json_and_table(mock_thread: MockFactory, tmp_path: Path) -> None:
    mock = mock_thread()
    cfg = write_config(tmp_path / "fleet.yaml", fleet_config())
    ran = cli("plan", "-c", cfg, "--endpoint-url", mock.endpoint_url, "--json")
    assert ran.code == 0, ran.output
    data = json.loads(ran.stdout)
    expected = imageable(mock)
    planned = {
        (lane["account"], lane["region"], t["instance_id"])
        for lane in data["lanes"]
        for t in lane["targets"]
    }
    assert planned == expected and data["targets"] == len(expected)
    for lane in data["lanes"]:
        for t in lane["targets"]:
            assert t["instance_id"] in t["name"] and data["run_id"] in t["name"]
        for s in lane["skipped"]:
            assert s["state"] in s["reason"]
    assert data["skipped"] == 2 * 12 - len(expected)
    assert data["minimum_seconds"] == 0  # 12 per region fit in the burst of 50

    ran = cli("plan", "-c", cfg, "--endpoint-url", mock.endpoint_url)
    assert ran.code == 0
    assert "us-east-1" in ran.stdout and "eu-west-1" in ran.stdout
    assert "skipped: instance is" in ran.stdout
    assert "Estimated minimum time" in ran.stdout
    assert mock.count(action="CreateImage") == 0
    assert mock.count(action="DescribeImages") == 0


def test_plan_minimum_time_and_lane_errors(mock_thread: MockFactory, tmp_path: Path) -> None:
    mock = mock_thread(
        instances_per_region=120,
        denied_roles=frozenset({"222222222222"}),
        accounts=("123456789012", "222222222222"),
    )
    cfg = fleet_config(
        scale=1,
        targets=[
            {"regions": ["us-east-1"], "all_instances": True},
            {
                "regions": ["us-east-1"],
                "all_instances": True,
                "accounts": [{"role_arn": "arn:aws:iam::222222222222:role/fleetimage"}],
            },
        ],
    )
    path = write_config(tmp_path / "fleet.yaml", cfg)
    ran = cli("plan", "-c", path, "--endpoint-url", mock.endpoint_url, "--json")
    assert ran.code == 1  # a lane could not be planned
    data = json.loads(ran.stdout)
    assert data["lane_errors"] == 1
    denied = next(lane for lane in data["lanes"] if lane["error"])
    assert denied["account"] == "222222222222" and denied["error"]["action"] == "AssumeRole"
    n = data["targets"]
    assert data["minimum_seconds"] == (n - 50) / 5  # AWS default CreateImage bucket


def test_run_then_runs_and_status(mock_thread: MockFactory, tmp_path: Path) -> None:
    mock = mock_thread()
    cfg = write_config(tmp_path / "fleet.yaml", fleet_config())
    journal = tmp_path / "journal.sqlite3"
    ran = cli("run", "-c", cfg, "--endpoint-url", mock.endpoint_url, "--journal", journal)
    assert ran.code == 0, ran.output
    run_id = _run_id(ran.stdout)
    assert f"report: fleetimage-{run_id}.json" in ran.stdout
    assert "targets in" in ran.stdout and ": ok" in ran.stdout
    assert "resume" not in ran.stdout  # nothing left to do
    report = _report(tmp_path, run_id)
    counts = report["counts"]
    assert isinstance(counts, dict)
    expected = imageable(mock)
    assert counts["available"] == len(expected) and counts["total"] == 24
    assert all(mock.call(lambda m: m.images_per_instance()).get(k) == 1 for k in expected)
    assert not mock.call(lambda m: m.duplicates())
    # progress lines went to stderr (not a TTY here)
    assert "create/s" in ran.stderr

    runs = cli("runs", "--journal", journal, "--json")
    assert runs.code == 0
    [listed] = json.loads(runs.stdout)
    assert listed["run_id"] == run_id and listed["status"] == "finished"
    assert listed["counts"]["available"] == len(expected)
    table = cli("runs", "--journal", journal)
    assert run_id in table.stdout and "finished" in table.stdout

    status = cli("status", run_id, "--journal", journal)
    assert status.code == 0, status.output
    assert "finished" in status.stdout and "available" in status.stdout
    data = json.loads(cli("status", run_id, "--journal", journal, "--json").stdout)
    assert {t["state"] for t in data["targets"]} == {"available", "skipped"}


def test_failures_exit_1_csv_report(mock_thread: MockFactory, tmp_path: Path) -> None:
    mock = mock_thread(failure_rate=0.3)
    cfg = write_config(tmp_path / "fleet.yaml", fleet_config())
    ran = cli("run", "-c", cfg, "--endpoint-url", mock.endpoint_url, "--report", "out/r.csv")
    assert ran.code == 1, ran.output
    assert "failures" in ran.stdout and "Server.InternalError" in ran.stdout
    assert "not ok" in ran.stdout
    with open(tmp_path / "out" / "r.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 24
    assert {"failed", "available", "skipped"} == {r["outcome"] for r in rows}
    assert list(rows[0])[:4] == ["account", "region", "instance_id", "outcome"]
    status = cli("status", _run_id(ran.stdout))  # default journal ($FLEETIMAGE_JOURNAL)
    assert status.code == 1 and "failed" in status.stdout


def test_dry_run_creates_nothing_and_writes_no_journal(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    mock = mock_thread()
    cfg = write_config(tmp_path / "fleet.yaml", fleet_config())
    ran = cli("run", "-c", cfg, "--endpoint-url", mock.endpoint_url, "--dry-run")
    assert ran.code == 0, ran.output
    report = _report(tmp_path, _run_id(ran.stdout))
    assert report["dry_run"] is True
    assert not mock.call(lambda m: m.images_per_instance())
    assert not (tmp_path / "default-journal.sqlite3").exists()


def test_no_wait_then_resume_waits_without_resending(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    mock = mock_thread(pending_s=60)  # 1.2 s at time_scale 50
    cfg = write_config(tmp_path / "fleet.yaml", fleet_config())
    ran = cli("run", "-c", cfg, "--endpoint-url", mock.endpoint_url, "--no-wait")
    assert ran.code == 0, ran.output
    run_id = _run_id(ran.stdout)
    n = len(imageable(mock))
    assert _report(tmp_path, run_id)["counts"]["pending"] == n  # type: ignore[index]
    assert f"images pending (--no-wait); to wait for them: fleetimage resume {run_id}" in ran.stdout
    sent = mock.count(action="CreateImage")
    ran = cli("resume", run_id, "--endpoint-url", mock.endpoint_url)
    assert ran.code == 0, ran.output
    assert "resuming run" in ran.stderr and f"{n} pending" in ran.stderr
    assert _report(tmp_path, run_id)["counts"]["available"] == n  # type: ignore[index]
    assert mock.count(action="CreateImage") == sent
    assert not mock.call(lambda m: m.duplicates())


def test_deadline_then_resume(mock_thread: MockFactory, tmp_path: Path) -> None:
    # CreateImage: burst 2, 10/s in real time (time_scale 1): ~36 targets take ~3.4 s after
    # planning, the deadline is 1 s after the command starts.
    mock = mock_thread(
        instances_per_region=20, limits={"CreateImage": (2, 10)}, time_scale=1.0, pending_s=0.5
    )
    cfg = fleet_config(limits={"CreateImage": {"burst": 2, "rate_per_s": 10}})
    path = write_config(tmp_path / "fleet.yaml", cfg)
    ran = cli("run", "-c", path, "--endpoint-url", mock.endpoint_url, "--deadline", "1s")
    assert ran.code == 1, ran.output
    run_id = _run_id(ran.stdout)
    counts = _report(tmp_path, run_id)["counts"]
    assert isinstance(counts, dict) and counts["not_started"] > 0, counts
    assert f"to finish this run: fleetimage resume {run_id}" in ran.stdout
    ran = cli("resume", run_id, "--endpoint-url", mock.endpoint_url, "--max-errors", "0")
    assert ran.code == 0, ran.output
    expected = imageable(mock)
    per_instance = mock.call(lambda m: m.images_per_instance())
    assert {k for k, v in per_instance.items() if v == 1} == expected
    assert not mock.call(lambda m: m.duplicates())


def test_log_file_json(mock_thread: MockFactory, tmp_path: Path) -> None:
    mock = mock_thread(faults=FaultConfig(internal_error=0.05))
    cfg = write_config(tmp_path / "fleet.yaml", fleet_config())
    log = tmp_path / "run.log"
    ran = cli(
        "run",
        "-c",
        cfg,
        "--endpoint-url",
        mock.endpoint_url,
        "--log-format",
        "json",
        "--log-file",
        log,
    )
    assert ran.code == 0, ran.output
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    events = {line["event"] for line in lines}
    assert {"requested", "created", "available"} <= events
    assert all("run_id" in line for line in lines if line["event"] == "created")
    assert "AKIA" not in log.read_text()


def test_permissions(tmp_path: Path) -> None:
    own = write_config(tmp_path / "own.yaml", fleet_config())
    ran = cli("permissions", "-c", own)
    assert ran.code == 0
    policy = json.loads(ran.stdout)
    actions = {
        a
        for s in policy["Statement"]
        for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    }
    imaging = {"ec2:DescribeInstances", "ec2:DescribeImages", "ec2:CreateImage", "ec2:CreateTags"}
    pruning = {
        "ec2:DeregisterImage",
        "ec2:DeleteSnapshot",
        "ec2:DescribeSnapshots",
        "ec2:DescribeImageReferences",
        "ec2:DescribeLaunchTemplates",
        "ec2:DescribeLaunchTemplateVersions",
        "ssm:DescribeParameters",
        "ssm:GetParameters",
        "rbin:ListRules",
    }
    assert imaging | pruning <= actions
    assert {a for a in actions - imaging - pruning if not a.startswith("imagebuilder:")} == set()
    # deregistration is limited to this fleet's images (the name defaults to the file's stem)
    prune = next(s for s in policy["Statement"] if s["Action"] == "ec2:DeregisterImage")
    assert prune["Condition"] == {"StringEquals": {"aws:ResourceTag/fleetimage:fleet": "own"}}
    tag = next(s for s in policy["Statement"] if s["Action"] == "ec2:CreateTags")
    assert tag["Condition"] == {"StringEquals": {"ec2:CreateAction": "CreateImage"}}

    roles = fleet_config(
        targets=[
            {
                "regions": ["us-gov-west-1"],
                "all_instances": True,
                "accounts": [{"role_arn": "arn:aws-us-gov:iam::111111111111:role/fleetimage"}],
            }
        ]
    )
    ran = cli("permissions", "-c", write_config(tmp_path / "roles.yaml", roles))
    policy = json.loads(ran.stdout)
    assume = next(s for s in policy["Statement"] if s["Action"] == "sts:AssumeRole")
    assert assume["Resource"] == ["arn:aws-us-gov:iam::111111111111:role/fleetimage"]
    create = next(s for s in policy["Statement"] if s["Action"] == "ec2:CreateImage")
    assert all(r.startswith("arn:aws-us-gov:ec2:") for r in create["Resource"])
    assert "attach the ec2:* statements to each role" in ran.stderr
