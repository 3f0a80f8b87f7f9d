"""``prune_fleet`` end to end on the mock, through aiobotocore: 3 runs × 30 instances × 2
regions, every safety case, exactly the expected set deleted, every kept one with its reason,
no orphaned snapshot, nothing outside this fleet touched."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

import fleetimage
from fleetimage import image_fleet, parse_config
from fleetimage.core.tags import FLEET_TAG
from fleetimage.engine.prune import prune_fleet
from fleetimage.journal.prune import prune_items
from fleetimage.journal.store import Journal
from fleetimage.mock import MockConfig

REGIONS = ("us-east-1", "eu-west-1")
SCALE = 20


def fleet_config(name: str, retention: dict[str, Any] | None = None) -> dict[str, Any]:
    s = SCALE
    return {
        "name": name,
        "targets": [{"regions": list(REGIONS), "all_instances": True}],
        "image": {"name_template": "{instance_id}-{run_id}", "tag_snapshots": False},
        "wait": {"poll_interval_s": 0.05, "timeout_s": 60, "not_found_grace_s": 5},
        "limits": {
            "CreateImage": {"burst": 50, "rate_per_s": 5 * s},
            "DescribeImages": {"burst": 100, "rate_per_s": 20 * s},
            "DescribeInstances": {"burst": 100, "rate_per_s": 20 * s},
            "DeregisterImage": {"burst": 100, "rate_per_s": 5 * s},
            "DeleteSnapshot": {"burst": 100, "rate_per_s": 5 * s},
            "DescribeSnapshots": {"burst": 100, "rate_per_s": 20 * s},
            "DescribeImageReferences": {"burst": 100, "rate_per_s": 20 * s},
        },
        "retry": {"base_delay_s": 0.01, "max_delay_s": 0.2},
        "max_errors": "100%",
        "retention": retention or {"keep_last": 1, "min_age": 0, "keep_tagged": ["Keep"]},
    }


@pytest.fixture
async def fleet(mock_ec2: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    mock = await mock_ec2(
        MockConfig(regions=REGIONS, instances_per_region=30, seed=11, time_scale=SCALE, pending_s=0)
    )
    for key, value in mock.credentials(mock.config.accounts[0]).items():
        monkeypatch.setenv(key.upper(), value)
    for _ in range(3):
        await image_fleet(parse_config(fleet_config("blue")), endpoint_url=mock.endpoint_url)
    # another team's fleet, same instances, one region
    red = fleet_config("red")
    red["targets"] = [{"regions": [REGIONS[0]], "all_instances": True}]
    await image_fleet(parse_config(red), endpoint_url=mock.endpoint_url)
    return mock


def groups(mock: Any, account: str, region: str) -> dict[str, list[dict[str, Any]]]:
    """Blue's images per instance, newest first."""
    out: dict[str, list[dict[str, Any]]] = {}
    for image in mock.images(account, region):
        if image["tags"].get(FLEET_TAG) == "blue":
            out.setdefault(image["source_instance_id"], []).append(image)
    for images in out.values():
        images.sort(key=lambda i: i["created_at"], reverse=True)
    return out


