"""Each account's session (its own credentials, renewed on their own schedule) is the caller's
session in everything else: its profile's settings (a CA bundle, a proxy), variables set on
it, its event handlers, its answer parser. (That a caller's hooks see every lane's calls on
the wire: tests/integration/test_engine.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiobotocore.credentials import AioCredentials
from botocore.httpsession import DEFAULT_CA_BUNDLE

from fleetimage.aws import clients
from fleetimage.aws.credentials import AccountCredentials, account_session


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
