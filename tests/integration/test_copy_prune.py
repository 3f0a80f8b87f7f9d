"""Prune treats copies as images of their own region: retention applies there, by its rules."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fleetimage import image_fleet, parse_config
from fleetimage.core.tags import INSTANCE_TAG, RUN_TAG
from fleetimage.engine.prune import prune_fleet
from fleetimage.mock import MockConfig
from fleetimage.mock.copy_config import CopyConfig

SOURCE, DESTINATION = "us-east-1", "eu-west-1"
SCALE = 200.0


def config() -> dict[str, Any]:
    return {
        "name": "blue",
        "targets": [{"regions": [SOURCE], "all_instances": True}],
        "image": {"name_template": "{instance_id}-{run_id}", "tag_snapshots": False},
        "copy": {"regions": [DESTINATION]},
        "wait": {"poll_interval_s": 2, "timeout_s": 6000, "not_found_grace_s": 60},
        "retry": {"base_delay_s": 0.5, "max_delay_s": 10},
        "max_errors": "100%",
        "retention": {"keep_last": 1, "min_age": 0},
        "time_scale": SCALE,
    }


async def test_prune_keeps_the_newest_copy_per_region(fleet_mock: Any) -> None:
    mock = await fleet_mock(
        MockConfig(
            regions=(SOURCE, DESTINATION),
            instances_per_region=6,
            seed=3,
            time_scale=SCALE,
            pending_s=10.0,
            state_mix={"running": 1.0},
            copies=CopyConfig(pending_s=10.0),
        )
    )
    cfg = parse_config(config())
    runs = [(await image_fleet(cfg, endpoint_url=mock.endpoint_url)).run_id for _ in range(2)]
    account = mock.config.accounts[0]
    copies = [i for i in mock.images(account, DESTINATION) if i["source_image_id"]]
    assert len(copies) == 12

    report = await prune_fleet(cfg, endpoint_url=mock.endpoint_url)
    assert report is not None

    def live(region: str) -> Counter[tuple[str, str]]:
        return Counter(
            (i["tags"][INSTANCE_TAG], i["tags"][RUN_TAG])
            for i in mock.images(account, region)
            if not i["deregistered"]
        )

    # Each region keeps its own newest image per instance: the copy of the newest run stays
    # in the destination as its source stays in the source region.
    for region in (SOURCE, DESTINATION):
        kept = live(region)
        assert len(kept) == 6 and {run for _, run in kept} == {runs[-1]}, (region, kept)