async def test_prune_deletes_exactly_the_expected_set(
    fleet: Any, ec2_client: Any, tmp_path: Path
) -> None:
    mock = fleet
    account = mock.config.accounts[0]
    region = REGIONS[0]
    before = {r: mock.images(account, r) for r in REGIONS}
    snapshots_before = {r: mock.snapshot_ids(account, r) for r in REGIONS}
    by_instance = groups(mock, account, region)
    iids = sorted(by_instance)
    old = {iid: by_instance[iid][1]["image_id"] for iid in iids}  # an older image each
    special: dict[str, str] = {}
    mock.launch_from_image(account, region, old[iids[0]])
    special[old[iids[0]]] = "ec2:Instance"
    mock.add_launch_template(account, region, [old[iids[1]]])
    special[old[iids[1]]] = "ec2:LaunchTemplate"
    mock.add_ssm_parameter(account, region, "/golden/web", old[iids[2]])
    special[old[iids[2]]] = "ssm:Parameter"
    mock.set_last_launched(account, region, old[iids[3]], time.time() - 3600)
    special[old[iids[3]]] = "within min_unused"
    mock.protect_image(account, region, old[iids[4]])
    special[old[iids[4]]] = "deregistration protection"
    async with ec2_client(mock, region) as ec2:
        await ec2.create_tags(Resources=[old[iids[5]]], Tags=[{"Key": "Keep", "Value": "y"}])
    special[old[iids[5]]] = "keep_tagged"
    # a snapshot shared with a hand-made AMI: the image goes, that snapshot stays
    shared_image = by_instance[iids[6]][1]
    shared_snap = shared_image["snapshot_ids"][0]
    hand_made = mock.register_image(account, region, [shared_snap], "hand-made")
    # one snapshot deletion fails inside DeregisterImage: retried with DeleteSnapshot
    failing_image = by_instance[iids[7]][2]
    mock.fail_snapshot_deletion(account, region, failing_image["snapshot_ids"][0])
    # a terminated (decommissioned) instance: its old images are in scope
    mock.set_instance_state(account, region, iids[8], "terminated")
    # a referenced *terminated* instance does not keep an image
    mock.launch_from_image(account, region, by_instance[iids[9]][1]["image_id"], "terminated")
    mock.set_last_launched(
        account, region, by_instance[iids[9]][1]["image_id"], time.time() - 30 * 86400
    )

    expected_deleted: set[str] = set()
    expected_kept: dict[str, str] = {}
    for r in REGIONS:
        for images in groups(mock, account, r).values():
            expected_kept[images[0]["image_id"]] = "keep_last"
            for image in images[1:]:
                if image["image_id"] in special:
                    expected_kept[image["image_id"]] = special[image["image_id"]]
                else:
                    expected_deleted.add(image["image_id"])

    journal = await Journal.open(tmp_path / "journal.sqlite3")
    async with journal:
        dry = await prune_fleet(
            parse_config(fleet_config("blue")), endpoint_url=mock.endpoint_url, dry_run=True
        )
        assert mock.count(action="DeregisterImage") == 0
        assert {i.image_id for i in dry.items if i.outcome == "planned"} == expected_deleted
        report = await prune_fleet(
            parse_config(fleet_config("blue")), endpoint_url=mock.endpoint_url, journal=journal
        )
        rows = await prune_items(journal, report.prune_id)

    outcomes = {i.image_id: i for i in report.items}
    deleted = {i for i, item in outcomes.items() if item.outcome == "deleted"}
    assert deleted == expected_deleted, [outcomes[i] for i in deleted ^ expected_deleted][:3]
    assert report.count("failed") == 0, [i for i in report.items if i.outcome == "failed"]
    for image_id, why in expected_kept.items():
        item = outcomes[image_id]
        assert item.outcome == "kept" and why in item.reason, (image_id, why, item)
    # every deleted image is gone; nothing else changed, in either region
    for r in REGIONS:
        after = {i["image_id"]: i for i in mock.images(account, r)}
        for image in before[r]:
            gone = after[image["image_id"]]["deregistered"]
            assert gone == (image["image_id"] in expected_deleted), image
    assert not mock.images(account, region)[-1]["deregistered"]  # the hand-made AMI
    assert any(i["image_id"] == hand_made for i in mock.images(account, region))
    # no orphaned snapshot: each deleted image's snapshots are gone, except the shared one
    for r in REGIONS:
        left = mock.snapshot_ids(account, r)
        for image in before[r]:
            for snap in image["snapshot_ids"]:
                if image["image_id"] in expected_deleted and snap != shared_snap:
                    assert snap not in left, (image["image_id"], snap)
                elif image["image_id"] not in expected_deleted:
                    assert snap in left
        assert left <= snapshots_before[r]
    assert outcomes[shared_image["image_id"]].snapshots[shared_snap] == "kept-shared"
    assert shared_snap in mock.snapshot_ids(account, region)
    assert mock.count(action="DeleteSnapshot", outcome="ok") >= 1
    # never a red image, never a pending one
    red = [i for i in mock.images(account, region) if i["tags"].get(FLEET_TAG) == "red"]
    assert red and not any(i["deregistered"] for i in red)
    # journaled: each item's final state
    states = {row[2]: row[3] for row in rows}
    assert {i for i, s in states.items() if s == "deleted"} == expected_deleted
    # a second prune finds nothing more to delete
    again = await prune_fleet(
        parse_config(fleet_config("blue")), endpoint_url=mock.endpoint_url, dry_run=True
    )
    assert again.count("planned") == 0


async def test_prune_one_run_ignores_keep_last_but_not_safety(fleet: Any, tmp_path: Path) -> None:
    mock = fleet
    account = mock.config.accounts[0]
    region = REGIONS[1]
    by_instance = groups(mock, account, region)
    iids = sorted(by_instance)
    newest_run = by_instance[iids[0]][0]["tags"]["fleetimage:run-id"]
    protected = by_instance[iids[1]][0]["image_id"]
    mock.protect_image(account, region, protected)
    journal = tmp_path / "journal.sqlite3"  # the public API takes a path too
    report = await fleetimage.prune_fleet(
        parse_config(fleet_config("blue")),
        endpoint_url=mock.endpoint_url,
        run_id=newest_run,
        journal=journal,
    )
    with sqlite3.connect(journal) as conn:
        assert conn.execute("SELECT run_id, status FROM prune_runs").fetchall() == [
            (newest_run, "finished")
        ]
    run_images = {
        i["image_id"]
        for r in REGIONS
        for i in mock.images(account, r)
        if i["tags"].get("fleetimage:run-id") == newest_run
    }
    outcomes = {i.image_id: i for i in report.items}
    assert set(outcomes) == run_images
    assert outcomes[protected].outcome == "kept"
    assert {i for i, o in outcomes.items() if o.outcome == "deleted"} == run_images - {protected}


async def test_prune_lanes_pace_with_the_configured_limiter(
    mock_ec2: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prune's buckets take the ``limiter`` settings imaging's do, time-scaled: AWS's
    per-second refill steps (a bucket that ran ahead of them would be throttled), the
    coalescing window."""
    import contextlib

    from fleetimage.aws.clients import new_session
    from fleetimage.engine.prune_lanes import open_prune_lanes

    mock = await mock_ec2(MockConfig(regions=REGIONS[:1], instances_per_region=1))
    for key, value in mock.credentials(mock.config.accounts[0]).items():
        monkeypatch.setenv(key.upper(), value)
    data = fleet_config("blue")
    data.update(time_scale=4.0, limits={}, limiter={"refill_period_s": 2.0, "min_coalesce_s": 0.8})
    data["targets"][0]["regions"] = list(REGIONS[:1])
    async with contextlib.AsyncExitStack() as stack:
        lanes = await open_prune_lanes(parse_config(data), new_session(), mock.endpoint_url, stack)
        (lp,) = lanes.values()
        assert lp.lane is not None
        bucket = lp.lane.limiter.bucket("DeregisterImage")  # AWS's 100 burst, 5/s
        assert bucket.ceiling_per_s == 5 * 4.0
        assert bucket.refill_period_s == 2.0 / 4.0
