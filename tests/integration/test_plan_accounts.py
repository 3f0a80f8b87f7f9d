"""Planning across accounts on the mock, without imaging: the caller's own account, an
account reached by AssumeRole, the accounts of an organizational unit, a role that is
denied and an OU that cannot be listed — each its own lanes, each with what it resolved to."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fleetimage import parse_config
from fleetimage.core.models import LaneKey
from fleetimage.engine.plan import plan_fleet
from fleetimage.mock import MockConfig, OrgAccount, OrgTree

STARTED = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
RUN_ID = "run-plan-accounts"
EAST, WEST = "us-east-1", "us-west-2"
MANAGEMENT = "999999999999"  # the caller: its own credentials, and it may list the OUs
ROLE_ACCOUNT, DENIED_ACCOUNT = "210000000001", "210000000002"
UNIT, MISSING_UNIT = "ou-mock-planunit", "ou-mock-notthere"
UNIT_ACCOUNTS = ("310000000001", "310000000002")
ROLE = f"arn:aws:iam::{ROLE_ACCOUNT}:role/imager"
DENIED = f"arn:aws:iam::{DENIED_ACCOUNT}:role/imager"


def _role(account: str) -> str:
    return f"arn:aws:iam::{account}:role/unit-imager"


async def test_each_account_and_unit_gets_its_own_lanes_with_what_it_resolved_to(
    fleet_mock: Any,
) -> None:
    mock = await fleet_mock(
        MockConfig(
            regions=(EAST, WEST),
            accounts=(MANAGEMENT, ROLE_ACCOUNT, DENIED_ACCOUNT, *UNIT_ACCOUNTS),
            instances_per_region=1,
            state_mix={"running": 1.0},
            denied_roles=frozenset({DENIED}),
            organization=OrgTree(
                units={UNIT: "r-mock"},
                accounts=tuple(OrgAccount(a, UNIT) for a in UNIT_ACCOUNTS),
                management_account=MANAGEMENT,
            ),
        )
    )
    config = parse_config(
        {
            "targets": [
                {"regions": [EAST], "all_instances": True},  # the caller's own account
                {
                    # STS is asked in the selector's target's first region, not the caller's
                    "regions": [WEST],
                    "all_instances": True,
                    "accounts": [
                        {"role_arn": ROLE},
                        {"role_arn": DENIED},
                        {"organization_unit": UNIT, "role_name": "unit-imager"},
                        {"organization_unit": MISSING_UNIT, "role_name": "unit-imager"},
                    ],
                },
            ],
            "image": {"name_template": "{instance_id}-{run_id}"},
            "retry": {"base_delay_s": 0.01, "max_delay_s": 0.05, "max_outage_s": 5},
        }
    )
    plan = await plan_fleet(
        config, endpoint_url=mock.endpoint_url, run_id=RUN_ID, started_at=STARTED
    )

    reached = {MANAGEMENT: None, ROLE_ACCOUNT: ROLE} | {a: _role(a) for a in UNIT_ACCOUNTS}
    failing = {DENIED_ACCOUNT: "AccessDenied", MISSING_UNIT: "ParentNotFoundException"}
    expected = {LaneKey(MANAGEMENT, EAST)} | {
        LaneKey(a, WEST) for a in (*reached, *failing) if a != MANAGEMENT
    }
    assert set(plan.lanes) == expected
    for key, lp in plan.lanes.items():
        if key.account in failing:
            # the account's (or unit's) error is each of its lanes' error; nothing planned
            assert lp.error is not None and lp.error.code == failing[key.account], key
            assert lp.specs == [], key
            continue
        assert lp.error is None, (key, lp.error)
        (instance,) = mock.instances(key.account, key.region)
        assert [s.target.instance_id for s in lp.specs] == [instance["instance_id"]], key
        # the role the account was reached through goes with each target (the engine
        # re-assumes it on resume)
        assert [s.target.role_arn for s in lp.specs] == [reached[key.account]], key
    missing = plan.lanes[LaneKey(MISSING_UNIT, WEST)].error
    assert missing is not None and missing.action == "ListAccountsForParent"

    # what each OU item resolved to, for the plan's display
    units = {u.unit: u for u in plan.units}
    assert sorted(units) == sorted([UNIT, MISSING_UNIT])
    assert [a.id for a in units[UNIT].accounts] == list(UNIT_ACCOUNTS)
    assert units[UNIT].error is None
    assert units[MISSING_UNIT].error is not None
    assert units[MISSING_UNIT].error.code == "ParentNotFoundException"

    # one AssumeRole per account, in its target's region
    assert mock.count("AssumeRole", "ok", region=WEST) == 3
    assert mock.count("AssumeRole", region=EAST) == 0
    assert mock.count("AssumeRole", "ok") == 3
