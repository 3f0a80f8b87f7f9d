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

- ``CopyImage`` (only with ``copy:``): ``ec2:CopyImage`` on images and snapshots (the tags
  go in its TagSpecifications: ``TagOnCreate`` then allows CopyImage too).
- ``CopyDestinationKeys`` (with ``copy.encrypted``): what EBS needs on the destination key —
  the configured key ARNs, or, for aliases and the default key, any key used through EC2 in
  the destination regions (``kms:ViaService``).
- ``CopySourceKeys`` (with ``copy:``): reading the source images' snapshots when they are
  encrypted with a customer key (EC2 decrypts them through the source region's KMS); any
  key, only through EC2 in the source regions. Unencrypted sources need none of it.

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
    regions = [r for t in config.targets for r in t.regions] + list(config.copy_.regions)
    for region in regions:
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
    copying = config.copy_.enabled
    if "ec2:CreateTags" in actions:
        creators = ["CreateImage", "CopyImage"] if copying else "CreateImage"
        statements.append(
            {
                "Sid": "TagOnCreate",
                "Effect": "Allow",
                "Action": "ec2:CreateTags",
                "Resource": arns("image", "snapshot"),
                "Condition": {"StringEquals": {"ec2:CreateAction": creators}},
            }
        )
    if copying:
        statements.extend(_copy_statements(config, arns))
    statements.extend(_prune_statements(config, arns))
    handled = {*describe, "ec2:CreateImage", "ec2:CreateTags", "sts:AssumeRole", *_PRUNE}
    handled.add("ec2:CopyImage")
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


# What EBS needs on a KMS key to copy snapshots encrypted with it (AWS docs, "Permissions to
# use AWS KMS keys" for EBS encryption; CopyImage with Encrypted/KmsKeyId).
_DESTINATION_KEY = [
    "kms:CreateGrant",
    "kms:Decrypt",
    "kms:DescribeKey",
    "kms:Encrypt",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:ReEncrypt*",
]
_SOURCE_KEY = ["kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:ReEncrypt*"]


def _via_ec2(regions: list[str]) -> dict[str, Any]:
    return {"StringEquals": {"kms:ViaService": [f"ec2.{r}.amazonaws.com" for r in regions]}}


def _copy_statements(config: FleetConfig, arns: Any) -> list[dict[str, Any]]:
    opts = config.copy_
    statements: list[dict[str, Any]] = [
        {
            "Sid": "CopyImage",
            "Effect": "Allow",
            "Action": "ec2:CopyImage",
            "Resource": arns("image", "snapshot"),
        }
    ]
    if opts.encrypted:
        key_arns = sorted(k for k in opts.kms_key_id.values() if ":key/" in k)
        by_alias = sorted(r for r in opts.regions if ":key/" not in opts.kms_key_id.get(r, ""))
        if key_arns:
            statements.append(
                {
                    "Sid": "CopyDestinationKeys",
                    "Effect": "Allow",
                    "Action": _DESTINATION_KEY,
                    "Resource": key_arns,
                }
            )
        if by_alias:  # an alias, a bare key id or the default key: any key, only via EC2
            statements.append(
                {
                    "Sid": "CopyDestinationKeysViaEC2",
                    "Effect": "Allow",
                    "Action": _DESTINATION_KEY,
                    "Resource": "*",
                    "Condition": _via_ec2(by_alias),
                }
            )
    sources = sorted({r for t in config.targets for r in t.regions})
    statements.append(
        {
            "Sid": "CopySourceKeys",
            "Effect": "Allow",
            "Action": _SOURCE_KEY,
            "Resource": "*",
            "Condition": _via_ec2(sources),
        }
    )
    return statements


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
