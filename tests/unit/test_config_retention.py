"""``name:`` and ``retention:``: defaults, the age grammar, one-line errors naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fleetimage.config import FleetConfig, load_config, parse_config
from fleetimage.core.errors import ConfigError
from fleetimage.core.models import Target
from fleetimage.core.tags import FLEET_TAG
from fleetimage.engine.specs import build_tags

BASE: dict[str, Any] = {"targets": [{"regions": ["us-east-1"], "all_instances": True}]}


def test_retention_defaults() -> None:
    r = parse_config(BASE).retention
    assert (r.keep_last, r.max_age, r.min_age, r.min_unused) == (1, None, 86400.0, 604800.0)
    assert r.keep_tagged == ()


def test_ages_use_the_deadline_grammar() -> None:
    config = parse_config(
        {**BASE, "retention": {"max_age": "30d", "min_age": "1h30m", "min_unused": 90}}
    )
    assert config.retention.max_age == 30 * 86400
    assert config.retention.min_age == 5400
    assert config.retention.min_unused == 90


def test_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "payments-prod.yaml"
    path.write_text("targets: [{regions: [us-east-1], all_instances: true}]\n")
    assert load_config(path).name == "payments-prod"
    path.write_text("name: payments\ntargets: [{regions: [us-east-1], all_instances: true}]\n")
    assert load_config(path).name == "payments"


def test_snapshot_keeps_name_and_retention(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text(
        "targets: [{regions: [us-east-1], all_instances: true}]\n"
        "retention: {keep_last: 2, max_age: 30d, keep_tagged: [Keep]}\n"
    )
    config = load_config(path)
    again = FleetConfig.from_snapshot(config.model_dump(mode="json"))
    assert again.name == "f" and again.retention == config.retention


def test_fleet_tag_is_written_on_every_image() -> None:
    config = parse_config({**BASE, "name": "blue"})
    target = Target("123456789012", "us-east-1", "i-0123456789abcdef0")
    tags = build_tags(config, target, "run-1")
    assert tags[FLEET_TAG] == "blue"
    # an instance tag cannot forge the fleet
    forged = Target("123456789012", "us-east-1", "i-0123456789abcdef0", tags={FLEET_TAG: "red"})
    config = parse_config({**BASE, "name": "blue", "image": {"copy_instance_tags": True}})
    assert build_tags(config, forged, "run-1")[FLEET_TAG] == "blue"


@pytest.mark.parametrize(
    ("retention", "field", "fragment"),
    [
        ({"keep_last": 0}, "retention.keep_last", "must be >= 1, got 0"),
        ({"keep_last": "3"}, "retention.keep_last", "whole number"),
        ({"max_age": "-5d"}, "retention.max_age", "not a duration"),
        ({"max_age": -5}, "retention.max_age", ">= 0"),
        ({"min_age": "soon"}, "retention.min_age", "not a duration"),
        ({"min_unused": True}, "retention.min_unused", "age like 30d"),
        ({"keep_tagged": "Keep"}, "retention.keep_tagged", "expected a list"),
        ({"keep_last": 2, "maxage": "3d"}, "retention", "did you mean 'max_age'"),
    ],
)
def test_bad_retention_is_one_line(retention: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({**BASE, "retention": retention}, source="fleet.yaml")
    message = str(info.value)
    assert "\n" not in message
    assert field in message and fragment in message, message


@pytest.mark.parametrize("name", ["", " x", "a\nb", "-lead", 42, "x" * 129])
def test_bad_fleet_name(name: object) -> None:
    with pytest.raises(ConfigError, match="name"):
        parse_config({**BASE, "name": name})
