"""Planning helpers that need no network: tags, specs, name collisions, the time estimate."""

from __future__ import annotations

from datetime import UTC, datetime

from fleetimage.config import FleetConfig, parse_config
from fleetimage.core.models import LaneKey, Target
from fleetimage.core.tags import INSTANCE_TAG, RUN_TAG
from fleetimage.engine.plan import LanePlan, Plan
from fleetimage.engine.specs import build_spec, build_tags

STARTED = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)


def config(**image: object) -> FleetConfig:
    return parse_config(
        {
            "targets": [{"regions": ["us-east-1"], "all_instances": True}],
            "image": {"name_template": "{tag:Name}-{instance_id}-{run_id}", **image},
        }
    )


def target(instance_id: str, **tags: str) -> Target:
    return Target("111111111111", "us-east-1", instance_id, "running", tags)


def test_forged_instance_tags_never_reach_the_image() -> None:
    cfg = config(copy_instance_tags=True, tags={"Purpose": "x"})
    forged = target(
        "i-0123456789abcdef0",
        **{
            "fleetimage:run-id": "someone-else",
            "FleetImage:Instance-Id": "i-x",
            "aws:foo": "1",
            "Team": "web",
        },
    )
    tags = build_tags(cfg, forged, "run-1")
    assert tags[RUN_TAG] == "run-1"
    assert tags[INSTANCE_TAG] == "i-0123456789abcdef0"
    assert tags["Team"] == "web" and tags["Purpose"] == "x"
    assert not [k for k in tags if k.lower().startswith("aws:")]
    assert "FleetImage:Instance-Id" not in tags


def test_tags_are_capped_at_50_keeping_ours() -> None:
    cfg = config(copy_instance_tags=True, tags={"Purpose": "x"})
    many = target("i-0123456789abcdef0", **{f"k{i}": "v" for i in range(80)})
    tags = build_tags(cfg, many, "run-1")
    assert len(tags) == 50
    assert tags[RUN_TAG] == "run-1" and tags["Purpose"] == "x"


def test_colliding_names_keep_the_first_and_report_the_rest() -> None:
    cfg = config()
    a = build_spec(cfg, target("i-0123456789abcdef0"), "run-1", STARTED)
    b = build_spec(cfg, target("i-0123456789abcdef1"), "run-1", STARTED, name=a.name)
    lp = LanePlan(LaneKey("111111111111", "us-east-1"), specs=[a, b])
    lp.keep_unique_names()
    assert lp.specs == [a]
    assert lp.collisions == [(b, "i-0123456789abcdef0")]


def test_minimum_seconds_follows_the_slowest_lane() -> None:
    cfg = config()
    specs = [build_spec(cfg, target(f"i-{n:017x}"), "r", STARTED) for n in range(150)]
    key = LaneKey("111111111111", "us-east-1")
    plan = Plan("r", STARTED, {key: LanePlan(key, specs=specs)})
    assert plan.minimum_seconds(cfg) == (150 - 50) / 5


def test_minimum_seconds_is_zero_while_every_lane_is_within_its_burst() -> None:
    cfg = config()
    specs = [build_spec(cfg, target(f"i-{n:017x}"), "r", STARTED) for n in range(50)]
    one, other = LaneKey("111111111111", "us-east-1"), LaneKey("111111111111", "us-west-2")
    plan = Plan("r", STARTED, {one: LanePlan(one, specs=specs), other: LanePlan(other)})
    assert plan.minimum_seconds(cfg) == 0.0


def test_minimum_seconds_uses_each_regions_own_create_image_rate() -> None:
    cfg = parse_config(
        {
            "targets": [{"regions": ["us-east-1", "us-west-2"], "all_instances": True}],
            "image": {"name_template": "{instance_id}-{run_id}"},
            "limits": {"regions": {"us-west-2": {"CreateImage": {"rate_per_s": 0.5}}}},
        }
    )
    specs = [build_spec(cfg, target(f"i-{n:017x}"), "r", STARTED) for n in range(51)]
    west = LaneKey("111111111111", "us-west-2")
    plan = Plan("r", STARTED, {west: LanePlan(west, specs=specs)})
    assert plan.minimum_seconds(cfg) == (51 - 50) / 0.5


def test_plan_data_lists_what_each_ou_resolved_to() -> None:
    from fleetimage.aws.organizations import OrgAccount
    from fleetimage.cli.views import plan_data
    from fleetimage.engine.organizations import UnitAccounts

    unit = UnitAccounts(
        "ou-ab12-cd345678",
        accounts=[OrgAccount("100000000001", "aws", "ACTIVE")],
        inactive=[OrgAccount("100000000002", "aws", "SUSPENDED")],
        excluded=["100000000003"],
        units=2,
    )
    plan = Plan("RUN", datetime(2026, 11, 29, tzinfo=UTC), {}, [unit])
    assert plan_data(plan, config())["organization_units"] == [
        {
            "organization_unit": "ou-ab12-cd345678",
            "accounts": ["100000000001"],
            "inactive": {"100000000002": "SUSPENDED"},
            "excluded": ["100000000003"],
            "units": 2,
            "error": None,
        }
    ]
