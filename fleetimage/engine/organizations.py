"""OU targets: the accounts under an organizational unit, child OUs included.

An item ``{organization_unit: ou-..., role_name: ..., exclude: [...]}`` of a target's
``accounts`` becomes one :class:`~fleetimage.config.AccountSpec` per ACTIVE account found
(``arn:PARTITION:iam::ACCOUNT:role/ROLE_NAME``), minus the excluded ones. The tree is walked
breadth-first with the caller's own credentials (the management account or a delegated
administrator), every page through the run's retry policy. An OU that cannot be listed
(AccessDenied, ParentNotFound, ...) is reported like an account that cannot be assumed: a
lane error per region, the rest of the fleet goes on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
from aiobotocore.session import AioSession

from fleetimage.aws import clients
from fleetimage.aws.organizations import (
    OrgAccount,
    accounts_page,
    children_page,
    organizations_client,
)
from fleetimage.config import AccountItem, AccountSpec, FleetConfig, OrgUnitSpec
from fleetimage.core.errors import AwsError
from fleetimage.engine.retry import RetryPolicy, retrying

__all__ = ["OrgUnits", "UnitAccounts", "resolve_units"]

T = TypeVar("T")
Page = Callable[[Any, str, "str | None"], Awaitable[tuple[list[T], "str | None"]]]


@dataclass(slots=True)
class UnitAccounts:
    """What one OU item resolved to: the accounts to image, and those left out and why."""

    unit: str
    accounts: list[OrgAccount] = field(default_factory=list)
    inactive: list[OrgAccount] = field(default_factory=list)  # suspended, closing
    excluded: list[str] = field(default_factory=list)
    units: int = 0  # OUs walked, the item's own included
    error: AwsError | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "organization_unit": self.unit,
            "accounts": [a.id for a in self.accounts],
            "inactive": {a.id: a.state for a in self.inactive},
            "excluded": list(self.excluded),
            "units": self.units,
            "error": None
            if self.error is None
            else {
                "action": self.error.action,
                "code": self.error.code,
                "message": self.error.message,
            },
        }


@dataclass(slots=True)
class OrgUnits:
    """Every OU item of a config, resolved."""

    found: dict[OrgUnitSpec, UnitAccounts] = field(default_factory=dict)

    def expand(self, item: AccountItem | None) -> list[AccountSpec | OrgUnitSpec | None]:
        """The account selectors an ``accounts`` item stands for: itself, or one per account
        found under an OU (the OU itself when it could not be listed: its error is its lane's)."""
        if not isinstance(item, OrgUnitSpec):
            return [item]
        unit = self.found[item]
        if unit.error is not None:
            return [item]
        return [item.account(a.id, a.partition) for a in unit.accounts]


async def resolve_units(
    config: FleetConfig, *, session: AioSession, endpoint_url: str | None
) -> OrgUnits:
    """Walk every OU item of ``config`` (concurrently; no call at all when there is none)."""
    items = {a for t in config.targets for a in t.accounts if isinstance(a, OrgUnitSpec)}
    units = OrgUnits()
    if not items:
        return units
    region = config.targets[0].regions[0]
    cfg = clients.client_config(
        max_pool_connections=4, request_timeout_s=config.retry.request_timeout_s
    )
    async with (
        organizations_client(
            session, region=region, endpoint_url=endpoint_url, config=cfg
        ) as client,
        anyio.create_task_group() as tg,
    ):
        for item in items:
            units.found[item] = UnitAccounts(item.organization_unit)
            tg.start_soon(_walk, client, item, units.found[item], config.wall_retry)
    return units


async def _walk(client: Any, item: OrgUnitSpec, out: UnitAccounts, policy: RetryPolicy) -> None:
    excluded = set(item.exclude)
    queue, seen = [item.organization_unit], {item.organization_unit}
    try:
        while queue:
            parent = queue.pop(0)
            out.units += 1
            token: str | None = None
            while True:
                accounts, token = await _page(policy, accounts_page, client, parent, token)
                for account in accounts:
                    if account.id in excluded:
                        out.excluded.append(account.id)
                    elif account.active:
                        out.accounts.append(account)
                    else:
                        out.inactive.append(account)
                if not token:
                    break
            while True:
                children, token = await _page(policy, children_page, client, parent, token)
                queue.extend(c for c in children if c not in seen)
                seen.update(children)
                if not token:
                    break
    except AwsError as error:
        out.error = error
        return
    out.accounts.sort(key=lambda a: a.id)


async def _page(
    policy: RetryPolicy, fetch: Page[T], client: Any, parent: str, token: str | None
) -> tuple[list[T], str | None]:
    """One page, retried like any idempotent call (throttles and 5xx back off)."""
    async for attempt in retrying(policy):
        with attempt:
            return await fetch(client, parent, token)
    raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover
