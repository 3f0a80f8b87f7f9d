"""Secrets never leave: a run with recognisable fake credentials (env, and AssumeRole's from the
mock) is grepped everywhere it writes or shows — logs in both formats, the report as JSON and
CSV, the journal's database bytes, failure messages, and ``repr`` of what the API hands out.
Also: the mock refuses to bind anything but loopback.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
import structlog

from fleetimage import MockError, image_fleet, parse_config
from fleetimage.aws import clients as clients_module
from fleetimage.core.models import Event
from fleetimage.mock import FaultConfig, MockConfig, MockEC2, MockEC2Thread, serve
from fleetimage.output.logs import LogSubscriber, configure_logging

OWN = "123456789012"
ROLE_ACCOUNT = "210987654321"
DENIED_ACCOUNT = "333333333333"
# Recognisable fakes, shaped like the real things (AKIA + 16, 40-char secret, Fwo/IQo token).
ACCESS_KEY = f"AKIA{OWN}CNRY"
SECRET_KEY = "CanarySecretKey/0123456789+abcdefghijklm"
SESSION_TOKEN = "FwoGZXIvYXdzECanarySessionToken" + "Zz9" * 60
assert len(SECRET_KEY) == 40


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)


@pytest.fixture
def assumed(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every Credentials object AssumeRole handed the engine (to grep for its secrets)."""
    seen: list[Any] = []
    original = clients_module.assume_role

    async def spy(*args: Any, **kwargs: Any) -> Any:
        creds = await original(*args, **kwargs)
        seen.append(creds)
        return creds

    monkeypatch.setattr(clients_module, "assume_role", spy)
    return seen


@pytest.fixture
def restore_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def _secrets(assumed: list[Any]) -> list[str]:
    out = [ACCESS_KEY, SECRET_KEY, SESSION_TOKEN]
    for creds in assumed:
        out += [creds.access_key_id, creds.secret_access_key]
        if creds.session_token:
            out.append(creds.session_token)
    return out


def _journal_files(db: Path) -> dict[str, bytes]:
    """The journal database, its WAL and shared memory, as bytes."""
    out = {}
    for suffix in ("", "-wal", "-shm"):
        file = Path(f"{db}{suffix}")
        if file.exists():
            out[file.name] = file.read_bytes()
    assert db.name in out
    return out


def _fragments(secret: str) -> list[str]:
    """The secret, and a distinctive slice of it (a leak may be cut or re-wrapped)."""
    return [secret, secret[4:20]] if len(secret) > 24 else [secret]


