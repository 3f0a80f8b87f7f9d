"""OU targets end to end: the real aiobotocore Organizations client pages through the mock's
tree, STS AssumeRole on the mock reaches each account, and exactly the ACTIVE, not excluded
accounts under the OU (child OUs included) are imaged."""

from __future__ import annotations

from typing import Any

from fleetimage import Outcome, image_fleet, parse_config
from fleetimage.engine.plan import Plan
from fleetimage.mock import MockConfig, OrgAccount, OrgTree

MANAGEMENT = "999999999999"
TOP, CHILD, NESTED = "ou-mock-topunit1", "ou-mock-childaa1", "ou-mock-nested01"
OUTSIDE = "ou-mock-outside1"  # a sibling of TOP: none of its accounts is imaged
# 12 accounts under TOP's tree: 4 directly, 4 in CHILD, 4 in NESTED (under CHILD).
TREE_ACCOUNTS = [f"1000000000{n:02d}" for n in range(12)]
SUSPENDED, EXCLUDED = TREE_ACCOUNTS[5], TREE_ACCOUNTS[10]
ELSEWHERE = ("200000000001", "200000000002")  # under the root and under OUTSIDE


def org_tree() -> OrgTree:
    parents = [TOP] * 4 + [CHILD] * 4 + [NESTED] * 4
    accounts = [
        OrgAccount(a, p, "SUSPENDED" if a == SUSPENDED else "ACTIVE")
        for a, p in zip(TREE_ACCOUNTS, parents, strict=True)
    ]
    accounts += [OrgAccount(ELSEWHERE[0], "r-mock"), OrgAccount(ELSEWHERE[1], OUTSIDE)]
    return OrgTree(
        units={TOP: "r-mock", CHILD: TOP, NESTED: CHILD, OUTSIDE: "r-mock"},
        accounts=tuple(accounts),
        page_size=2,  # every listing takes several pages
        management_account=MANAGEMENT,
    )


def config(**overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "targets": [
            {
                "regions": ["eu-west-1"],
                "all_instances": True,
                "accounts": [
                    {"organization_unit": TOP, "role_name": "fleet-imager", "exclude": [EXCLUDED]}
                ],
            }
        ],
        "limits": {
            "CreateImage": {"burst": 50, "rate_per_s": 250},
            "DescribeImages": {"burst": 100, "rate_per_s": 1000},
        },
        "wait": {"poll_interval_s": 0.05, "timeout_s": 60, "not_found_grace_s": 5},
        "retry": {"base_delay_s": 0.01, "max_delay_s": 0.2, "max_outage_s": 30},
    }
    cfg.update(overrides)
    return cfg


async def start(fleet_mock: Any) -> Any:
    return await fleet_mock(
        MockConfig(
            regions=("eu-west-1",),
            accounts=(MANAGEMENT, *TREE_ACCOUNTS, *ELSEWHERE),
            instances_per_region=2,
            state_mix={"running": 1.0},
            time_scale=50,
            pending_s=1.0,
            organization=org_tree(),
        )
    )


async def test_an_ou_with_a_nested_ou_images_its_active_accounts(fleet_mock: Any) -> None:
    mock = await start(fleet_mock)
    planned: list[Plan] = []

    def confirm(plan: Plan) -> bool:  # the plan the CLI shows: what the OU resolved to
        planned.append(plan)
        assert mock.count("CreateImage") == 0
        return True

    cfg = parse_config(config())
    report = await image_fleet(cfg, endpoint_url=mock.endpoint_url, confirm=confirm)

    expected = set(TREE_ACCOUNTS) - {SUSPENDED, EXCLUDED}
    assert len(expected) == 10
    [unit] = planned[0].units
    assert unit.unit == TOP and unit.units == 3 and unit.error is None
    assert [a.id for a in unit.accounts] == sorted(expected)
    assert [(a.id, a.state) for a in unit.inactive] == [(SUSPENDED, "SUSPENDED")]
    assert unit.excluded == [EXCLUDED]
    assert {k.account for k in planned[0].lanes} == expected

    imaged = {r.account for r in report.results if r.outcome is Outcome.AVAILABLE}
    assert imaged == expected
    assert len(report.results) == 20 and report.ok, report.failures()
    assert not report.lane_failures
    # each account was reached through its own role (once to plan, once to run)
    assert mock.count("AssumeRole", "ok") == 20
    for account in expected:
        assert len(mock.images(account, "eu-west-1")) == 2
    for account in (SUSPENDED, EXCLUDED, *ELSEWHERE, MANAGEMENT):
        assert mock.images(account, "eu-west-1") == []
    # paged: 3 OUs walked, listings of 4 accounts at 2 a page take 2 calls each (x2: the
    # plan, then the run, which lists again: it images the plan's targets, in its accounts)
    assert mock.count("ListAccountsForParent", "ok") == 12
    assert mock.count("ListChildren", "ok") == 6
    assert mock.count(outcome="error") == 0


async def test_an_ou_that_cannot_be_listed_is_a_lane_error(fleet_mock: Any) -> None:
    """Not the management account (AccessDenied): the OU's lane says so, the others run."""
    mock = await fleet_mock(
        MockConfig(
            regions=("eu-west-1",),
            accounts=("111111111111", *TREE_ACCOUNTS),
            instances_per_region=1,
            state_mix={"running": 1.0},
            time_scale=50,
            pending_s=1.0,
            organization=org_tree(),
        )
    )
    cfg = config()
    cfg["targets"].append({"regions": ["eu-west-1"], "all_instances": True})
    report = await image_fleet(parse_config(cfg), endpoint_url=mock.endpoint_url)
    [failure] = report.lane_failures
    assert failure.account == TOP and failure.error_code == "AccessDeniedException"
    assert {r.account for r in report.results} == {"111111111111"}
    assert mock.count("AssumeRole") == 0
