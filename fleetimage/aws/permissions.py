"""The minimal IAM policy a fleet config needs, derived from :data:`clients.PERMISSIONS`.

Statements:

- ``Discover``: the read-only EC2 actions (DescribeInstances, DescribeImages), ``Resource "*"``
  (EC2 Describe* calls support no resource-level permissions).
- ``CreateImage``: ``ec2:CreateImage`` on instances, images, snapshots and volumes.
- ``TagOnCreate``: ``ec2:CreateTags`` on images and snapshots, only as part of CreateImage
  (condition ``ec2:CreateAction = CreateImage``): fleetimage tags in the CreateImage call.
- ``AssumeFleetRoles``: ``sts:AssumeRole`` on the configured role ARNs (only when the
  config uses ``accounts``). The EC2 statements then belong on each role, this one on the
  identity running fleetimage. OU items add the role name in every account
  (``arn:aws:iam::*:role/NAME``): the accounts are only known at run time.
- ``ListOrganizationUnits``: ``organizations:ListChildren`` and
  ``organizations:ListAccountsForParent`` (only with OU items in ``accounts``), ``Resource "*"``.
- ``Notify``: ``sns:Publish`` on ``notify.sns_topic_arn`` (only when set).

- ``Prune``: ``ec2:DeregisterImage`` on images tagged ``fleetimage:fleet`` = the config's
  name, and ``ec2:DeleteSnapshot`` on snapshots (tag-limited too when ``tag_snapshots``).
- ``PruneChecks``: what DescribeImageReferences reads for us (launch templates, SSM
  parameters, Image Builder recipes) and ``rbin:ListRules``, ``Resource "*"``.

``sts:GetCallerIdentity`` is needed but cannot be denied, so it is not listed.
"""

from __future__ import annotations

from typing import Any

from fleetimage.aws.clients import PERMISSIONS
from fleetimage.aws.notify import NOTIFY_PERMISSIONS
from fleetimage.aws.organizations import ORGANIZATIONS_PERMISSIONS
from fleetimage.config import AccountSpec, FleetConfig, OrgUnitSpec
from fleetimage.core.tags import FLEET_TAG

__all__ = ["iam_policy", "partitions"]

_ALWAYS_ALLOWED = frozenset({"sts:GetCallerIdentity"})


def partitions(config: FleetConfig) -> list[str]:
    """The AWS partitions (aws, aws-cn, aws-us-gov) of the config's regions."""
    found = set()
    for target in config.targets:
        for region in target.regions:
            if region.startswith("cn-"):
                found.add("aws-cn")
            elif region.startswith("us-gov-"):
                found.add("aws-us-gov")
            else:
                found.add("aws")
    return sorted(found)


