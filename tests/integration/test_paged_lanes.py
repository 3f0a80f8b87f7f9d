"""A lane of several discovery pages is imaged from its first page, and what it journaled
before a stop between its pages is finished by resume without a duplicate.

Pages here are 5 instances (the module's page sizes lowered), and DescribeInstances is paced at
2 a second by the client's own limits, so the lane's discovery takes ~2 s while CreateImage is
unlimited: the order of the run's events shows what was imaged before the lane was planned.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from fleetimage import (
    Created,
    Discovered,
    Event,
    LanePlanned,
    Outcome,
    image_fleet,
    parse_config,
    resume_fleet,
)
from fleetimage.engine import discovery
from fleetimage.engine import plan as plan_module
from fleetimage.mock import FaultConfig, MockConfig

ACCOUNT = "123456789012"
REGION = "us-east-1"
INSTANCES = 23  # 5 pages of 5


def _config(*regions: str, name: str = "{instance_id}-{run_id}") -> Any:
    return parse_config(
        {
            "targets": [{"regions": list(regions or [REGION]), "all_instances": True}],
            "image": {"name_template": name},
            "limits": {"DescribeInstances": {"burst": 1, "rate_per_s": 2.0}},
            "wait": {"poll_interval_s": 0.05, "timeout_s": 60},
            "retry": {"base_delay_s": 0.01, "max_delay_s": 0.2},
        }
    )


def _listings(fleet: Any) -> dict[str, int]:
    """DescribeImages listings (a run's images by tag, never by id or name), by region."""
    seen: dict[str, int] = {}
    for (_, region, action, kind, _), n in fleet.request_kinds.items():
        if action == "DescribeImages" and kind == "listing":
            seen[region] = seen.get(region, 0) + n
    return seen


def _small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discovery, "FIRST_PAGE_SIZE", 5)
    monkeypatch.setattr(discovery, "PAGE_SIZE", 5)


