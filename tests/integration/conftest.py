"""Fixtures for the integration tests: the mock as the caller's own account, and a second,
independent EC2 emulation (moto)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from fleetimage.mock import MockConfig, MockEC2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """moto's server mode on 127.0.0.1 (a fresh one per test module)."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def fleet_mock(mock_ec2: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A mock whose first account is the caller's own (env credentials point at it)."""

    async def factory(config: MockConfig) -> MockEC2:
        mock: MockEC2 = await mock_ec2(config)
        for key, value in mock.credentials(mock.config.accounts[0]).items():
            monkeypatch.setenv(key.upper(), value)
        return mock

    return factory