def iam_policy(config: FleetConfig) -> dict[str, Any]:
    """An IAM policy document (``Version`` 2012-10-17) granting exactly what a run sends."""
    actions = sorted(set(PERMISSIONS.values()) - _ALWAYS_ALLOWED)
    parts = partitions(config)

    def arns(*kinds: str) -> list[str]:
        return [
            f"arn:{p}:ec2:*:*:{kind}/*"
            if kind in ("instance", "volume")
            else f"arn:{p}:ec2:*::{kind}/*"
            for p in parts
            for kind in kinds
        ]

    statements: list[dict[str, Any]] = []
    describe = [a for a in actions if a.startswith("ec2:Describe")]
    if describe:
        statements.append(
            {"Sid": "Discover", "Effect": "Allow", "Action": describe, "Resource": "*"}
        )
    if "ec2:CreateImage" in actions:
        statements.append(
            {
                "Sid": "CreateImage",
                "Effect": "Allow",
                "Action": "ec2:CreateImage",
                "Resource": arns("instance", "image", "snapshot", "volume"),
            }
        )
    if "ec2:CreateTags" in actions:
        statements.append(
            {
                "Sid": "TagOnCreate",
                "Effect": "Allow",
                "Action": "ec2:CreateTags",
                "Resource": arns("image", "snapshot"),
                "Condition": {"StringEquals": {"ec2:CreateAction": "CreateImage"}},
            }
        )
    statements.extend(_prune_statements(config, arns))
    handled = {*describe, "ec2:CreateImage", "ec2:CreateTags", "sts:AssumeRole", *_PRUNE}
    other = [a for a in actions if a not in handled]
    if other:  # an action added to PERMISSIONS later still shows up
        statements.append({"Sid": "Other", "Effect": "Allow", "Action": other, "Resource": "*"})
    roles = sorted(
        {a.role_arn for t in config.targets for a in t.accounts if isinstance(a, AccountSpec)}
    )
    # An OU's roles are found at run time: every account's role of that name.
    roles += sorted(
        {
            f"arn:{p}:iam::*:role/{a.role_name}"
            for t in config.targets
            for a in t.accounts
            if isinstance(a, OrgUnitSpec)
            for p in parts
        }
    )
    if roles and "sts:AssumeRole" in actions:
        statements.append(
            {
                "Sid": "AssumeFleetRoles",
                "Effect": "Allow",
                "Action": "sts:AssumeRole",
                "Resource": roles,
            }
        )
    statements.extend(_ops_statements(config))
    return {"Version": "2012-10-17", "Statement": statements}


def _ops_statements(config: FleetConfig) -> list[dict[str, Any]]:
    """Organizations listings (OU targets) and SNS Publish (notify), only when used."""
    out: list[dict[str, Any]] = []
    if any(isinstance(a, OrgUnitSpec) for t in config.targets for a in t.accounts):
        out.append(
            {
                "Sid": "ListOrganizationUnits",
                "Effect": "Allow",
                "Action": sorted(ORGANIZATIONS_PERMISSIONS.values()),
                "Resource": "*",
            }
        )
    if config.notify is not None and config.notify.sns_topic_arn is not None:
        out.append(
            {
                "Sid": "Notify",
                "Effect": "Allow",
                "Action": NOTIFY_PERMISSIONS["Publish"],
                "Resource": config.notify.sns_topic_arn,
            }
        )
    return out


_PRUNE = ("ec2:DeregisterImage", "ec2:DeleteSnapshot", "rbin:ListRules")
# DescribeImageReferences reads these on the caller's behalf (AWS docs, "Identify your
# resources referencing specified AMIs").
_REFERENCE_READS = [
    "ec2:DescribeLaunchTemplates",
    "ec2:DescribeLaunchTemplateVersions",
    "ssm:DescribeParameters",
    "ssm:GetParameters",
    "imagebuilder:ListImageRecipes",
    "imagebuilder:ListContainerRecipes",
    "imagebuilder:GetImageRecipe",
    "imagebuilder:GetContainerRecipe",
]


def _prune_statements(config: FleetConfig, arns: Any) -> list[dict[str, Any]]:
    tagged = {"StringEquals": {f"aws:ResourceTag/{FLEET_TAG}": config.name}}
    image_stmt: dict[str, Any] = {
        "Sid": "Prune",
        "Effect": "Allow",
        "Action": "ec2:DeregisterImage",
        "Resource": arns("image"),
    }
    snap_stmt: dict[str, Any] = {
        "Sid": "PruneSnapshots",
        "Effect": "Allow",
        "Action": "ec2:DeleteSnapshot",
        "Resource": arns("snapshot"),
    }
    if config.name is not None:
        image_stmt["Condition"] = tagged
        if config.image.tag_snapshots:
            snap_stmt["Condition"] = tagged
    checks = {
        "Sid": "PruneChecks",
        "Effect": "Allow",
        "Action": [*_REFERENCE_READS, "rbin:ListRules"],
        "Resource": "*",
    }
    return [image_stmt, snap_stmt, checks]
