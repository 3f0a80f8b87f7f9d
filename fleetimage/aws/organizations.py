"""AWS Organizations on the wire: the two listing calls an OU target needs.

``ListChildren`` (child OUs) and ``ListAccountsForParent`` (the accounts directly under a
parent), one page per call; :mod:`fleetimage.engine.organizations` walks the tree and retries.
Organizations is a global service with one endpoint per partition.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession

from fleetimage.aws.clients import to_aws_error
from fleetimage.aws.loading import open_client

__all__ = [
    "ORGANIZATIONS_PERMISSIONS",
    "OrgAccount",
    "accounts_page",
    "children_page",
    "organizations_client",
    "organizations_region",
]

#: The IAM actions an OU target needs (on the identity running fleetimage).
ORGANIZATIONS_PERMISSIONS: Mapping[str, str] = {
    "ListChildren": "organizations:ListChildren",
    "ListAccountsForParent": "organizations:ListAccountsForParent",
}


@dataclass(frozen=True, slots=True)
class OrgAccount:
    """An account of the organization: its id, partition (from its ARN) and state."""

    id: str
    partition: str
    state: str  # ACTIVE, SUSPENDED, PENDING_CLOSURE, ...
    name: str = ""

    @property
    def active(self) -> bool:
        return self.state == "ACTIVE"


def organizations_region(region: str) -> str:
    """The region Organizations' endpoint is in, for the partition of ``region``."""
    if region.startswith("cn-"):
        return "cn-northwest-1"
    if region.startswith("us-gov-"):
        return "us-gov-west-1"
    return "us-east-1"


def organizations_client(
    session: AioSession, *, region: str, endpoint_url: str | None, config: AioConfig
) -> contextlib.AbstractAsyncContextManager[Any]:
    kwargs: dict[str, Any] = {"region_name": organizations_region(region), "config": config}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    return open_client(session, "organizations", **kwargs)


async def children_page(
    client: Any, parent_id: str, token: str | None
) -> tuple[list[str], str | None]:
    """One page of the OUs directly under ``parent_id``: (ids, next token)."""
    params: dict[str, Any] = {"ParentId": parent_id, "ChildType": "ORGANIZATIONAL_UNIT"}
    if token:
        params["NextToken"] = token
    try:
        answer = await client.list_children(**params)
    except Exception as exc:
        raise to_aws_error(exc, "ListChildren") from None
    return [str(c["Id"]) for c in answer.get("Children", [])], answer.get("NextToken")


async def accounts_page(
    client: Any, parent_id: str, token: str | None
) -> tuple[list[OrgAccount], str | None]:
    """One page of the accounts directly under ``parent_id``: (accounts, next token)."""
    params: dict[str, Any] = {"ParentId": parent_id}
    if token:
        params["NextToken"] = token
    try:
        answer = await client.list_accounts_for_parent(**params)
    except Exception as exc:
        raise to_aws_error(exc, "ListAccountsForParent") from None
    found = []
    for acc in answer.get("Accounts", []):
        arn = str(acc.get("Arn", ""))
        partition = arn.split(":")[1] if arn.count(":") >= 2 else "aws"
        # "State" replaced "Status" in 2025; older answers only have the latter.
        state = str(acc.get("State") or acc.get("Status") or "ACTIVE")
        found.append(OrgAccount(str(acc["Id"]), partition, state, str(acc.get("Name", ""))))
    return found, answer.get("NextToken")
