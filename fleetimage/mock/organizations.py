"""AWS Organizations (JSON 1.1 protocol): ``ListChildren`` and ``ListAccountsForParent``
over a configured tree (:class:`OrgTree`, ``MockConfig.organization``), paged.

Requests are ``POST /`` with ``X-Amz-Target: AWSOrganizationsV20161128.<Action>`` and a JSON
body; answers are JSON, errors ``{"__type": code, "Message": ...}`` with HTTP 400. Pages hold
at most ``OrgTree.page_size`` items (and at most the request's ``MaxResults``); ``NextToken``
is an opaque offset.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from fleetimage.core.errors import MockError

__all__ = ["ORG_ACTIONS", "TARGET_PREFIX", "OrgAccount", "OrgTree", "answer"]

TARGET_PREFIX = "AWSOrganizationsV20161128."
ORG_ACTIONS = frozenset({"ListChildren", "ListAccountsForParent"})
_OU_RE = re.compile(r"^ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}$")
_ROOT_RE = re.compile(r"^r-[0-9a-z]{4,32}$")
_ACCOUNT_RE = re.compile(r"^\d{12}$")
STATES = ("ACTIVE", "SUSPENDED", "PENDING_CLOSURE")


@dataclass(frozen=True, slots=True)
class OrgAccount:
    """An account of the mock organization, directly under ``parent`` (an OU or the root)."""

    id: str
    parent: str
    state: str = "ACTIVE"


@dataclass(frozen=True, slots=True)
class OrgTree:
    """The mock organization: ``units`` maps each OU id to its parent's id (another OU or
    ``root``); ``accounts`` are placed under OUs or the root. ``management_account``: the
    only account allowed to list (None: any caller, as a delegated administrator would)."""

    units: Mapping[str, str] = field(default_factory=dict, hash=False)
    accounts: tuple[OrgAccount, ...] = ()
    root: str = "r-mock"
    page_size: int = 2
    management_account: str | None = None

    def __post_init__(self) -> None:
        if not _ROOT_RE.fullmatch(self.root):
            raise MockError(f"OrgTree.root: {self.root!r} is not a root id (r-...)")
        for ou, parent in self.units.items():
            if not _OU_RE.fullmatch(ou):
                raise MockError(f"OrgTree.units: {ou!r} is not an OU id (ou-xxxx-xxxxxxxx)")
            if parent != self.root and parent not in self.units:
                raise MockError(f"OrgTree.units[{ou!r}]: unknown parent {parent!r}")
        object.__setattr__(self, "units", MappingProxyType(dict(self.units)))
        object.__setattr__(self, "accounts", tuple(self.accounts))
        for acc in self.accounts:
            if not _ACCOUNT_RE.fullmatch(acc.id) or acc.state not in STATES:
                raise MockError(f"OrgTree.accounts: bad account {acc!r}")
            if acc.parent != self.root and acc.parent not in self.units:
                raise MockError(f"OrgTree.accounts: {acc.id} has unknown parent {acc.parent!r}")
        if not isinstance(self.page_size, int) or self.page_size < 1:
            raise MockError("OrgTree.page_size must be an int >= 1")

    def exists(self, parent: str) -> bool:
        return parent == self.root or parent in self.units


def _error(code: str, message: str) -> tuple[int, bytes]:
    return 400, json.dumps({"__type": code, "Message": message}).encode()


def _page(items: list[dict[str, Any]], request: Mapping[str, Any], size: int) -> dict[str, Any]:
    start = int(request.get("NextToken") or 0)
    limit = min(size, int(request.get("MaxResults") or size))
    page: dict[str, Any] = {"items": items[start : start + limit]}
    if start + limit < len(items):
        page["NextToken"] = str(start + limit)
    return page


def answer(tree: OrgTree | None, caller: str, target: str, body: bytes) -> tuple[int, bytes]:
    """(HTTP status, JSON body) for one Organizations request."""
    action = target.removeprefix(TARGET_PREFIX)
    if not target.startswith(TARGET_PREFIX) or action not in ORG_ACTIONS:
        return _error("UnknownOperationException", f"unknown operation {target!r}")
    if tree is None:
        return _error(
            "AWSOrganizationsNotInUseException",
            "Your account is not a member of an organization.",
        )
    if tree.management_account is not None and caller != tree.management_account:
        return _error(
            "AccessDeniedException",
            "You don't have permissions to access this resource: the caller is not the "
            "management account or a delegated administrator.",
        )
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return _error("SerializationException", "request body is not JSON")
    parent = str(request.get("ParentId", ""))
    if not (_OU_RE.fullmatch(parent) or _ROOT_RE.fullmatch(parent)):
        return _error("InvalidInputException", f"ParentId {parent!r} is not a valid id")
    if not tree.exists(parent):
        return _error("ParentNotFoundException", "We can't find a root or OU with the ParentId.")
    if action == "ListChildren":
        if request.get("ChildType") != "ORGANIZATIONAL_UNIT":
            return 200, json.dumps({"Children": []}).encode()  # no account children here
        children = [
            {"Id": ou, "Type": "ORGANIZATIONAL_UNIT"}
            for ou, up in sorted(tree.units.items())
            if up == parent
        ]
        page = _page(children, request, tree.page_size)
        page["Children"] = page.pop("items")
        return 200, json.dumps(page).encode()
    accounts = [
        {
            "Id": a.id,
            "Arn": f"arn:aws:organizations::{caller}:account/o-mock/{a.id}",
            "Email": f"{a.id}@example.com",
            "Name": f"account-{a.id}",
            "Status": "SUSPENDED" if a.state == "SUSPENDED" else "ACTIVE",
            "State": a.state,
            "JoinedMethod": "CREATED",
            "JoinedTimestamp": 1_700_000_000,
        }
        for a in tree.accounts
        if a.parent == parent
    ]
    page = _page(accounts, request, tree.page_size)
    page["Accounts"] = page.pop("items")
    return 200, json.dumps(page).encode()
