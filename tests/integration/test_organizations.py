"""OU targets end to end: the real aiobotocore Organizations client pages through the mock's
tree, STS AssumeRole on the mock reaches each account, and exactly the ACTIVE, not excluded
accounts under the OU (child OUs included) are imaged."""

from __future__ import annotations

from typing import Any

import pytest

from fleetimage import Outcome, image_fleet, parse_config
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
    """One pass (no confirmation: the plan's display is tests/cli/test_ops_cli.py's), so each
    account is reached once: 10 AssumeRoles, 10 lanes."""
    mock = await start(fleet_mock)
    report = await image_fleet(parse_config(config()), endpoint_url=mock.endpoint_url)

    expected = set(TREE_ACCOUNTS) - {SUSPENDED, EXCLUDED}
    assert len(expected) == 10
    imaged = {r.account for r in report.results if r.outcome is Outcome.AVAILABLE}
    assert imaged == expected
    assert len(report.results) == 20 and report.ok, report.failures()
    assert not report.lane_failures
    # each account was reached through its own role (role_name in that account), once
    assert mock.count("AssumeRole", "ok") == 10
    roles = sorted(session.role_arn for session in mock.keys.sessions.values())
    assert roles == [f"arn:aws:iam::{a}:role/fleet-imager" for a in sorted(expected)]
    for account in expected:
        assert len(mock.images(account, "eu-west-1")) == 2
    for account in (SUSPENDED, EXCLUDED, *ELSEWHERE, MANAGEMENT):
        assert mock.images(account, "eu-west-1") == []
    # paged: 3 OUs walked; listing 4 accounts at 2 a page takes 2 calls each
    assert mock.count("ListAccountsForParent", "ok") == 6
    assert mock.count("ListChildren", "ok") == 3
    assert mock.count(outcome="error") == 0


@pytest.mark.parametrize(
    ("caller", "unit", "code"),
    [
        ("111111111111", TOP, "AccessDeniedException"),  # not the management account
        (MANAGEMENT, "ou-mock-nothere1", "ParentNotFoundException"),
    ],
)
async def test_an_ou_that_cannot_be_listed_is_a_lane_error(
    fleet_mock: Any, caller: str, unit: str, code: str
) -> None:
    """The OU's lane says why; the rest of the fleet runs."""
    mock = await fleet_mock(
        MockConfig(
            regions=("eu-west-1",),
            accounts=(caller, *TREE_ACCOUNTS),
            instances_per_region=1,
            state_mix={"running": 1.0},
            time_scale=50,
            pending_s=1.0,
            organization=org_tree(),
        )
    )
    cfg = config()
    cfg["targets"][0]["accounts"][0]["organization_unit"] = unit
    cfg["targets"].append({"regions": ["eu-west-1"], "all_instances": True})
    report = await image_fleet(parse_config(cfg), endpoint_url=mock.endpoint_url)
    [failure] = report.lane_failures
    assert failure.account == unit and failure.error_code == code
    assert failure.action == "ListAccountsForParent"
    assert {r.account for r in report.results} == {caller}
    assert report.counts["available"] == 1
    assert mock.count("AssumeRole") == 0
