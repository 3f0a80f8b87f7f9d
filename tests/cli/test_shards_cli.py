"""Past one machine: shards as separate processes, a shard restarted without its journal,
saved plans dealt by target count, ``report merge`` and the flags' bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from cli_helpers import (
    MockFactory,
    cli,
    cli_command,
    cli_process,
    fleet_config,
    imageable,
    one_line_error,
    write_config,
)

from fleetimage.config import load_config
from fleetimage.core.models import LaneKey
from fleetimage.core.shards import lane_shard
from fleetimage.core.tags import START_TAG
from fleetimage.engine.planfile import load_plan, plan_shard
from fleetimage.mock import FaultConfig, MockEC2Thread

CANDIDATES = (
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "eu-west-1",
    "eu-west-2",
    "eu-central-1",
    "ap-south-1",
    "ap-northeast-1",
    "sa-east-1",
    "ca-central-1",
    "eu-north-1",
    "eu-west-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-northeast-2",
    "ap-northeast-3",
    "af-south-1",
    "me-south-1",
    "ap-east-1",
)
ACCOUNT = "123456789012"  # the mock's default account


def _regions_covering(count: int, per_shard: int) -> tuple[str, ...]:
    """Regions whose lanes give each of ``count`` hash shards ``per_shard`` lanes."""
    picked: dict[int, list[str]] = {i: [] for i in range(count)}
    for region in CANDIDATES:
        shard = lane_shard(LaneKey(ACCOUNT, region), count)
        if len(picked[shard]) < per_shard:
            picked[shard].append(region)
    assert all(len(p) == per_shard for p in picked.values()), picked
    return tuple(r for p in picked.values() for r in p)


def _images_per_instance(mock: MockEC2Thread) -> dict[tuple[str, str, str], int]:
    return dict(mock.call(lambda m: m.images_per_instance()))


def test_four_shards_as_four_processes_then_merge(mock_thread: MockFactory, tmp_path: Path) -> None:
    regions = _regions_covering(4, 2)
    mock = mock_thread(regions=regions, instances_per_region=6, seed=3)
    cfg = write_config(tmp_path / "fleet.yaml", fleet_config(regions))
    url = mock.endpoint_url
    procs = []
    for i in range(4):
        common = ["run", "-c", cfg, "--endpoint-url", url, "--run-id", "nightly-1", "--yes"]
        report = tmp_path / f"shard-{i}.json"
        journal = tmp_path / f"journal-{i}.sqlite3"
        env = {**os.environ, "FLEETIMAGE_JOURNAL": str(journal)}
        if i % 2:  # half by flag, half as an Indexed Job's pod would see it
            args = [*common, "--shard", f"{i}/4", "--report", report]
        else:
            args = [*common, "--report", report]
            env.update(JOB_COMPLETION_INDEX=str(i), FLEETIMAGE_SHARD_COUNT="4")
        procs.append(
            subprocess.Popen(
                cli_command(*args),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"shard {i}: {out}\n{err}"
        assert f"(shard {i}/4)" in err

    reports = [json.loads((tmp_path / f"shard-{i}.json").read_text()) for i in range(4)]
    lanes_of = [{(r["account"], r["region"]) for r in rep["results"]} for rep in reports]
    for i, rep in enumerate(reports):
        assert rep["shard"] == f"{i}/4" and rep["run_id"] == "nightly-1"
        assert lanes_of[i] == {
            (ACCOUNT, r) for r in regions if lane_shard(LaneKey(ACCOUNT, r), 4) == i
        }
    assert sum(len(lanes) for lanes in lanes_of) == len(set().union(*lanes_of)) == len(regions)

    ran = cli("report", "merge", *(tmp_path / f"shard-{i}.json" for i in (3, 1, 0, 2)))
    assert ran.code == 0, ran.output
    merged = json.loads(ran.stdout)
    assert merged["shards"] == ["0/4", "1/4", "2/4", "3/4"] and merged["shard"] is None
    keys = [(r["account"], r["region"], r["instance_id"]) for r in merged["results"]]
    assert len(keys) == len(set(keys)) == len(regions) * 6  # every target once
    available = {
        k for k, r in zip(keys, merged["results"], strict=True) if r["outcome"] == "available"
    }
    assert available == imageable(mock)
    per_instance = _images_per_instance(mock)
    assert mock.call(lambda m: m.duplicates()) == {}
    assert set(per_instance) == imageable(mock) and set(per_instance.values()) == {1}

    # --report OUT writes it; a missing shard is refused, and nothing is written
    out = tmp_path / "all.json"
    ran = cli("report", "merge", *(tmp_path / f"shard-{i}.json" for i in range(4)), "--report", out)
    assert ran.code == 0 and json.loads(out.read_text())["counts"] == merged["counts"]
    ran = cli("report", "merge", *(tmp_path / f"shard-{i}.json" for i in (0, 1, 3)))
    assert ran.code == 2 and "missing shards: 2/4" in one_line_error(ran)
    assert ran.stdout == ""
    ran = cli("report", "merge", tmp_path / "shard-0.json", tmp_path / "shard-0.json")
    assert ran.code == 2 and "given twice" in one_line_error(ran)


def test_a_shard_killed_mid_create_reruns_without_its_journal(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    # Real time, CreateImage 5 burst + 8/s, answers 0.5 s late (applied at once): a kill
    # mid-create leaves images the dead process never recorded. Names carry {date}-{time}
    # and no run id: a restart must render them from the run's recorded start.
    regions = _regions_covering(2, 2)
    mock = mock_thread(
        regions=regions,
        instances_per_region=15,
        seed=8,
        time_scale=1.0,
        pending_s=1.0,
        limits={"CreateImage": (5, 8)},
        faults=FaultConfig(slow=1.0, slow_s=0.5, actions=frozenset({"CreateImage"})),
    )
    cfg = fleet_config(
        regions,
        scale=1,
        limits={"CreateImage": {"burst": 5, "rate_per_s": 8}},
        wait={"poll_interval_s": 0.2, "timeout_s": 120, "not_found_grace_s": 5},
        image={"name_template": "{tag:Name}-{instance_id}-{date}-{time}"},
    )
    config = write_config(tmp_path / "fleet.yaml", cfg)
    journal = tmp_path / "journal.sqlite3"
    report = tmp_path / "shard-0.json"
    args = [
        "run", "-c", config, "--endpoint-url", mock.endpoint_url, "--run-id", "restart-1",
        "--shard", "0/2", "--journal", journal, "--report", report, "--yes",
    ]  # fmt: skip
    mine = {k for k in imageable(mock) if lane_shard(LaneKey(k[0], k[1]), 2) == 0}
    assert len(mine) > 15

    proc = cli_process(*args)
    deadline = time.monotonic() + 60
    while mock.count(action="CreateImage", outcome="ok") < 8:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no CreateImage answered in time"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    made = mock.count(action="CreateImage", outcome="ok")
    assert 0 < made < len(mine), "the kill came too late to be mid-create"
    for path in tmp_path.glob("journal.sqlite3*"):  # the shard's disk is gone
        path.unlink()
    # an instance imaged before the kill is terminated since: its image is still adopted
    made_images = [i for r in regions for i in mock.call(lambda m, r=r: m.images(ACCOUNT, r))]
    gone = made_images[0]
    mock.call(
        lambda m: m.set_instance_state(
            ACCOUNT, gone["region"], gone["source_instance_id"], "terminated"
        )
    )
    time.sleep(1.1)  # the restart's clock is in another second than the run's start
    sent_before_restart = mock.count(action="CreateImage")

    ran = cli(*args)
    assert ran.code == 0, ran.output
    resent = mock.count(action="CreateImage") - sent_before_restart
    # one CreateImage per image never made; a made one is adopted by tag (or by name)
    assert mock.count(action="CreateImage", outcome="ok") == len(mine)
    per_instance = _images_per_instance(mock)
    assert mock.call(lambda m: m.duplicates()) == {}
    assert set(per_instance) == mine and set(per_instance.values()) == {1}
    data = json.loads(report.read_text())
    assert data["shard"] == "0/2" and data["run_id"] == "restart-1"
    [adopted] = [r for r in data["results"] if r["instance_id"] == gone["source_instance_id"]]
    assert adopted["outcome"] == "available" and adopted["image_id"] == gone["image_id"]
    assert {
        (r["account"], r["region"], r["instance_id"])
        for r in data["results"]
        if r["outcome"] == "available"
    } == mine
    # every name carries the first start's date and time ("YYYY-MM-DD-HHMMSS"), not the
    # restart's, and every image the start it was rendered from
    images = [i for r in regions for i in mock.call(lambda m, r=r: m.images(ACCOUNT, r))]
    assert len(images) == len(mine)
    assert len({i["name"][-17:] for i in images}) == 1, {i["name"] for i in images}
    assert len({i["tags"][START_TAG] for i in images}) == 1
    print(
        f"shard restart: {made} of {len(mine)} images made before the kill, {resent} "
        "CreateImage calls after the restart, 0 duplicates"
    )

    # the same id again, now in the journal: refused, pointing at resume, nothing sent
    before = mock.count(action="CreateImage")
    ran = cli(*args)
    assert ran.code == 2
    assert f"fleetimage resume restart-1 --journal {journal}" in one_line_error(ran)
    assert mock.count(action="CreateImage") == before


def test_saved_plan_is_dealt_by_target_count(mock_thread: MockFactory, tmp_path: Path) -> None:
    regions = CANDIDATES[:5]
    mock = mock_thread(regions=regions, instances_per_region=4, seed=5, state_mix={"running": 1.0})
    for _ in range(8):  # one lane three times the others: hashing would not balance it
        mock.call(lambda m: m.add_instance(ACCOUNT, regions[0], tags={"Name": "big"}))
    cfg = write_config(tmp_path / "fleet.yaml", fleet_config(regions))
    plan = tmp_path / "plan.json"
    url = mock.endpoint_url
    ran = cli("plan", "-c", cfg, "--endpoint-url", url, "--out", plan, "--run-id", "planned-1")
    assert ran.code == 0, ran.output
    assert f"plan saved: {plan} (run id planned-1)" in ran.stderr
    saved = load_plan(plan, load_config(cfg))
    discovered = mock.count(action="DescribeInstances")
    reports = []
    for i in range(2):
        report = tmp_path / f"p{i}.json"
        ran = cli(
            "run", "-c", cfg, "--endpoint-url", url, "--plan", plan, "--shard", f"{i}/2",
            "--journal", tmp_path / f"j{i}.sqlite3", "--report", report, "--yes",
        )  # fmt: skip
        assert ran.code == 0, ran.output
        reports.append(json.loads(report.read_text()))
        dealt = plan_shard(saved, i, 2).lanes
        assert dealt and {(r["account"], r["region"]) for r in reports[i]["results"]} == {
            (k.account, k.region) for k in dealt
        }
    assert mock.count(action="DescribeInstances") == discovered  # exactly the saved plan
    sizes = sorted(len(rep["results"]) for rep in reports)
    assert sizes == [12, 16]  # 12 + 4 | 4 + 4 + 4 (hash: anything from 0 to 28 on one)
    assert mock.call(lambda m: m.duplicates()) == {}
    assert set(_images_per_instance(mock)) == imageable(mock)
    images = [i for r in regions for i in mock.call(lambda m, r=r: m.images(ACCOUNT, r))]
    assert {i["tags"][START_TAG] for i in images} == {saved.started_at.isoformat()}
    ran = cli("report", "merge", tmp_path / "p0.json", tmp_path / "p1.json")
    assert ran.code == 0 and json.loads(ran.stdout)["run_id"] == "planned-1"

    # the plan was made from another config: refused before anything is sent
    other = write_config(tmp_path / "other.yaml", fleet_config(regions, max_errors="5"))
    ran = cli("run", "-c", other, "--endpoint-url", url, "--plan", plan, "--yes")
    assert ran.code == 2 and "made from another config" in one_line_error(ran)
    ran = cli("run", "-c", cfg, "--endpoint-url", url, "--plan", plan, "--run-id", "x", "--yes")
    assert ran.code == 2 and "differs from the run id of --plan" in one_line_error(ran)


def test_bad_run_ids_and_shards_are_one_line_and_send_nothing(
    mock_thread: MockFactory, tmp_path: Path
) -> None:
    mock = mock_thread(instances_per_region=2)
    cfg = write_config(tmp_path / "fleet.yaml", fleet_config())
    url = mock.endpoint_url
    for flags, why in [
        (["--run-id", "night_ly"], "--run-id: run id 'night_ly' is not valid"),
        (["--run-id", "x" * 41], "41 characters"),
        (["--shard", "4/4"], "--shard: shard index 4 is out of range for 4 shards"),
        (["--shard", "0/0"], "--shard: the shard count must be at least 1"),
        (["--shard", "one/4"], "--shard: 'one/4' is not I/N"),
        (["--plan", tmp_path / "nope.json"], "--plan"),
    ]:
        ran = cli("run", "-c", cfg, "--endpoint-url", url, "--yes", *flags)
        assert ran.code == 2, (flags, ran.output)
        assert why in one_line_error(ran), (flags, ran.stderr)
    for env, why in [
        ({"JOB_COMPLETION_INDEX": "1"}, "FLEETIMAGE_SHARD_COUNT is not"),
        ({"AWS_BATCH_JOB_ARRAY_INDEX": "3", "AWS_BATCH_JOB_ARRAY_SIZE": "3"}, "out of range"),
        ({"JOB_COMPLETION_INDEX": "x", "FLEETIMAGE_SHARD_COUNT": "2"}, "'x' is not a whole"),
    ]:
        with pytest.MonkeyPatch.context() as mp:
            for name, value in env.items():
                mp.setenv(name, value)
            ran = cli("run", "-c", cfg, "--endpoint-url", url, "--yes")
        assert ran.code == 2 and why in one_line_error(ran), ran.output
    assert mock.count() == 0, "bad input must send nothing"


def test_resume_of_a_shard_stays_in_its_lanes(mock_thread: MockFactory, tmp_path: Path) -> None:
    regions = _regions_covering(2, 1)
    mock = mock_thread(regions=regions, instances_per_region=3, state_mix={"running": 1.0})
    cfg = write_config(tmp_path / "fleet.yaml", fleet_config(regions))
    url = mock.endpoint_url
    journal = tmp_path / "journal.sqlite3"
    report = tmp_path / "shard-1.json"
    ran = cli(
        "run", "-c", cfg, "--endpoint-url", url, "--shard", "1/2", "--journal", journal,
        "--report", report, "--no-wait", "--yes",
    )  # fmt: skip
    assert ran.code == 0, ran.output
    run_id = json.loads(report.read_text())["run_id"]
    mine, theirs = (r for i in (1, 0) for r in regions if lane_shard(LaneKey(ACCOUNT, r), 2) == i)
    new_mine = mock.call(lambda m: m.add_instance(ACCOUNT, mine, tags={"Name": "late"}))
    mock.call(lambda m: m.add_instance(ACCOUNT, theirs, tags={"Name": "late"}))
    ran = cli(
        "resume", run_id, "--journal", journal, "--endpoint-url", url, "--rediscover",
        "--report", report, "--yes",
    )  # fmt: skip
    assert ran.code == 0, ran.output
    assert f"found since the run started: 1 instance ({ACCOUNT}/{mine}/{new_mine})" in ran.stderr
    data = json.loads(report.read_text())
    assert data["shard"] == "1/2"
    assert {r["region"] for r in data["results"]} == {mine}
    assert mock.count(action="DescribeInstances", region=theirs) == 0
    assert mock.count(action="CreateImage", region=theirs) == 0