@pytest.fixture
async def fleet(fleet_mock: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    _small_pages(monkeypatch)
    return await fleet_mock(
        MockConfig(
            regions=(REGION,),
            instances_per_region=INSTANCES,
            state_mix={"running": 1.0},
            pending_s=0.2,
            throttling=False,
        )
    )


async def test_a_lane_is_imaged_from_its_first_discovery_page(fleet: Any, tmp_path: Path) -> None:
    events: list[Event] = []
    journal = tmp_path / "j.sqlite3"
    report = await image_fleet(
        _config(),
        journal=journal,
        run_id="paged",
        endpoint_url=fleet.endpoint_url,
        on_event=events.append,
    )
    assert [r.outcome for r in report.results] == [Outcome.AVAILABLE] * INSTANCES
    assert fleet.count(action="DescribeInstances") == 5
    assert fleet.count(action="CreateImage", outcome="ok") == INSTANCES
    assert not fleet.duplicates()
    kinds = [type(e) for e in events]
    planned = kinds.index(LanePlanned)
    assert kinds.count(LanePlanned) == 1
    assert events[planned].targets == INSTANCES  # type: ignore[attr-defined]
    # Images were created while the lane's later pages were still being asked for ...
    assert kinds.index(Created) < planned
    # ... and each target was journaled (Discovered) before anything was sent for it.
    first: dict[str, int] = {}
    for i, event in enumerate(events):
        first.setdefault(f"{type(event).__name__}:{event.instance_id}", i)
    for r in report.results:
        assert first[f"Discovered:{r.instance_id}"] < first[f"Created:{r.instance_id}"]
    assert kinds.count(Discovered) == INSTANCES
    with sqlite3.connect(journal) as conn:
        lanes = conn.execute("SELECT account, region, state FROM lanes").fetchall()
    assert lanes == [(ACCOUNT, REGION, "planned")]


async def test_a_run_stopped_between_a_lanes_pages_is_finished_by_resume(
    fleet: Any, tmp_path: Path
) -> None:
    """Stopped after its first image, while later pages are still to come: what was found is
    journaled (and imaged or not started), the lane is not marked planned, and resume
    discovers it again and images every target once."""
    journal = tmp_path / "j.sqlite3"
    stop = anyio.Event()

    def stop_at_first_image(event: Event) -> None:
        if isinstance(event, Created):
            stop.set()

    first = await image_fleet(
        _config(),
        journal=journal,
        run_id="paged",
        endpoint_url=fleet.endpoint_url,
        on_event=stop_at_first_image,
        stop=stop,
    )
    assert first.interrupted
    assert fleet.count(action="DescribeInstances") < 5  # stopped before its last page
    found = {r.instance_id: r.outcome for r in first.results}
    assert 5 <= len(found) < INSTANCES  # the first page's, perhaps a second's
    assert set(found.values()) <= {Outcome.PENDING, Outcome.NOT_STARTED}
    [failure] = first.lane_failures
    assert (failure.account, failure.region) == (ACCOUNT, REGION)
    assert "they are imaged; resume discovers the rest" in failure.error_message
    with sqlite3.connect(journal) as conn:
        assert conn.execute("SELECT state FROM lanes").fetchall() == [("failed",)]
        journaled = {i for (i,) in conn.execute("SELECT instance_id FROM targets")}
    assert journaled == set(found)

    report = await resume_fleet("paged", journal=journal, endpoint_url=fleet.endpoint_url)
    assert len(report.results) == INSTANCES
    assert {r.outcome for r in report.results} == {Outcome.AVAILABLE}
    assert fleet.count(action="CreateImage", outcome="ok") == INSTANCES
    assert not fleet.duplicates()


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_restart_images_a_lane_its_earlier_start_never_reached_from_its_first_page(
    fleet_mock: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, workers: int
) -> None:
    """A run restarted without its journal (``adopt``): its earlier start imaged one lane and
    died before the other. Every lane is looked up first, so the restart names every image
    from the recorded start; the lane with the run's images adopts them (discovered whole,
    nothing created), the lane with none is imaged from its first page. Worker processes are
    handed that look-up: no lane is listed twice. One image each."""
    _small_pages(monkeypatch)
    other = "eu-west-1"
    fleet = await fleet_mock(
        MockConfig(
            regions=(REGION, other),
            instances_per_region=INSTANCES,
            state_mix={"running": 1.0},
            pending_s=0.2,
            throttling=False,
        )
    )

    def config(*regions: str) -> Any:
        return _config(*regions, name="{instance_id}-{run_id}-{time}")

    started = datetime(2026, 11, 30, 1, 2, 3, tzinfo=UTC)
    earlier = await image_fleet(
        config(REGION), run_id="restart", adopt=True, started_at=started,
        endpoint_url=fleet.endpoint_url,
    )  # fmt: skip
    assert earlier.ok and len(earlier.results) == INSTANCES

    events: list[Event] = []
    report = await image_fleet(
        config(REGION, other), journal=tmp_path / "j.sqlite3", run_id="restart", adopt=True,
        endpoint_url=fleet.endpoint_url, on_event=events.append, workers=workers,
    )  # fmt: skip
    assert report.ok and len(report.results) == 2 * INSTANCES
    # Each start's look-up lists each of its lanes once (the earlier start's one lane, the
    # restart's two), and asks STS once; then each process that images asks once.
    assert _listings(fleet) == {REGION: 2, other: 1}
    assert fleet.count(action="GetCallerIdentity") == (1 + 1) + (1 + workers)
    assert report.started_at == started  # the images' recorded start, not the restart's clock
    assert {r.image_name for r in report.results} == {
        f"{r.instance_id}-restart-010203" for r in report.results
    }
    assert fleet.count(action="CreateImage", outcome="ok") == 2 * INSTANCES
    assert not fleet.duplicates()

    def order(region: str) -> list[Event]:
        return [e for e in events if e.region == region]

    done = order(REGION)  # adopted whole: planned before anything, nothing created
    created = [e for e in done if isinstance(e, Created)]
    assert len(created) == INSTANCES and all(e.adopted for e in created)
    assert done.index(next(e for e in done if isinstance(e, LanePlanned))) < done.index(created[0])
    assert not any(e.adopted for e in order(other) if isinstance(e, Created))
    if workers == 1:  # imaged from its first page (the workers' pages are not lowered)
        fresh = [type(e) for e in order(other)]
        assert fresh.index(Created) < fresh.index(LanePlanned)


async def test_every_lane_starts_imaging_before_any_lane_reads_its_later_pages(
    fleet_mock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lanes take the discovery slots page by page: with 2 slots, 4 lanes of 2 pages and
    every DescribeInstances answered after 0.3 s, the last two lanes' first pages come before
    the first two lanes' second pages, so every lane creates an image before any lane is
    wholly discovered (a lane that starts late finishes late). Holding a slot for a lane's
    whole discovery, the last two started only once the first two were planned."""
    _small_pages(monkeypatch)
    monkeypatch.setattr(plan_module, "DISCOVERY_CONCURRENCY", 2)
    regions = ("us-east-1", "us-west-2", "eu-west-1", "eu-central-1")
    fleet = await fleet_mock(
        MockConfig(
            regions=regions,
            instances_per_region=10,
            state_mix={"running": 1.0},
            pending_s=0.2,
            throttling=False,
            faults=FaultConfig(slow=1.0, slow_s=0.3, actions=frozenset({"DescribeInstances"})),
        )
    )
    config = parse_config(
        {
            "targets": [{"regions": list(regions), "all_instances": True}],
            "image": {"name_template": "{instance_id}-{run_id}"},
            "wait": {"poll_interval_s": 0.05, "timeout_s": 60},
        }
    )
    events: list[Event] = []
    report = await image_fleet(
        config, run_id="turns", endpoint_url=fleet.endpoint_url, on_event=events.append
    )
    assert report.ok and len(report.results) == 4 * 10
    assert fleet.count(action="DescribeInstances") == 4 * 2
    first_created = {
        e.region: i for i, e in reversed(list(enumerate(events))) if isinstance(e, Created)
    }
    first_planned = next(i for i, e in enumerate(events) if isinstance(e, LanePlanned))
    assert set(first_created) == set(regions)
    assert max(first_created.values()) < first_planned
