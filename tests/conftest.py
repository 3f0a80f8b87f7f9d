"""Shared fixtures: never touch real AWS; a mock EC2 endpoint factory; client factories."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session

from fleetimage.cli.demo import AWS_ENV_DROP
from fleetimage.mock import MockConfig, MockEC2

# AWS's documented example key: no 12-digit account in it, so the mock maps it to its
# default account (MockConfig.accounts[0]).
FAKE_ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
FAKE_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

_UNSET = (*AWS_ENV_DROP, "AWS_CA_BUNDLE")


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Fake credentials, empty config files, no IMDS: no test can ever reach real AWS."""
    empty = tmp_path_factory.getbasetemp() / "aws-empty-config"
    if not empty.exists():
        empty.write_text("")
    for name in _UNSET:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(Path(empty)))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(Path(empty)))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # Cut EC2 models are kept in the test run's own directory, not the user's cache.
    monkeypatch.setenv("FLEETIMAGE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "models"))


MockFactory = Callable[[MockConfig | None], Awaitable[MockEC2]]


@pytest.fixture
async def mock_ec2() -> AsyncIterator[MockFactory]:
    """``mock = await mock_ec2(MockConfig(...))``: a started mock on 127.0.0.1, closed at
    teardown. Call it more than once for several mocks."""
    started: list[MockEC2] = []

    async def factory(config: MockConfig | None = None) -> MockEC2:
        mock = await MockEC2(config, host="127.0.0.1", port=0).start()
        started.append(mock)
        return mock

    yield factory
    for mock in reversed(started):
        await mock.close()


_SESSION: AioSession | None = None


def aws_session() -> AioSession:
    """One aiobotocore session for the whole test run (its loader caches are expensive)."""
    global _SESSION
    if _SESSION is None:
        _SESSION = get_session()
    return _SESSION


def client_config(**overrides: Any) -> AioConfig:
    """No botocore retries (tests see every error), short timeouts."""
    kwargs: dict[str, Any] = {
        "retries": {"total_max_attempts": 1},
        "connect_timeout": 5,
        "read_timeout": 10,
    }
    kwargs.update(overrides)
    return AioConfig(**kwargs)


ClientFactory = Callable[..., contextlib.AbstractAsyncContextManager[Any]]


@contextlib.asynccontextmanager
async def open_client(
    mock: MockEC2 | str,
    region: str = "us-east-1",
    account: str | None = None,
    *,
    service: str = "ec2",
    credentials: dict[str, str] | None = None,
    config: AioConfig | None = None,
) -> AsyncIterator[Any]:
    """A real aiobotocore client for ``service`` pointed at the mock (or any endpoint URL).

    ``credentials`` (aws_access_key_id, aws_secret_access_key[, aws_session_token]) win over
    ``account``; by default the mock's credentials for ``account`` (or its default account).
    """
    if isinstance(mock, MockEC2):
        endpoint = mock.endpoint_url
        creds = credentials or mock.credentials(account)
    else:
        endpoint = mock
        creds = credentials or {
            "aws_access_key_id": FAKE_ACCESS_KEY,
            "aws_secret_access_key": FAKE_SECRET_KEY,
        }
    async with aws_session().create_client(
        service,
        region_name=region,
        endpoint_url=endpoint,
        config=config or client_config(),
        **creds,
    ) as client:
        yield client


@pytest.fixture
def ec2_client() -> ClientFactory:
    """``async with ec2_client(mock, region, account=None) as ec2`` (also ``service="sts"``)."""
    return open_client


@pytest.fixture
def sts_client() -> ClientFactory:
    """``async with sts_client(mock, account=None) as sts``."""

    def factory(mock: MockEC2 | str, account: str | None = None, **kwargs: Any) -> Any:
        return open_client(mock, "us-east-1", account, service="sts", **kwargs)

    return factory
