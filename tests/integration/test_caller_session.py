"""A session the caller passes (``image_fleet(session=...)``) is used as given by every lane.

Each account gets its own session (its credentials, renewed on their own schedule); that
session must still be the caller's in everything else: its profile's settings (a CA bundle,
a proxy), variables set on it, its event handlers, its answer parser.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.credentials import AioCredentials
from aiobotocore.session import AioSession, get_session
from botocore.httpsession import DEFAULT_CA_BUNDLE

from fleetimage import image_fleet, parse_config
from fleetimage.aws import clients
from fleetimage.aws.credentials import AccountCredentials, account_session
from fleetimage.mock import MockConfig

REGIONS = ("us-east-1", "eu-west-1")


def _config(scale: float) -> Any:
    return parse_config(
        {
            "targets": [{"regions": list(REGIONS), "all_instances": True}],
            "limits": {
                "CreateImage": {"burst": 50, "rate_per_s": 5 * scale},
                "DescribeImages": {"burst": 100, "rate_per_s": 20 * scale},
                "DescribeInstances": {"burst": 100, "rate_per_s": 20 * scale},
            },
            "wait": {"poll_interval_s": 0.05, "timeout_s": 60, "not_found_grace_s": 5},
        }
    )


def _credentials() -> AccountCredentials:
    return AccountCredentials(AioCredentials("AKIDEXAMPLE", "secret"), label="test", own=True)


def test_an_account_session_keeps_the_profile_and_the_variables_set_on_the_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file = tmp_path / "config"
    config_file.write_text(f"[profile prod]\nca_bundle = {DEFAULT_CA_BUNDLE}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config_file))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    base = clients.new_session(profile="prod")
    base.set_config_variable("metadata_service_timeout", 7)
    session = account_session(base, _credentials())
    assert session.profile == "prod"
    assert session.get_config_variable("ca_bundle") == DEFAULT_CA_BUNDLE
    assert session.get_config_variable("metadata_service_timeout") == 7
    # Its answers are parsed and its models loaded as the base's are.
    for component in ("data_loader", "response_parser_factory"):
        assert session.get_component(component) is base.get_component(component)
    # A handler registered on the account's session later is its own, not the base's.
    session.register("before-call.ec2.CreateImage", lambda **_: None, unique_id="lane-only")
    assert account_session(base, _credentials()).get_component("event_emitter") is not (
        session.get_component("event_emitter")
    )


@pytest.mark.parametrize("make", [clients.new_session, get_session], ids=["ours", "stock"])
async def test_a_callers_hooks_see_every_lanes_calls(fleet_mock: Any, make: Any) -> None:
    """botocore's own session too (its stock parser and full model): used as given."""
    mock = await fleet_mock(
        MockConfig(
            regions=REGIONS,
            instances_per_region=20,
            seed=3,
            time_scale=50,
            pending_s=0.5,
            state_mix={"running": 1.0},
        )
    )
    session: AioSession = make()
    calls: Counter[tuple[str, str]] = Counter()

    def seen(model: Any, context: Any, **_: Any) -> None:
        calls[(model.name, context["client_region"])] += 1

    session.register("before-call.ec2", seen)
    report = await image_fleet(_config(50), endpoint_url=mock.endpoint_url, session=session)
    assert report.counts["available"] == 40
    for region in REGIONS:
        assert calls[("CreateImage", region)] == 20
        assert calls[("DescribeInstances", region)] >= 1
        assert calls[("DescribeImages", region)] >= 1
