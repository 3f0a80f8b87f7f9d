"""Cross-region copies end to end: the engine, the journal and the mock through aiobotocore."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from fleetimage import Outcome, image_fleet, parse_config, resume_fleet
from fleetimage.core.copies import CopyState, client_token
from fleetimage.core.tags import (
    FLEET_TAG,
    INSTANCE_TAG,
    RUN_TAG,
    SOURCE_IMAGE_TAG,
    SOURCE_REGION_TAG,
)
from fleetimage.journal import Journal
from fleetimage.mock import FaultConfig, MockConfig
from fleetimage.mock.copy_config import CopyConfig

SOURCES = ("us-east-1", "us-west-2")
DESTINATIONS = ("us-west-2", "eu-west-1")  # us-west-2 is both: its images go to eu-west-1 only


def copy_config(scale: float, **overrides: Any) -> dict[str, Any]:
    """A config for a mock at ``scale``: every time in AWS seconds, divided by time_scale."""
    cfg: dict[str, Any] = {
        "name": "dr-fleet",
        "targets": [{"regions": list(SOURCES), "all_instances": True}],
        "image": {"name_template": "{tag:Name}-{instance_id}-{run_id}"},
        "copy": {
            "regions": list(DESTINATIONS),
            "name_template": "dr-{source_region}-{instance_id}-{run_id}",
            "tags": {"Purpose": "dr"},
        },
        "wait": {"poll_interval_s": 2, "timeout_s": 6000, "not_found_grace_s": 60},
        "retry": {
            "base_delay_s": 0.5,
            "max_delay_s": 10,
            "quota_delay_s": 5,
            "max_outage_s": 3000,
            "breaker_cooldown_s": 2.5,
            "breaker_max_cooldown_s": 15,
        },
        "max_errors": "100%",
        "time_scale": scale,
    }
    cfg.update(overrides)
    return cfg


def copy_mock(instances: int, scale: float, faults: FaultConfig | None = None) -> MockConfig:
    return MockConfig(
        regions=(*SOURCES, "eu-west-1"),
        instances_per_region=instances,
        seed=11,
        time_scale=scale,
        pending_s=20.0,
        pending_sigma=0.3,
        visibility_lag_s=1.0,
        state_mix={"running": 0.9, "terminated": 0.1},
        faults=faults or FaultConfig(),
        copies=CopyConfig(pending_s=60.0, pending_sigma=0.5, max_concurrent=100),
    )


FAULTS = FaultConfig(
    throttle=0.05, internal_error=0.03, unavailable=0.02, reset=0.02, lost_answer=0.1
)


async def check_every_copy_once(
    mock: Any, cfg: dict[str, Any], journal_path: Path
) -> tuple[Any, list[tuple[str, str, str, str]]]:
    """Run, then check: every copy available exactly once, its tags right, 0 duplicates."""
    report = await image_fleet(
        parse_config(cfg), endpoint_url=mock.endpoint_url, journal=journal_path
    )
    account = mock.config.accounts[0]
    sources = {
        (r.region, r.image_id): r.instance_id
        for r in report.results
        if r.outcome is Outcome.AVAILABLE and r.image_id
    }
    expected = sorted(
        (region, image_id, instance_id, dest)
        for (region, image_id), instance_id in sources.items()
        for dest in DESTINATIONS
        if dest != region
    )
    assert len(report.results) > 0 and len(sources) == sum(
        1 for r in report.results if r.outcome is not Outcome.SKIPPED
    )
    outcomes = Counter(c.outcome for c in report.copies)
    assert outcomes == {Outcome.AVAILABLE: len(expected)}, report.copy_failures()[:3]
    got = sorted(
        (c.source_region, c.source_image_id, c.instance_id, c.destination) for c in report.copies
    )
    assert got == expected
    assert mock.copy_duplicates() == {"by_token": {}, "by_name": {}, "by_source": {}}
    made = mock.fleet.copies.by_source
    assert all(made[(account, d, r, i)] == 1 for r, i, _, d in expected)
    assert sum(made.values()) == len(expected)
    by_id = {c.image_id: c for c in report.copies}
    for dest in DESTINATIONS:
        for image in mock.images(account, dest):
            if not image["source_image_id"]:
                continue
            copy = by_id[image["image_id"]]
            assert image["state"] == "available"
            assert image["tags"][RUN_TAG] == report.run_id
            assert image["tags"][INSTANCE_TAG] == copy.instance_id
            assert image["tags"][FLEET_TAG] == "dr-fleet"
            assert image["tags"][SOURCE_IMAGE_TAG] == image["source_image_id"]
            assert image["tags"][SOURCE_REGION_TAG] == copy.source_region == image["source_region"]
            assert image["tags"]["Purpose"] == "dr"
            assert image["name"] == f"dr-{copy.source_region}-{copy.instance_id}-{report.run_id}"
    async with await Journal.open(journal_path, read_only=True) as journal:
        rows = await journal.copies(report.run_id)
        assert {r.state for r in rows} == {CopyState.AVAILABLE} and len(rows) == len(expected)
        assert (await journal.run(report.run_id)).status == "finished"
    return report, expected


async def test_copies_with_faults_every_copy_once(fleet_mock: Any, tmp_path: Path) -> None:
    # Enough copies (~90 CopyImage calls) that a lost answer among them is all but certain
    # whatever the order of calls drawing from the mock's one seeded fault stream.
    mock = await fleet_mock(copy_mock(24, 200.0, FAULTS))
    await check_every_copy_once(mock, copy_config(200.0), tmp_path / "journal.sqlite3")
    # The dangerous case (applied, answer lost) happened to CopyImage and was resolved by
    # the token.
    assert mock.count(action="CopyImage", outcome="lost_answer") > 0


@pytest.mark.slow
async def test_500_instances_2_sources_2_destinations_with_faults(
    fleet_mock: Any, tmp_path: Path
) -> None:
    mock = await fleet_mock(copy_mock(250, 200.0, FAULTS))
    _, expected = await check_every_copy_once(
        mock, copy_config(200.0), tmp_path / "journal.sqlite3"
    )
    assert len(expected) > 600
    lost = mock.count(action="CopyImage", outcome="lost_answer")
    assert lost > 0
    print(f"500 instances: {len(expected)} copies, each once; {lost} CopyImage answers lost")


async def test_resource_limit_pauses_never_fails(fleet_mock: Any, tmp_path: Path) -> None:
    """AWS's cap lower than ours: ResourceLimitExceeded pauses the destination until one of
    its copies settles; every copy still ends available."""
    cfg = copy_mock(6, 200.0)
    cfg = MockConfig(**{**_fields(cfg), "copies": CopyConfig(pending_s=40.0, max_concurrent=3)})
    mock = await fleet_mock(cfg)
    settings = copy_config(200.0)
    settings["copy"] = {"regions": ["eu-west-1"], "max_concurrent_per_region": 50}
    report = await image_fleet(parse_config(settings), endpoint_url=mock.endpoint_url)
    assert report.copies and all(c.outcome is Outcome.AVAILABLE for c in report.copies)
    assert mock.count(action="CopyImage", outcome="error") > 0  # the limit was hit
    assert not any(mock.copy_duplicates().values())


def _fields(cfg: MockConfig) -> dict[str, Any]:
    return {name: getattr(cfg, name) for name in cfg.__dataclass_fields__}


async def test_idempotent_parameter_mismatch_is_reported_as_a_bug_not_retried(
    fleet_mock: Any, ec2_client: Any, tmp_path: Path
) -> None:
    """Another request already used a copy's token (here: planted with another name): EC2
    answers IdempotentParameterMismatch, which fails that copy once, saying it is a bug."""
    mock = await fleet_mock(copy_mock(3, 200.0))
    journal = tmp_path / "journal.sqlite3"
    settings = copy_config(200.0, targets=[{"regions": ["us-east-1"], "all_instances": True}])
    settings["copy"] = {"regions": ["eu-west-1"]}
    cfg = parse_config(settings)
    first = await image_fleet(cfg, endpoint_url=mock.endpoint_url, journal=journal, wait=False)
    account = mock.config.accounts[0]
    created = [r for r in first.results if r.image_id]
    assert created and not first.copies
    async with ec2_client(mock, "eu-west-1") as ec2:
        for r in created:
            assert r.image_id is not None
            for _ in range(1500):  # the source must be available to be copied
                if mock.image_state(account, "us-east-1", r.image_id) != "pending":
                    break
                await anyio.sleep(0.02)
            await ec2.copy_image(
                SourceRegion="us-east-1",
                SourceImageId=r.image_id,
                Name=f"planted-{r.instance_id}",
                ClientToken=client_token(first.run_id, r.instance_id, "eu-west-1", r.image_id),
            )
    report = await resume_fleet(first.run_id, journal=journal, endpoint_url=mock.endpoint_url)
    assert len(report.copies) == len(created)
    for copy in report.copies:
        assert copy.outcome is Outcome.FAILED
        assert copy.error_code == "IdempotentParameterMismatch"
        assert copy.error_message is not None and "fleetimage bug" in copy.error_message
    # One refused CopyImage per copy: never retried.
    assert mock.count(action="CopyImage", outcome="error") == len(created)


async def test_limit_with_no_copy_settling_stops_the_destination(fleet_mock: Any) -> None:
    """ResourceLimitExceeded, and none of our copies settles within retry.max_outage_s: the
    destination stops (no new copies there), with one line naming both possible causes."""
    cfg = copy_mock(4, 200.0)
    copies = CopyConfig(pending_s=1_000_000.0, max_concurrent=1)  # one slot, never freed
    mock = await fleet_mock(MockConfig(**{**_fields(cfg), "copies": copies}))
    settings = copy_config(200.0, targets=[{"regions": ["us-east-1"], "all_instances": True}])
    settings["copy"] = {"regions": ["eu-west-1"]}
    settings["retry"] = {**settings["retry"], "max_outage_s": 100}  # 0.5 s wall
    settings["wait"] = {**settings["wait"], "timeout_s": 400}  # the one copy in flight
    report = await image_fleet(parse_config(settings), endpoint_url=mock.endpoint_url)
    outcomes = Counter(c.outcome for c in report.copies)
    assert outcomes[Outcome.TIMED_OUT] == 1  # the copy in flight, still pending
    stopped = [c for c in report.copies if c.error_code == "CopyLimitExceeded"]
    # The one refused with ResourceLimitExceeded (nothing applied) and those queued behind it.
    assert len(stopped) == len(report.copies) - 1 >= 2
    assert all(c.outcome is Outcome.NOT_STARTED for c in stopped)
    message = stopped[0].error_message or ""
    assert "AMI quota" in message and "concurrent-copy limit" in message and "\n" not in message
    assert len(mock.images(mock.config.accounts[0], "eu-west-1")) == 1
    assert not report.ok


async def test_copies_in_two_accounts_sign_with_each_accounts_one_credentials(
    fleet_mock: Any,
) -> None:
    """An assumed-role account's copies go out with the credentials its imaging lanes use:
    one AssumeRole for the run, and each copy lands in its own account."""
    own, other = "111111111111", "222222222222"
    role = f"arn:aws:iam::{other}:role/fleetimage"
    cfg = copy_mock(4, 200.0)
    mock = await fleet_mock(MockConfig(**{**_fields(cfg), "accounts": (own, other)}))
    settings = copy_config(
        200.0,
        targets=[
            {"regions": ["us-east-1"], "all_instances": True},
            {"regions": ["us-east-1"], "all_instances": True, "accounts": [{"role_arn": role}]},
        ],
    )
    settings["copy"] = {"regions": ["eu-west-1"]}
    report = await image_fleet(parse_config(settings), endpoint_url=mock.endpoint_url)
    assert report.copies and all(c.outcome is Outcome.AVAILABLE for c in report.copies)
    for account in (own, other):
        copied = {i["source_image_id"] for i in mock.images(account, "eu-west-1")}
        sources = {r.image_id for r in report.results if r.account == account and r.image_id}
        assert copied == sources and sources
    assert mock.assume_role_count(role) == 1


async def test_a_restart_never_takes_a_copy_in_a_source_region_for_an_image_of_it(
    fleet_mock: Any,
) -> None:
    """us-west-2 is a source lane and a destination: after a run it holds the run's copies of
    us-east-1's images, tagged with the run id and their instance ids. The same run started
    again without its journal adopts each lane's own images only: every target once, none
    made again, no copy taken for an image of the lane (and so copied on as one)."""
    mock = await fleet_mock(copy_mock(6, 200.0))
    config = parse_config(copy_config(200.0))
    first = await image_fleet(config, endpoint_url=mock.endpoint_url, run_id="twice", adopt=True)
    assert first.ok and first.copies
    created = mock.count(action="CreateImage", outcome="ok")

    again = await image_fleet(config, endpoint_url=mock.endpoint_url, run_id="twice", adopt=True)
    assert again.ok

    def targets(report: Any) -> list[tuple[str, str, str]]:
        return sorted((r.account, r.region, r.instance_id) for r in report.results)

    assert targets(again) == targets(first)

    def copies(report: Any) -> list[tuple[str, str, str | None]]:
        return sorted((c.instance_id, c.destination, c.image_id) for c in report.copies)

    assert copies(again) == copies(first)  # each copy found again, none made twice
    assert mock.count(action="CreateImage", outcome="ok") == created
    assert not any(mock.copy_duplicates().values())
