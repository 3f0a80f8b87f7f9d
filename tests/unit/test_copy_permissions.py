"""``fleetimage permissions`` with ``copy:``: CopyImage, tags on copy, and the KMS actions."""

from __future__ import annotations

from typing import Any

from fleetimage import parse_config
from fleetimage.aws.permissions import iam_policy

KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def policy(copy: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    cfg: dict[str, Any] = {"targets": [{"regions": ["us-east-1"], "all_instances": True}]}
    if copy is not None:
        cfg["copy"] = copy
    return {s["Sid"]: s for s in iam_policy(parse_config(cfg))["Statement"]}


def test_no_copy_no_copy_permissions() -> None:
    statements = policy(None)
    assert not any(sid.startswith("Copy") for sid in statements)
    assert all("ec2:CopyImage" not in str(s["Action"]) for s in statements.values())
    assert statements["TagOnCreate"]["Condition"]["StringEquals"]["ec2:CreateAction"] == (
        "CreateImage"
    )


def test_copy_needs_copy_image_tags_and_source_keys() -> None:
    statements = policy({"regions": ["eu-west-1"]})
    assert statements["CopyImage"]["Action"] == "ec2:CopyImage"
    tag = statements["TagOnCreate"]["Condition"]["StringEquals"]["ec2:CreateAction"]
    assert tag == ["CreateImage", "CopyImage"]
    source = statements["CopySourceKeys"]
    assert "kms:Decrypt" in source["Action"] and "kms:CreateGrant" in source["Action"]
    assert source["Condition"]["StringEquals"]["kms:ViaService"] == ["ec2.us-east-1.amazonaws.com"]
    assert "CopyDestinationKeys" not in statements  # not encrypted: no destination key


def test_encrypted_copy_grants_on_the_destination_keys() -> None:
    statements = policy(
        {
            "regions": ["eu-west-1", "us-west-2"],
            "encrypted": True,
            "kms_key_id": {"eu-west-1": KEY, "us-west-2": "alias/dr"},
        }
    )
    by_arn = statements["CopyDestinationKeys"]
    assert by_arn["Resource"] == [KEY]
    assert {"kms:GenerateDataKeyWithoutPlaintext", "kms:CreateGrant"} <= set(by_arn["Action"])
    by_alias = statements["CopyDestinationKeysViaEC2"]
    assert by_alias["Resource"] == "*"
    assert by_alias["Condition"]["StringEquals"]["kms:ViaService"] == [
        "ec2.us-west-2.amazonaws.com"
    ]
