"""Credentials resolved before any table: none found, or rejected by the (mock) STS, is one
line with the fix, exit 2, and no EC2 call (none at all when nothing was found)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import botocore.exceptions
import pytest
from cli_helpers import (
    MockFactory,
    Ran,
    cli,
    cli_command,
    fleet_config,
    one_line_error,
    write_config,
)

from fleetimage.aws.clients import to_aws_error
from fleetimage.aws.identity import credentials_problem
from fleetimage.core.errors import AwsError

FAKE_ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"  # what the root conftest puts in the environment
FAKE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def _no_secrets(ran: Ran) -> None:
    assert FAKE_ACCESS_KEY not in ran.output and FAKE_SECRET not in ran.output


def test_no_credentials_at_all(mock_thread: MockFactory, tmp_path: Path) -> None:
    """An empty environment: no AWS_* variables, a HOME without ~/.aws."""
    mock = mock_thread()
    cfg = write_config(tmp_path / "fleet.yaml", fleet_config())
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["HOME"] = str(home)
    # The one AWS_* variable kept: no instance-metadata lookup, so the test cannot pick up a
    # real instance role if it ever runs on EC2.
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    for command in (["plan"], ["run", "--yes", "--journal", tmp_path / "j.sqlite3"]):
        done = subprocess.run(
            cli_command(*command, "-c", cfg, "--endpoint-url", mock.endpoint_url),
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        ran = Ran(done.returncode, done.stdout, done.stderr)
        assert ran.code == 2, ran.output
        line = one_line_error(ran)
        assert line.startswith("error: no AWS credentials found; provide them with AWS_PROFILE")
        assert "aws sso login" in line and "AWS_ACCESS_KEY_ID" in line
        assert "nothing was sent" in line and not ran.stdout
    assert mock.count() == 0  # not even STS


def test_rejected_keys(mock_thread: MockFactory, tmp_path: Path) -> None:
    mock = mock_thread(rejected_access_keys=frozenset({FAKE_ACCESS_KEY}))
    cfg = write_config(tmp_path / "fleet.yaml", fleet_config())
    for command in (["plan"], ["run", "--yes"], ["plan", "--json"]):
        ran = cli(*command, "-c", cfg, "--endpoint-url", mock.endpoint_url)
        assert ran.code == 2, ran.output
        line = one_line_error(ran)
        assert "AWS rejected the AWS_ACCESS_KEY_ID in the environment (InvalidClientTokenId" in line
        assert "nothing was sent" in line and not ran.stdout
        _no_secrets(ran)
    assert mock.count(action="GetCallerIdentity") == 3  # one per command, nothing else
    assert mock.count() == 3


def test_rejected_profile_is_named(
    mock_thread: MockFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mock = mock_thread(rejected_access_keys=frozenset({"AKIAPROFILEKEY0000000"}))
    creds = tmp_path / "credentials"
    creds.write_text(
        "[ops]\naws_access_key_id = AKIAPROFILEKEY0000000\naws_secret_access_key = s3cr3t\n"
    )
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_PROFILE", "ops")
    cfg = write_config(tmp_path / "fleet.yaml", fleet_config())
    ran = cli("plan", "-c", cfg, "--endpoint-url", mock.endpoint_url)
    assert ran.code == 2
    line = one_line_error(ran)
    assert "AWS rejected profile 'ops' (InvalidClientTokenId" in line
    assert "s3cr3t" not in ran.output and "AKIAPROFILEKEY" not in ran.output


def test_accepted_keys_plan_as_before(mock_thread: MockFactory, tmp_path: Path) -> None:
    mock = mock_thread()
    cfg = write_config(tmp_path / "fleet.yaml", fleet_config())
    ran = cli("plan", "-c", cfg, "--endpoint-url", mock.endpoint_url)
    assert ran.code == 0, ran.output
    assert mock.count(action="GetCallerIdentity") == 2  # the check, then the plan's own


def _client_error(code: str, status: int = 403) -> Exception:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "GetCallerIdentity",
    )


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (_client_error("SignatureDoesNotMatch"), "AWS rejected"),
        (_client_error("InvalidClientTokenId"), "AWS rejected"),
        (_client_error("ExpiredToken"), "they have expired (ExpiredToken)"),
        (botocore.exceptions.UnauthorizedSSOTokenError(), "SSO session"),
        (botocore.exceptions.SSOTokenLoadError(error_msg="x"), "aws sso login --profile"),
        (botocore.exceptions.NoCredentialsError(), "no AWS credentials found"),
    ],
)
def test_classification(exc: Exception, expected: str) -> None:
    problem = credentials_problem(to_aws_error(exc, "GetCallerIdentity"))
    assert problem is not None and expected in str(problem)
    assert "nothing was sent" in str(problem)


def test_other_failures_are_left_to_planning() -> None:
    assert (
        credentials_problem(AwsError("Throttling", "Rate exceeded", action="GetCallerIdentity"))
        is None
    )
    assert credentials_problem(to_aws_error(_client_error("InternalFailure", 500), "x")) is None
