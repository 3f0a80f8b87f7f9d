"""Fleet config: the example loads, limits merge, snapshots round-trip, errors are one line."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from fleetimage.config import (
    ErrorBudget,
    FleetConfig,
    load_config,
    load_default_limits,
    parse_config,
)
from fleetimage.core.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "fleet.example.yaml"
BASE: dict[str, Any] = {"targets": [{"regions": ["us-east-1"], "filters": {"tag:Env": "prod"}}]}


def _with(**sections: Any) -> dict[str, Any]:
    return {**BASE, **sections}


# --- the example --------------------------------------------------------------------------------


def test_example_loads() -> None:
    config = load_config(EXAMPLE)
    assert config.source == str(EXAMPLE)
    assert config.targets[0].regions == ("us-east-1", "eu-west-1")
    assert config.targets[0].filters["tag:Env"] == ("prod",)
    assert config.targets[1].all_instances
    assert config.max_errors.percent == 5


def _field_names(model: type[BaseModel]) -> set[str]:
    names: set[str] = set()
    for name, field in model.model_fields.items():
        names.add(field.alias or name)  # copy_ is `copy:` in YAML
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= _field_names(annotation)
    return names


def test_example_documents_every_key() -> None:
    text = EXAMPLE.read_text()
    lines = text.splitlines()
    keys = set()
    for i, line in enumerate(lines):
        match = re.match(r"^\s*(?:- )?\"?([\w:-]+)\"?:", line)
        if not match:
            continue
        keys.add(match.group(1))
        previous = lines[i - 1].strip() if i else ""
        assert "#" in line or previous.startswith(("#", "- #")), f"undocumented: {line!r}"
    from fleetimage.config import AccountSpec, NotifyOptions, OrgUnitSpec, TargetSpec

    expected = _field_names(FleetConfig) | _field_names(TargetSpec) | _field_names(AccountSpec)
    expected |= _field_names(OrgUnitSpec) | _field_names(NotifyOptions)
    expected -= {"source", "count", "percent"}  # set by the loader / internal to max_errors
    assert expected <= keys, f"keys missing from the example: {sorted(expected - keys)}"


# --- defaults, limits, snapshots --------------------------------------------------------------


def test_defaults() -> None:
    config = parse_config(BASE)
    assert config.source == "<config>"
    assert config.image.no_reboot and config.wait.enabled
    assert config.max_errors.percent == 10
    assert config.limits_for("us-east-1") == load_default_limits()


def test_default_limits_are_aws_defaults_and_a_copy() -> None:
    limits = load_default_limits()
    assert limits["CreateImage"] == (50, 5.0)
    assert limits["DescribeImages"] == (100, 20.0)
    limits["CreateImage"] = (1, 1.0)
    assert load_default_limits()["CreateImage"] == (50, 5.0)


def test_limits_merge_defaults_actions_regions() -> None:
    config = parse_config(
        _with(
            limits={
                "CreateImage": {"burst": 40},
                "DescribeImages": {"rate_per_s": 10},
                "regions": {"us-east-1": {"CreateImage": {"rate_per_s": 2}}},
            }
        )
    )
    assert config.limits_for("us-east-1")["CreateImage"] == (40, 2.0)
    assert config.limits_for("eu-west-1")["CreateImage"] == (40, 5.0)
    assert config.limits_for("eu-west-1")["DescribeImages"] == (100, 10.0)
    assert config.limits_for("eu-west-1")["CreateTags"] == (100, 10.0)


def test_snapshot_round_trips() -> None:
    config = load_config(EXAMPLE)
    snapshot = json.loads(config.model_dump_json())
    assert snapshot["max_errors"] == "5%"
    assert snapshot["limits"]["CreateImage"] == {"burst": 50, "rate_per_s": 5.0}
    again = FleetConfig.from_snapshot(snapshot)
    assert again == config
    assert again.limits_for("us-east-1") == config.limits_for("us-east-1")


def test_models_are_frozen() -> None:
    config = parse_config(BASE)
    with pytest.raises(ValueError):
        config.retry = config.retry


@pytest.mark.parametrize(
    ("raw", "errors", "total", "exceeded"),
    [
        (5, 5, 100, False),
        (5, 6, 100, True),
        ("5", 6, 100, True),
        (0, 1, 100, True),
        ("5%", 5, 100, False),
        ("5%", 6, 100, True),
        ("0.5%", 6, 1000, True),
        ("0.5%", 5, 1000, False),
        ("100%", 100, 100, False),
    ],
)
def test_error_budget(raw: object, errors: int, total: int, exceeded: bool) -> None:
    assert ErrorBudget.model_validate(raw).exceeded(errors, total) is exceeded


# --- errors -------------------------------------------------------------------------------------

TARGET_OK = {"regions": ["us-east-1"], "all_instances": True}

BAD: list[tuple[dict[str, Any], str, str]] = [
    (
        {"targets": [{"regoins": ["us-east-1"]}]},
        "targets[0]",
        "unknown key 'regoins' (did you mean 'regions'?)",
    ),
    (
        {"targets": [{"regions": ["us-east-1", "us-east-9x"], "all_instances": True}]},
        "targets[0].regions[1]",
        "'us-east-9x' is not an AWS region name (expected like us-east-1)",
    ),
    (
        {"targets": [{**TARGET_OK, "accounts": [{"role_arn": "arn:aws:iam::12:role/x"}]}]},
        "targets[0].accounts[0].role_arn",
        "role_arn 'arn:aws:iam::12:role/x' is malformed "
        "(expected arn:aws:iam::<12-digit account>:role/<name>)",
    ),
    (
        {
            "targets": [
                {
                    **TARGET_OK,
                    "accounts": [
                        {"role_arn": "arn:aws-cn:iam::123456789012:role/x", "session_name": "a b"}
                    ],
                }
            ]
        },
        "targets[0].accounts[0].session_name",
        "session_name",
    ),
    ({"targets": []}, "targets", "must not be empty"),
    (
        {"targets": [{"regions": [], "all_instances": True}]},
        "targets[0].regions",
        "must not be empty",
    ),
    (
        {"targets": [{"regions": "us-east-1", "all_instances": True}]},
        "targets[0].regions",
        "expected a list",
    ),
    ({"targets": [{"regions": ["us-east-1"]}]}, "targets[0]", "all_instances: true"),
    (
        {"targets": [{"regions": ["us-east-1"], "instance_ids": ["i-123"]}]},
        "targets[0].instance_ids[0]",
        "not an EC2 instance id",
    ),
    (
        {"targets": [{"regions": ["us-east-1"], "filters": {"tag:X": []}}]},
        "targets[0].filters['tag:X']",
        "at least one value",
    ),
    (
        {"targets": [{"regions": ["us-east-1"], "filters": {"tag:X": True}}]},
        "targets[0].filters['tag:X'][0]",
        "quote",
    ),
    (_with(image={"name_template": "{instance_id}"}), "image.name_template", "{run_id}"),
    (
        _with(image={"name_template": "{instance_id}-{run_id}-{nme}"}),
        "image.name_template",
        "unknown placeholder {nme}",
    ),
    (_with(image={"name_template": "{instance_id}*{run_id}"}), "image.name_template", "refuse"),
    (_with(image={"description": "{oops}"}), "image.description", "unknown placeholder"),
    (_with(image={"tags": {"aws:x": "1"}}), "image.tags['aws:x']", "reserves"),
    (
        _with(image={"tags": {"fleetimage:run-id": "1"}}),
        "image.tags['fleetimage:run-id']",
        "fleetimage sets itself",
    ),
    (_with(image={"tags": {"Backup": True}}), "image.tags.Backup", "quote"),
    (_with(image={"no_reboot": "yes"}), "image.no_reboot", "expected true or false"),
    (_with(image={"exclude_devices": ["sdf f"]}), "image.exclude_devices[0]", "device name"),
    (_with(wait={"timeout_s": 0}), "wait.timeout_s", "must be > 0"),
    (_with(wait={"poll_interval_s": -1}), "wait.poll_interval_s", "must be > 0"),
    (_with(wait={"timeout_s": "5"}), "wait.timeout_s", "remove the quotes"),
    (
        _with(concurrency={"max_in_flight_per_region": 0}),
        "concurrency.max_in_flight_per_region",
        "must be >= 1",
    ),
    (_with(retry={"max_attempts": 2.5}), "retry.max_attempts", "whole number"),
    (_with(retry={"base_delay_s": 10, "max_delay_s": 1}), "retry.max_delay_s", ">= base_delay_s"),
    (_with(retry={"max_outage_s": 0}), "retry.max_outage_s", "must be > 0"),
    (_with(retry={"breaker_failures": 0}), "retry.breaker_failures", "must be >= 1"),
    (
        _with(retry={"breaker_cooldown_s": 5, "breaker_max_cooldown_s": 1}),
        "retry.breaker_max_cooldown_s",
        ">= breaker_cooldown_s",
    ),
    (
        _with(limits={"CreateImages": {"burst": 5}}),
        "limits.CreateImages",
        "did you mean 'CreateImage'?",
    ),
    (_with(limits={"CreateImage": {"burst": 0}}), "limits.CreateImage.burst", "must be >= 1"),
    (
        _with(limits={"CreateImage": {"rate_per_s": 0}}),
        "limits.CreateImage.rate_per_s",
        "must be > 0",
    ),
    (_with(limits={"CreateImage": {}}), "limits.CreateImage", "set burst and/or rate_per_s"),
    (
        _with(limits={"regions": {"us-east-1": {"Foo": {"burst": 1}}}}),
        "limits.regions['us-east-1'].Foo",
        "known: CopyImage, CreateImage",
    ),
    (
        _with(limits={"regions": {"useast1": {}}}),
        "limits.regions.useast1",
        "not an AWS region name",
    ),
    (_with(max_errors="5 percent"), "max_errors", 'a percent (e.g. "5%")'),
    (_with(max_errors="150%"), "max_errors", "<= 100"),
    (_with(max_errors=True), "max_errors", "a count"),
    (_with(wiat={}), "", "unknown key 'wiat' (did you mean 'wait'?)"),
    (_with(source="x"), "", "unknown key 'source'"),
    (_with(image=[]), "image", "expected a mapping"),
]


@pytest.mark.parametrize(("data", "field", "fragment"), BAD)
def test_errors_name_field_and_fix(data: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="fleet.yaml")
    error = info.value
    assert error.file == "fleet.yaml"
    assert (error.field or "") == field
    message = str(error)
    assert "\n" not in message
    assert message.startswith("fleet.yaml: ")
    assert fragment in message, message


@pytest.mark.parametrize("data", [None, [], "targets", 3, {"targets": [{"regions": [object()]}]}])
def test_only_config_errors_escape_parse(data: object) -> None:
    with pytest.raises(ConfigError):
        parse_config(data)


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")


def test_load_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)


def test_load_invalid_yaml_names_line(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text("targets:\n  - regions: [us-east-1\n    filters: {}\n")
    with pytest.raises(ConfigError, match=r"invalid YAML at line \d+, column \d+") as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("", "config is empty"), ("- a\n- b\n", "top level must be a mapping"), ("\xff", "not UTF-8")],
)
def test_load_not_a_mapping(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        load_config(path)


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text("targets: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path)


def test_snapshot_errors_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        FleetConfig.from_snapshot({"targets": "nope"})
