"""Shared pieces of the EC2 action handlers: request context, filters (with EC2 wildcards),
NextToken pagination, tag validation, DryRun."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from fleetimage.mock.fleet import Fleet, RegionState
from fleetimage.mock.protocol import (
    ApiError,
    Params,
    bool_param,
    esc,
    filters,
    has_wildcard,
    wildcard,
)

__all__ = [
    "Ctx",
    "Getter",
    "Handler",
    "dry_run",
    "exact_ids",
    "match_filters",
    "max_results",
    "next_token_xml",
    "paginate",
    "parse_tags",
    "require",
]

T = TypeVar("T")


@dataclass(slots=True)
class Ctx:
    """One request's context: who (account), where (region), when (monotonic and wall)."""

    account: str
    region: str
    st: RegionState
    fleet: Fleet
    now: float
    wall: float


Handler = Callable[[Ctx, Params], str]


def dry_run(params: Params) -> None:
    if bool_param(params, "DryRun"):
        raise ApiError(
            "DryRunOperation", "Request would have succeeded, but DryRun flag is set.", 412
        )


def require(params: Params, name: str) -> str:
    value = params.get(name)
    if not value:
        raise ApiError("MissingParameter", f"The request must contain the parameter {name}")
    return value


# --- filters --------------------------------------------------------------------------------


def _value_matcher(values: Sequence[str]) -> Callable[[str], bool]:
    if not any(has_wildcard(v) for v in values):
        exact = frozenset(values)
        return exact.__contains__
    patterns = [wildcard(v) for v in values]
    return lambda s: any(p.fullmatch(s) for p in patterns)


Getter = Callable[[T], Sequence[str]]


def _any_of(getter: Getter[T], match: Callable[[str], bool]) -> Callable[[T], bool]:
    return lambda obj: any(match(s) for s in getter(obj))


def match_filters(
    params: Params, getters: dict[str, Getter[T]], tags_of: Callable[[T], dict[str, str]]
) -> Callable[[T], bool] | None:
    """A predicate for the request's ``Filter.N`` (AND of filters, OR of values), or None."""
    checks: list[Callable[[T], bool]] = []
    for name, values in filters(params):
        if not values:
            raise ApiError("InvalidParameterValue", f"The filter '{name}' has no values")
        match = _value_matcher(values)
        if name.startswith("tag:") and len(name) > 4:
            key = name[4:]

            def check_tag(obj: T, key: str = key, match: Callable[[str], bool] = match) -> bool:
                value = tags_of(obj).get(key)
                return value is not None and match(value)

            checks.append(check_tag)
        elif name == "tag-key":
            checks.append(_any_of(lambda obj: list(tags_of(obj)), match))
        elif name == "tag-value":
            checks.append(_any_of(lambda obj: list(tags_of(obj).values()), match))
        elif name in getters:
            checks.append(_any_of(getters[name], match))
        else:
            raise ApiError("InvalidParameterValue", f"The filter '{name}' is invalid")
    if not checks:
        return None
    return lambda obj: all(check(obj) for check in checks)


def exact_ids(params: Params, filter_name: str) -> list[str] | None:
    """The values of filter ``filter_name`` when it is the only way to select and has no
    wildcards (a fast path: look ids up instead of scanning the region)."""
    for name, values in filters(params):
        if name == filter_name and values and not any(has_wildcard(v) for v in values):
            return values
    return None


# --- pagination -----------------------------------------------------------------------------


def max_results(params: Params, lo: int = 5, hi: int = 1000) -> int | None:
    raw = params.get("MaxResults")
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(
            "InvalidParameterValue", f"Value ( {raw} ) for parameter maxResults is invalid."
        ) from None
    if not lo <= value <= hi:
        raise ApiError(
            "InvalidParameterValue",
            f"Value ( {value} ) for parameter maxResults is invalid. "
            f"Expecting a value between {lo} and {hi}.",
        )
    return value


def paginate(
    seq: Sequence[T], params: Params, keep: Callable[[T], bool], kind: str
) -> tuple[list[T], str | None]:
    """Scan ``seq`` from the NextToken position, keeping up to MaxResults matches."""
    limit = max_results(params)
    start = 0
    token = params.get("NextToken")
    if token:
        try:
            tkind, _, pos = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
            start = int(pos)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            tkind = ""
        if tkind != kind or start < 0:
            raise ApiError("InvalidParameterValue", f"Invalid value '{token}' for nextToken")
    out: list[T] = []
    for index in range(start, len(seq)):
        obj = seq[index]
        if keep(obj):
            if limit is not None and len(out) == limit:
                raw = f"{kind}:{index}".encode()
                return out, base64.urlsafe_b64encode(raw).decode()
            out.append(obj)
    return out, None


def next_token_xml(token: str | None) -> str:
    return f"<nextToken>{esc(token)}</nextToken>" if token else ""


# --- tags -----------------------------------------------------------------------------------


def parse_tags(members: list[dict[str, str]]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for member in members:
        key = member.get("Key", "")
        value = member.get("Value", "")
        if not key or len(key) > 128:
            raise ApiError("InvalidParameterValue", f"Tag key '{key}' must be 1 to 128 chars")
        if key.lower().startswith("aws:"):
            raise ApiError(
                "InvalidParameterValue", "Tag keys starting with 'aws:' are reserved for AWS use"
            )
        if len(value) > 256:
            raise ApiError("InvalidParameterValue", f"Tag value for '{key}' exceeds 256 chars")
        tags[key] = value
    if len(tags) > 50:
        raise ApiError("TagLimitExceeded", "The maximum number of tags per resource is 50")
    return tags
