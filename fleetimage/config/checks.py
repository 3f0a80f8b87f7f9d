"""Scalar checks for config values, as ``Annotated`` types so pydantic reports the exact
list index or dict key of a bad value."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

from fleetimage.core.tags import COPY_TAGS, OWN_TAGS

__all__ = [
    "EXTERNAL_ID_RE",
    "MAX_COPY_TAGS",
    "MAX_USER_TAGS",
    "SESSION_NAME_RE",
    "AccountId",
    "DeviceName",
    "FilterValue",
    "FleetName",
    "InstanceId",
    "NonNegFloat",
    "NonNegInt",
    "OrgUnitId",
    "PosFloat",
    "PosInt",
    "Region",
    "RoleArn",
    "RoleName",
    "StrictBool",
    "TagKey",
    "TagValue",
    "non_empty",
]

_REGION_RE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")
_INSTANCE_ID_RE = re.compile(r"^i-[0-9a-f]{8}([0-9a-f]{9})?$")
_ROLE_ARN_RE = re.compile(r"^arn:(aws|aws-cn|aws-us-gov):iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
SESSION_NAME_RE = re.compile(r"^[\w+=,.@-]{2,64}$")
EXTERNAL_ID_RE = re.compile(r"^[\w+=,.@:/-]{2,1224}$")
_DEVICE_RE = re.compile(r"^(/dev/)?[a-z][a-z0-9]{1,15}$")
# A fleet name is a tag value (fleetimage:fleet): printable, no leading/trailing space.
_FLEET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.:/=+@-]{0,127}$")
# 50 tags per resource; fleetimage adds its own (run id, instance id, fleet, run start) to
# every image, and to a copy also where it came from (source image and region).
MAX_USER_TAGS = 50 - len(OWN_TAGS)
MAX_COPY_TAGS = MAX_USER_TAGS - len(COPY_TAGS)


def _check_fleet_name(value: str) -> str:
    if not _FLEET_NAME_RE.fullmatch(value) or value != value.strip():
        raise ValueError(
            f"fleet name {value!r} is not usable as a tag value: 1-128 characters of letters, "
            "digits, space and _.:/=+@-, starting with a letter or digit"
        )
    return value


# Organizations' ParentId pattern: an OU (ou-<root>-<ou>) or the root (r-<root>).
_OU_RE = re.compile(r"^(ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}|r-[0-9a-z]{4,32})$")
_ROLE_NAME_RE = re.compile(r"^([\w+=,.@-]{1,128}/)*[\w+=,.@-]{1,64}$")
_ACCOUNT_ID_RE = re.compile(r"^\d{12}$")


def _matching(pattern: re.Pattern[str], message: str) -> Callable[[str], str]:
    """A check that ``value`` matches ``pattern`` entirely; ``message`` names it (``{value!r}``)."""

    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(message.format(value=value))
        return value

    return check


_check_region = _matching(
    _REGION_RE,
    "{value!r} is not an AWS region name (expected like us-east-1)",
)
_check_instance_id = _matching(
    _INSTANCE_ID_RE,
    "{value!r} is not an EC2 instance id (expected i- and 8 or 17 lowercase hex digits, "
    "like i-0123456789abcdef0)",
)
_check_org_unit = _matching(
    _OU_RE,
    "{value!r} is not an organizational unit id (expected like ou-ab12-cd345678, or the root "
    "r-ab12; `aws organizations list-organizational-units-for-parent` lists them)",
)
_check_role_name = _matching(
    _ROLE_NAME_RE,
    "{value!r} is not an IAM role name (1-64 characters of letters, digits, +=,.@_-, "
    "optionally after a path like team/)",
)
_check_account_id = _matching(
    _ACCOUNT_ID_RE,
    "{value!r} is not a 12-digit AWS account id (quote it in YAML)",
)
_check_role_arn = _matching(
    _ROLE_ARN_RE,
    "role_arn {value!r} is malformed (expected arn:aws:iam::<12-digit account>:role/<name>)",
)


def _check_tag_key(value: str) -> str:
    if not 1 <= len(value) <= 128:
        raise ValueError(f"tag key {value!r} must be 1-128 characters")
    if value.lower().startswith("aws:"):
        raise ValueError(f"tag key {value!r} starts with 'aws:', which AWS reserves; rename it")
    if value.lower().startswith("fleetimage:"):
        raise ValueError(
            f"tag key {value!r} starts with 'fleetimage:', which fleetimage sets itself; rename it"
        )
    return value


def _scalar_to_str(value: object) -> object:
    # YAML 1.1 turns yes/no/on/off into booleans: refuse rather than silently send "True".
    if isinstance(value, bool):
        raise ValueError(f"{value} is a YAML boolean; quote the value (e.g. 'yes' or 'true')")
    if isinstance(value, int | float):
        return str(value)
    return value


def _check_tag_value(value: str) -> str:
    if len(value) > 256:
        raise ValueError(f"tag value must be at most 256 characters (got {len(value)})")
    return value


def _check_device(value: str) -> str:
    if not _DEVICE_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a device name (expected like /dev/sdf or xvdf)")
    return value


def non_empty(what: str, example: str) -> Any:
    def check(value: tuple[Any, ...]) -> tuple[Any, ...]:
        if not value:
            raise ValueError(f"must not be empty; list at least one {what} (e.g. {example})")
        return value

    return AfterValidator(check)


Region = Annotated[str, AfterValidator(_check_region)]
FleetName = Annotated[str, Field(strict=True), AfterValidator(_check_fleet_name)]
InstanceId = Annotated[str, AfterValidator(_check_instance_id)]
RoleArn = Annotated[str, AfterValidator(_check_role_arn)]
OrgUnitId = Annotated[str, AfterValidator(_check_org_unit)]
RoleName = Annotated[str, AfterValidator(_check_role_name)]
AccountId = Annotated[str, BeforeValidator(_scalar_to_str), AfterValidator(_check_account_id)]
TagKey = Annotated[str, AfterValidator(_check_tag_key)]
TagValue = Annotated[str, BeforeValidator(_scalar_to_str), AfterValidator(_check_tag_value)]
FilterValue = Annotated[str, BeforeValidator(_scalar_to_str)]
DeviceName = Annotated[str, AfterValidator(_check_device)]
# strict: YAML gives real numbers and booleans; "5" or "yes" for one is a mistake worth naming.
PosInt = Annotated[int, Field(strict=True, ge=1)]
NonNegInt = Annotated[int, Field(strict=True, ge=0)]
PosFloat = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]
StrictBool = Annotated[bool, Field(strict=True)]
