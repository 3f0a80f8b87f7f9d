"""The engine end to end against two independent EC2 emulations: our mock and moto's server.

moto (``ThreadedMotoServer`` on 127.0.0.1, a free port) is a second opinion written by other
people: if the engine only worked against the mock it was built with, these tests would say so.
Each scenario that both emulations support is parametrized over both. Where moto deviates
from EC2 (see tests/integration/test_conformance_moto.py and DESIGN.md: no
``InvalidAMIName.Duplicate``, images available at once, an HTML HTTP 500 for a ``snapshot``
TagSpecification, DescribeImages ignoring MaxResults) the engine must still be correct:
``tag_snapshots: false`` works, idempotency holds through the by-name lookup alone, and the
snapshot-tag 500 is a clear error naming the option, not a retry storm.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fleetimage import Created, Outcome, Requested, RunReport, image_fleet, parse_config
from fleetimage.core.clock import now
from fleetimage.core.models import Event, JournalState, TargetRecord
from fleetimage.core.naming import is_valid_ami_name, new_run_id
from fleetimage.core.tags import INSTANCE_TAG, RUN_TAG
from fleetimage.engine.run import execute
from fleetimage.mock import MockConfig

ACCOUNT = "123456789012"  # moto's default account, and the mock's default account
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2")


@dataclass
class Emulation:
    """One EC2 emulation: where it listens, and how a test puts instances into it."""

    kind: str  # "mock" or "moto"
    url: str
    client: Any  # conftest's open_client: a real aiobotocore client for the URL
    mock: Any = None
    _amis: dict[str, str] = field(default_factory=dict)

    async def add_instances(
        self, region: str, count: int, tags: dict[str, str], *, state: str = "running"
    ) -> list[str]:
        if self.mock is not None:
            return [
                self.mock.add_instance(ACCOUNT, region, state=state, tags=tags)
                for _ in range(count)
            ]
        async with self.client(self.url, region) as ec2:
            if region not in self._amis:
                found = await ec2.describe_images(Owners=["amazon"], MaxResults=5)
                self._amis[region] = found["Images"][0]["ImageId"]
            answer = await ec2.run_instances(
                ImageId=self._amis[region],
                MinCount=count,
                MaxCount=count,
                TagSpecifications=[
                    {
                        "ResourceType": "instance",
                        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
                    }
                ],
            )
            ids = [i["InstanceId"] for i in answer["Instances"]]
            if state == "stopped":
                await ec2.stop_instances(InstanceIds=ids)
            elif state == "terminated":
                await ec2.terminate_instances(InstanceIds=ids)
            return ids

    async def images_named(self, region: str, name: str) -> list[dict[str, Any]]:
        async with self.client(self.url, region) as ec2:
            answer = await ec2.describe_images(
                Owners=["self"], Filters=[{"Name": "name", "Values": [name]}]
            )
            return [i for i in answer["Images"] if i.get("State") != "deregistered"]

    async def own_images(self, region: str, run_id: str) -> list[dict[str, Any]]:
        async with self.client(self.url, region) as ec2:
            answer = await ec2.describe_images(
                Owners=["self"], Filters=[{"Name": f"tag:{RUN_TAG}", "Values": [run_id]}]
            )
            return list(answer["Images"])


@pytest.fixture(params=["mock", "moto"])
async def emulation(
    request: pytest.FixtureRequest, mock_ec2: Any, ec2_client: Any
) -> AsyncIterator[Emulation]:
    if request.param == "mock":
        mock = await mock_ec2(MockConfig(regions=REGIONS, instances_per_region=0, pending_s=0.1))
        yield Emulation("mock", mock.endpoint_url, ec2_client, mock=mock)
    else:
        yield Emulation("moto", request.getfixturevalue("moto_url"), ec2_client)


def config(team: str, *, regions: tuple[str, ...] = REGIONS, **image: Any) -> dict[str, Any]:
    return {
        "targets": [{"regions": list(regions), "filters": {"tag:Team": team}}],
        "image": {
            "name_template": "{tag:Name}-{instance_id}-{run_id}",
            "tags": {"Purpose": "hardening"},
            **image,
        },
        "wait": {"poll_interval_s": 0.1, "timeout_s": 60, "not_found_grace_s": 5},
        "retry": {
            "base_delay_s": 0.01,
            "max_delay_s": 0.1,
            "quota_delay_s": 0.1,
            "max_outage_s": 30,
            "breaker_cooldown_s": 0.05,
            "breaker_max_cooldown_s": 0.3,
        },
        "max_errors": "100%",
    }


def unique_team() -> str:
    # moto's server lives for the module: each test selects only its own instances.
    return f"team-{uuid.uuid4().hex[:10]}"


async def test_tagged_fleet_in_several_regions_is_imaged_waited_and_reported(
    emulation: Emulation, tmp_path: Path
) -> None:
    team = unique_team()
    wanted: dict[tuple[str, str], str] = {}
    for n, region in enumerate(REGIONS):
        for iid in await emulation.add_instances(region, 3, {"Team": team, "Name": f"web-{n}"}):
            wanted[(region, iid)] = "running"
        for iid in await emulation.add_instances(
            region, 1, {"Team": team, "Name": f"db-{n}"}, state="stopped"
        ):
            wanted[(region, iid)] = "stopped"
        gone = await emulation.add_instances(
            region, 1, {"Team": team, "Name": "gone"}, state="terminated"
        )
        await emulation.add_instances(region, 2, {"Team": f"other-{team}", "Name": "x"})

    events: list[Event] = []
    # moto answers HTTP 500 to a snapshot TagSpecification (see the last test): off there.
    cfg = config(team, tag_snapshots=emulation.kind == "mock")
    report = await image_fleet(
        parse_config(cfg), endpoint_url=emulation.url, on_event=events.append
    )

    by_key = {(r.region, r.instance_id): r for r in report.results}
    available = {k for k, r in by_key.items() if r.outcome is Outcome.AVAILABLE}
    assert available == set(wanted), report.failures()
    skipped = [r for r in report.results if r.outcome is Outcome.SKIPPED]
    assert len(skipped) == len(REGIONS) and gone[0] in {r.instance_id for r in skipped}
    assert report.counts["total"] == len(wanted) + len(REGIONS)  # other teams not selected
    assert report.ok, report.failures()

    for (region, iid), result in by_key.items():
        if result.outcome is not Outcome.AVAILABLE:
            continue
        assert result.account == ACCOUNT and result.image_id and result.image_name
        assert is_valid_ami_name(result.image_name)
        assert iid in result.image_name and report.run_id in result.image_name
        images = await emulation.images_named(region, result.image_name)
        assert [i["ImageId"] for i in images] == [result.image_id]  # exactly one, ours
        tags = {t["Key"]: t["Value"] for t in images[0].get("Tags", [])}
        assert tags[RUN_TAG] == report.run_id and tags[INSTANCE_TAG] == iid
        assert tags["Purpose"] == "hardening"
    for region in REGIONS:  # nothing beyond one image per target
        mine = await emulation.own_images(region, report.run_id)
        assert len(mine) == sum(1 for r, _ in wanted if r == region)
    assert sum(isinstance(e, Created) for e in events) == len(wanted)

    report.write(tmp_path / "report.json")
    report.write(tmp_path / "report.csv")
    back = RunReport.from_dict(json.loads((tmp_path / "report.json").read_text()))
    assert back.results == report.results
    assert (tmp_path / "report.csv").read_text().count("\n") == len(report.results) + 1


async def test_tag_snapshots_false_works(emulation: Emulation) -> None:
    team = unique_team()
    ids = await emulation.add_instances("eu-west-1", 4, {"Team": team, "Name": "api"})
    report = await image_fleet(
        parse_config(config(team, regions=("eu-west-1",), tag_snapshots=False)),
        endpoint_url=emulation.url,
    )
    assert report.counts["available"] == 4, report.failures()
    assert {r.instance_id for r in report.results} == set(ids)
    if emulation.mock is not None:  # the mock can show that snapshots went untagged
        for image in emulation.mock.images(ACCOUNT, "eu-west-1"):
            snaps = emulation.mock.fleet.state(ACCOUNT, "eu-west-1").snapshots
            assert all(not snaps[s].tags for s in image["snapshot_ids"])


async def test_resume_after_a_crash_adopts_by_name_and_never_duplicates(
    emulation: Emulation,
) -> None:
    """A crash after CreateImage was sent (journal says ``requesting``): resume must look the
    name up and adopt. On moto this is the *only* guard, since moto accepts duplicate names."""
    team = unique_team()
    ids = await emulation.add_instances("us-east-1", 3, {"Team": team, "Name": "w"})
    started_at = now()
    run_id = new_run_id(started_at)
    cfg = parse_config(config(team, regions=("us-east-1",), tag_snapshots=False))
    first = await image_fleet(
        cfg, endpoint_url=emulation.url, run_id=run_id, started_at=started_at, wait=False
    )
    assert first.counts["pending"] + first.counts["available"] == 3, first.failures()
    crashed = [
        TargetRecord(
            r.account, r.region, r.instance_id, JournalState.REQUESTING, image_name=r.image_name
        )
        for r in first.results
    ]
    events: list[Event] = []
    second = await execute(
        cfg,
        endpoint_url=emulation.url,
        run_id=run_id,
        started_at=started_at,
        resume=crashed,
        on_event=events.append,
    )
    assert second.counts["available"] == 3, second.failures()
    assert not [e for e in events if isinstance(e, Requested)]  # nothing sent again
    created = [e for e in events if isinstance(e, Created)]
    assert len(created) == 3 and all(e.adopted for e in created)
    assert {r.image_id for r in second.results} == {r.image_id for r in first.results}
    for result in second.results:
        assert result.image_name is not None
        assert len(await emulation.images_named("us-east-1", result.image_name)) == 1
    assert {r.instance_id for r in second.results} == set(ids)


async def test_dry_run_creates_nothing(emulation: Emulation) -> None:
    team = unique_team()
    await emulation.add_instances("ap-southeast-2", 2, {"Team": team, "Name": "dry"})
    report = await image_fleet(
        parse_config(config(team, regions=("ap-southeast-2",))),
        endpoint_url=emulation.url,
        dry_run=True,
    )
    assert report.counts["dry_run"] == 2
    assert all(r.error_code is None for r in report.results), report.results  # would succeed
    assert not report.failures()
    for result in report.results:
        assert result.image_name is not None
        assert not await emulation.images_named("ap-southeast-2", result.image_name)


async def test_snapshot_tag_500_is_a_clear_error_naming_the_option(
    moto_url: str, ec2_client: Any
) -> None:
    """moto answers an HTML 500 to a ``snapshot`` TagSpecification. A 500 is the endpoint
    failing, not an answer about the request: the lane's breaker pauses the lane and probes,
    and after max_outage_s the lane stops with its targets not_started (resumable), the
    message naming the option to turn off (``tag_snapshots``), classified as an AWS error (not
    the engine's internal-bug catch-all), without storming the server."""
    emulation = Emulation("moto", moto_url, ec2_client)
    team = unique_team()
    await emulation.add_instances("us-east-1", 5, {"Team": team, "Name": "snap"})
    events: list[Event] = []
    cfg = config(team, regions=("us-east-1",), tag_snapshots=True)
    cfg["retry"]["max_outage_s"] = 1.5
    report = await image_fleet(parse_config(cfg), endpoint_url=moto_url, on_event=events.append)

    assert report.counts["not_started"] + report.counts["unknown"] == 5
    assert report.counts["failed"] == 0
    sends = sum(isinstance(e, Requested) for e in events)  # one per CreateImage sent
    assert sends <= 5 + 15, sends  # the first wave, then one probe per cool-down: no storm
    assert any("tag_snapshots" in (r.error_message or "") for r in report.results)
    for result in report.results:
        assert result.error_code == "LaneOutage"  # an AWS answer, not an engine bug
        message = result.error_message or ""
        assert "<!doctype" not in message.lower() and "\n" not in message
    assert not await emulation.own_images("us-east-1", report.run_id)  # nothing half-made
