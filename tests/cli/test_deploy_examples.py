"""The deploy examples parse, pass only what the CLI accepts, and their entry point works:
two shards run as a Kubernetes Indexed Job's pods would, one restarted on its kept journal."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from cli_helpers import MockFactory, cli, fleet_config, imageable, write_config

from fleetimage.cli import app
from fleetimage.core.naming import validate_run_id
from fleetimage.core.shards import ENV_PAIRS

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SCRIPT = DEPLOY / "fleetimage-shard.sh"
ENTRY = "/usr/local/bin/fleetimage-shard"
# Environment variables fleetimage itself reads (the others are the entry point's own).
READ_BY_FLEETIMAGE = {"FLEETIMAGE_JOURNAL", *(v for pair in ENV_PAIRS for v in pair)}
SCRIPT_INPUTS = {"RUN_ID", "FLEET_CONFIG", "REPORT_DIR"}


def _env(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in pairs}


def _check_env(env: dict[str, Any]) -> None:
    for name in env:
        assert name in SCRIPT_INPUTS or name in READ_BY_FLEETIMAGE, name
        assert not name.startswith("AWS_BATCH_"), "a protected prefix: Batch sets these itself"
    assert set(env) | {"RUN_ID"} >= SCRIPT_INPUTS


def test_kubernetes_indexed_job() -> None:
    [job] = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "indexed-job.yaml").read_text()))
    spec = job["spec"]
    assert job["kind"] == "Job" and spec["completionMode"] == "Indexed"
    validate_run_id(job["metadata"]["name"])  # the run id is the Job's name
    pod = spec["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"] == [ENTRY]
    env = _env(container["env"])
    _check_env(env)
    assert env["FLEETIMAGE_SHARD_COUNT"] == str(spec["completions"])
    assert "job-name" in env["RUN_ID"]["fieldRef"]["fieldPath"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    journal_claim = volumes["journal"]["ephemeral"]["volumeClaimTemplate"]["spec"]
    assert journal_claim["accessModes"] == ["ReadWriteOnce"]  # one per pod, never shared
    assert env["FLEETIMAGE_JOURNAL"].startswith(mounts["journal"] + "/")
    assert env["REPORT_DIR"] == mounts["reports"]
    assert env["FLEET_CONFIG"].startswith(mounts["config"] + "/")


def test_aws_batch_job_definition() -> None:
    job = json.loads((DEPLOY / "aws-batch" / "job-definition.json").read_text())
    props = job["containerProperties"]
    assert props["command"] == [ENTRY, "--run-id", "Ref::runId"]
    validate_run_id(job["parameters"]["runId"])
    env = _env(props["environment"])
    _check_env(env)
    mounts = {m["sourceVolume"]: m["containerPath"] for m in props["mountPoints"]}
    volumes = {v["name"]: v for v in props["volumes"]}
    journal_volume = next(n for n, p in mounts.items() if env["FLEETIMAGE_JOURNAL"].startswith(p))
    assert "efsVolumeConfiguration" not in volumes[journal_volume]  # SQLite's WAL: local only
    assert env["REPORT_DIR"].startswith(mounts["shared"])


def test_the_image_installs_the_entry_point() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert f"deploy/fleetimage-shard.sh {ENTRY}" in dockerfile


def _flags(command: Any) -> set[str]:
    return {opt for p in command.params for opt in getattr(p, "opts", [])}


def test_the_entry_point_passes_only_flags_the_cli_accepts() -> None:
    root: Any = typer.main.get_command(app)
    calls = re.findall(r"fleetimage (run|resume|status) ([^\n]*)", SCRIPT.read_text())
    assert {c for c, _ in calls} == {"run", "resume", "status"}
    for name, args in calls:
        command = root.commands[name]
        for flag in re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", args):
            assert flag in _flags(command), (name, flag)


@pytest.mark.slow  # six fleetimage processes: ~10 s on an idle 2-core machine
def test_the_entry_point_runs_two_shards_and_a_restart(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    mock = mock_thread(regions=("us-east-1", "eu-west-1", "eu-west-2"), instances_per_region=4)
    cfg = write_config(
        tmp_path / "fleet.yaml", fleet_config(("us-east-1", "eu-west-1", "eu-west-2"))
    )
    reports = tmp_path / "reports"
    bin_dir = str(Path(sys.executable).parent)  # where the fleetimage command is

    def shard(index: int) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "RUN_ID": "deploy-1",
            "FLEET_CONFIG": str(cfg),
            "REPORT_DIR": str(reports),
            "FLEETIMAGE_JOURNAL": str(tmp_path / f"journal-{index}.sqlite3"),
            "JOB_COMPLETION_INDEX": str(index),
            "FLEETIMAGE_SHARD_COUNT": "2",
        }
        return subprocess.run(
            ["sh", str(SCRIPT), "--endpoint-url", mock.endpoint_url],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    for index in (0, 1):
        done = shard(index)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"(shard {index}/2)" in done.stderr
    creates = mock.count(action="CreateImage")
    again = shard(0)  # restarted in place: its journal is kept, so it resumes
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming run deploy-1" in again.stderr
    assert mock.count(action="CreateImage") == creates

    parts = sorted(reports.glob("deploy-1-shard-*.json"))
    assert [p.name for p in parts] == ["deploy-1-shard-0.json", "deploy-1-shard-1.json"]
    merged = cli("report", "merge", *parts)
    assert merged.code == 0, merged.output
    available = {
        (r["account"], r["region"], r["instance_id"])
        for r in json.loads(merged.stdout)["results"]
        if r["outcome"] == "available"
    }
    assert available == imageable(mock)
    assert mock.call(lambda m: m.duplicates()) == {}