@pytest.mark.parametrize("fmt", ["json", "console"])
async def test_no_secret_in_logs_report_journal_errors_or_reprs(
    mock_ec2: Any,
    secret_env: None,
    assumed: list[Any],
    restore_structlog: None,
    tmp_path: Path,
    fmt: Literal["json", "console"],
) -> None:
    denied = f"arn:aws:iam::{DENIED_ACCOUNT}:role/denied"
    mock = await mock_ec2(
        MockConfig(
            regions=("us-east-1", "eu-west-1"),
            accounts=(OWN, ROLE_ACCOUNT, DENIED_ACCOUNT),
            instances_per_region=12,
            seed=5,
            pending_s=0.05,
            failure_rate=0.2,
            denied_roles=frozenset({denied}),
            # EC2 only: STS calls are not retried today (see test_hostile's transient-STS test).
            faults=FaultConfig(
                internal_error=0.05,
                throttle=0.05,
                lost_answer=0.03,
                actions=frozenset({"CreateImage", "DescribeImages", "DescribeInstances"}),
            ),
        )
    )
    stream = io.StringIO()
    configure_logging(fmt=fmt, level="debug", stream=stream)
    raw_config = {
        "targets": [
            {"regions": ["us-east-1", "eu-west-1"], "all_instances": True},
            {
                "regions": ["us-east-1", "eu-west-1"],
                "all_instances": True,
                "accounts": [
                    {"role_arn": f"arn:aws:iam::{ROLE_ACCOUNT}:role/fleetimage"},
                    {"role_arn": denied, "external_id": "ext-id-not-secret"},
                ],
            },
        ],
        "image": {"copy_instance_tags": True, "tags": {"Owner": "ops"}},
        "wait": {"poll_interval_s": 0.05, "timeout_s": 30, "not_found_grace_s": 2},
        "retry": {"base_delay_s": 0.01, "max_delay_s": 0.05},
        "max_errors": "100%",
    }
    config = parse_config(raw_config)
    events: list[Event] = []
    journal_path = tmp_path / "journal.sqlite3"
    report = await image_fleet(
        config,
        journal=journal_path,
        endpoint_url=mock.endpoint_url,
        on_event=[LogSubscriber(), events.append],
        run_id="secrets-run",
    )

    # The run really exercised both credential paths, failures and retries.
    assert len(assumed) == 1  # the denied role got no credentials
    assert report.counts["available"] > 0 and report.failures()
    assert {f.error_code for f in report.lane_failures} == {"AccessDenied"}
    assert mock.count(account=ROLE_ACCOUNT, action="CreateImage") > 0
    assert mock.count(account=OWN, action="CreateImage") > 0

    report.write(tmp_path / "report.json")
    report.write(tmp_path / "report.csv")
    logs = stream.getvalue()
    assert logs.count("\n") > 50  # every event became a line
    outputs: dict[str, str | bytes] = {
        f"logs ({fmt})": logs,
        "report.json": (tmp_path / "report.json").read_text(),
        "report.csv": (tmp_path / "report.csv").read_text(),
        "errors": "\n".join(f"{r.error_code}: {r.error_message}" for r in report.failures())
        + "\n".join(f"{f.error_code}: {f.error_message}" for f in report.lane_failures),
        "repr(report)": repr(report),
        "repr(events)": "\n".join(repr(e) for e in events),
        "repr(config)": repr(config) + str(config.model_dump()),
        "repr(credentials)": "".join(repr(c) + str(c) for c in assumed),
    }
    outputs.update(_journal_files(journal_path))
    leaks = []
    for secret in _secrets(assumed):
        for fragment in _fragments(secret):
            for where, text in outputs.items():
                hay = text if isinstance(text, bytes) else text.encode()
                if fragment.encode() in hay:
                    leaks.append((where, fragment[:12] + "..."))
    assert not leaks, leaks


def test_credentials_repr_is_redacted() -> None:
    creds = clients_module.Credentials(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)
    for shown in (repr(creds), str(creds), f"{creds}", repr([creds]), repr({"c": creds})):
        for secret in (ACCESS_KEY, SECRET_KEY, SESSION_TOKEN):
            assert secret not in shown


def test_log_redaction_masks_secret_shaped_values(restore_structlog: None) -> None:
    stream = io.StringIO()
    configure_logging(fmt="json", level="debug", stream=stream)
    log = structlog.get_logger("fleetimage")
    log.info(
        "oops",
        message=f"failed with key {ACCESS_KEY} and {SECRET_KEY}",
        aws_secret_access_key=SECRET_KEY,
        nested={"SessionToken": SESSION_TOKEN, "note": f"token={SESSION_TOKEN}"},
        items=[ACCESS_KEY],
    )
    text = stream.getvalue()
    for secret in (ACCESS_KEY, SECRET_KEY, SESSION_TOKEN):
        assert secret not in text
    assert "oops" in text


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "example.com", "", "[::]"]
)
def test_mock_refuses_to_bind_anything_but_loopback(host: str) -> None:
    with pytest.raises(MockError, match="loopback"):
        MockEC2(host=host)
    with pytest.raises(MockError, match="loopback"):
        MockEC2Thread(host=host)
    with pytest.raises(MockError, match="loopback"):
        serve(host=host)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_mock_accepts_loopback(host: str) -> None:
    assert MockEC2(host=host).host in ("127.0.0.1", "::1", "127.0.0.2")
