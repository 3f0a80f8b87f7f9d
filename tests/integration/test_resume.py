"""Resume works from the journal: the reproductions of issue 10's findings, as regressions.

Each test runs on the mock through the real aiobotocore client, stops a run part-way (no
wait, or a stop event), changes the fleet, resumes from the journal, and checks the mock's
image counts, the journal and the report.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

from fleetimage import (
    Created,
    Event,
    Outcome,
    UsageError,
    image_fleet,
    parse_config,
    resume_fleet,
)
from fleetimage.journal import Journal
from fleetimage.mock import InstanceEvent, MockConfig

ACCOUNT = "123456789012"
REGION = "us-east-1"
SHA = "0123456789abcdef0123456789abcdef01234567"  # 40 characters: credential-shaped


def config(**overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "targets": [{"regions": [REGION], "filters": {"tag:Team": ["ops"]}}],
        "image": {"name_template": "{tag:Name}-{instance_id}-{run_id}", "tags": {"GitSha": SHA}},
        "wait": {"poll_interval_s": 0.05, "timeout_s": 60, "not_found_grace_s": 5},
        "retry": {"base_delay_s": 0.01, "max_delay_s": 0.2, "quota_delay_s": 0.1},
        "max_errors": "100%",
    }
    cfg.update(overrides)
    return cfg


async def fleet(fleet_mock: Any, n: int = 6, **kwargs: Any) -> tuple[Any, list[str]]:
    mock = await fleet_mock(
        MockConfig(regions=(REGION,), instances_per_region=0, pending_s=0.3, **kwargs)
    )
    ids = [
        mock.add_instance(ACCOUNT, REGION, tags={"Team": "ops", "Name": "web"}) for _ in range(n)
    ]
    return mock, ids


def rows(journal: Path, run_id: str) -> dict[str, tuple[str, str | None]]:
    with sqlite3.connect(journal) as conn:
        found = conn.execute(
            "SELECT instance_id, state, image_id FROM targets WHERE run_id = ?", (run_id,)
        ).fetchall()
    return {iid: (state, image) for iid, state, image in found}


def outcomes(report: Any) -> dict[str, Outcome]:
    return {r.instance_id: r.outcome for r in report.results}


@pytest.mark.parametrize("rediscover", [False, True])
async def test_an_image_whose_instance_was_terminated_is_still_waited_for(
    fleet_mock: Any, tmp_path: Path, rediscover: bool
) -> None:
    mock, ids = await fleet(fleet_mock)
    journal = tmp_path / "j.sqlite3"
    cfg = parse_config(config())
    first = await image_fleet(
        cfg, journal=journal, run_id="r1", endpoint_url=mock.endpoint_url, wait=False
    )
    assert set(outcomes(first).values()) == {Outcome.PENDING}
    mock.set_instance_state(ACCOUNT, REGION, ids[0], "terminated")  # after its image was made

    # (rediscovery finds the instance terminated: still, its image is not "skipped")
    report = await resume_fleet(
        "r1", journal=journal, endpoint_url=mock.endpoint_url, rediscover=rediscover
    )

    assert outcomes(report) == dict.fromkeys(ids, Outcome.AVAILABLE)  # never relabelled skipped
    assert all(state == "available" for state, _ in rows(journal, "r1").values())
    assert mock.count(action="CreateImage", outcome="ok") == len(ids) and not mock.duplicates()


async def test_targets_untagged_between_run_and_resume_are_finished_from_the_journal(
    fleet_mock: Any, tmp_path: Path
) -> None:
    mock, ids = await fleet(fleet_mock)
    journal = tmp_path / "j.sqlite3"
    cfg = parse_config(config())
    await image_fleet(cfg, journal=journal, run_id="r1", endpoint_url=mock.endpoint_url, wait=False)
    for iid in ids[:3]:  # they no longer match the filters
        mock.add_instance_event(
            InstanceEvent(at_s=0, instance_id=iid, region=REGION, remove_tags=frozenset({"Team"}))
        )
    report = await resume_fleet("r1", journal=journal, endpoint_url=mock.endpoint_url)
    assert outcomes(report) == dict.fromkeys(ids, Outcome.AVAILABLE)
    assert {state for state, _ in rows(journal, "r1").values()} == {"available"}
    assert not mock.duplicates()
    # the lane's discovery had completed: resume did not discover it again
    assert mock.count(action="DescribeInstances") == 1


async def test_40_character_tag_and_filter_values_survive_the_journal(
    fleet_mock: Any, tmp_path: Path
) -> None:
    mock, _ = await fleet(fleet_mock, n=0)
    ids = [mock.add_instance(ACCOUNT, REGION, tags={"Commit": SHA, "Name": "w"}) for _ in range(4)]
    journal = tmp_path / "j.sqlite3"
    raw = config(targets=[{"regions": [REGION], "filters": {"tag:Commit": [SHA]}}])
    stop = anyio.Event()
    created: list[str] = []

    def stop_after_two(event: Event) -> None:
        if isinstance(event, Created):
            created.append(event.image_id)
            if len(created) == 2:
                stop.set()

    await image_fleet(
        parse_config(raw),
        journal=journal,
        run_id="r1",
        endpoint_url=mock.endpoint_url,
        on_event=stop_after_two,
        stop=stop,
    )
    report = await resume_fleet("r1", journal=journal, endpoint_url=mock.endpoint_url)
    assert outcomes(report) == dict.fromkeys(ids, Outcome.AVAILABLE)
    for image in mock.images(ACCOUNT, REGION):
        assert image["tags"]["GitSha"] == SHA  # not "<redacted>"
    assert not mock.duplicates()


async def test_rediscover_adds_instances_found_since_and_only_then(
    fleet_mock: Any, tmp_path: Path
) -> None:
    mock, ids = await fleet(fleet_mock, n=3)
    journal = tmp_path / "j.sqlite3"
    cfg = parse_config(config())
    await image_fleet(cfg, journal=journal, run_id="r1", endpoint_url=mock.endpoint_url, wait=False)
    late = [
        mock.add_instance(ACCOUNT, REGION, tags={"Team": "ops", "Name": "new"}) for _ in range(2)
    ]

    plain = await resume_fleet("r1", journal=journal, endpoint_url=mock.endpoint_url, wait=False)
    assert set(outcomes(plain)) == set(ids)  # the plan the journal holds, nothing more

    shown: list[str] = []
    report = await resume_fleet(
        "r1",
        journal=journal,
        endpoint_url=mock.endpoint_url,
        rediscover=True,
        confirm=lambda seen: shown.extend(s.target.instance_id for s in seen.new_targets) or True,
    )
    assert sorted(shown) == sorted(late)
    assert outcomes(report) == dict.fromkeys([*ids, *late], Outcome.AVAILABLE)
    assert mock.count(action="CreateImage", outcome="ok") == 5 and not mock.duplicates()

    with pytest.raises(UsageError, match="finished"):  # nothing is sent for a finished run
        await resume_fleet("r1", journal=journal, endpoint_url=mock.endpoint_url, rediscover=True)


async def test_a_no_wait_run_is_incomplete_until_resume_waits_for_it(
    fleet_mock: Any, tmp_path: Path
) -> None:
    mock, ids = await fleet(fleet_mock, n=3)
    journal = tmp_path / "j.sqlite3"
    cfg = parse_config(config())
    await image_fleet(cfg, journal=journal, run_id="r1", endpoint_url=mock.endpoint_url, wait=False)
    with sqlite3.connect(journal) as conn:
        assert conn.execute("SELECT status FROM runs").fetchone() == ("incomplete",)
    await resume_fleet("r1", journal=journal, endpoint_url=mock.endpoint_url)
    with sqlite3.connect(journal) as conn:
        assert conn.execute("SELECT status FROM runs").fetchone() == ("finished",)
    assert len(ids) == mock.count(action="CreateImage", outcome="ok")


async def test_retry_failed_replaces_each_failed_image_under_a_new_name(
    fleet_mock: Any, tmp_path: Path
) -> None:
    mock, ids = await fleet(fleet_mock, n=20, failure_rate=0.3, seed=5)
    journal = tmp_path / "j.sqlite3"
    cfg = parse_config(config())
    first = await image_fleet(cfg, journal=journal, run_id="r1", endpoint_url=mock.endpoint_url)
    failed = {r.instance_id: r for r in first.results if r.outcome is Outcome.FAILED}
    assert failed and all(r.image_id for r in failed.values())
    first_ok = {r.image_id for r in first.results if r.outcome is Outcome.AVAILABLE}

    # the mock fails images at random: retry until none is left (bounded)
    for _ in range(10):
        report = await resume_fleet(
            "r1", journal=journal, endpoint_url=mock.endpoint_url, retry_failed=True
        )
        if report.ok:
            break
    assert outcomes(report) == dict.fromkeys(ids, Outcome.AVAILABLE)
    by_id = {r.instance_id: r for r in report.results}
    for iid, old in failed.items():
        assert by_id[iid].image_name is not None and old.image_name is not None
        assert by_id[iid].image_name.startswith(old.image_name + "-r")
        assert mock.image_state(ACCOUNT, REGION, old.image_id) == "deregistered"
    # what was available stayed untouched; exactly one live image per instance
    assert first_ok <= {r.image_id for r in report.results}
    live = [i for i in mock.images(ACCOUNT, REGION) if i["state"] == "available"]
    assert sorted(i["source_instance_id"] for i in live) == sorted(ids)

    with pytest.raises(UsageError, match="no failed target"):
        await resume_fleet("r1", journal=journal, endpoint_url=mock.endpoint_url, retry_failed=True)


async def test_a_journal_failure_stops_new_images_and_keeps_the_rest_truthful(
    fleet_mock: Any, tmp_path: Path
) -> None:
    mock, ids = await fleet(fleet_mock, n=30, limits={"CreateImage": (5, 40)})
    journal = await Journal.open(tmp_path / "j.sqlite3")
    created: list[str] = []

    async def break_the_journal(event: Event) -> None:
        if isinstance(event, Created):
            created.append(event.instance_id or "")
            if len(created) == 5:
                await journal.close()  # from now on every write fails, as on a full disk

    report = await image_fleet(
        parse_config(config(limits={"CreateImage": {"burst": 5, "rate_per_s": 40}})),
        journal=journal,
        run_id="r1",
        endpoint_url=mock.endpoint_url,
        on_event=break_the_journal,
    )
    assert report.journal_error is not None and "closed" in report.journal_error
    assert not report.ok
    made = {r.instance_id for r in report.results if r.image_id}
    # every image that was created is in the report and was waited for to the end
    assert made and all(
        r.outcome is Outcome.AVAILABLE for r in report.results if r.instance_id in made
    )
    assert mock.count(action="CreateImage", outcome="ok") == len(made) < len(ids)
    rest = [r for r in report.results if r.instance_id not in made]
    assert rest and {r.error_code for r in rest} <= {"JournalFailed", "NoAnswer"}
    assert not mock.duplicates()
