"""A session's models are loaded once per service, in a worker thread, whatever the number of
clients made at once (aws/loading.py): through real aiobotocore clients on 127.0.0.1."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

from fleetimage.aws import clients
from fleetimage.aws.credentials import AccountCredentials, account_session
from fleetimage.mock import MockConfig

REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2")


async def test_the_first_wave_of_clients_loads_each_model_once_off_the_loop(
    mock_ec2: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    mock = await mock_ec2(MockConfig(regions=list(REGIONS), instances_per_region=2))
    session = clients.new_session()
    loop_thread = threading.get_ident()
    loads: list[tuple[str | None, bool]] = []  # (service, loaded on the loop's thread?)
    load = session.warm_up_loader_caches

    def counted(service: str | None = None, api_version: str | None = None) -> None:
        loads.append((service, threading.get_ident() == loop_thread))
        load(service, api_version)

    monkeypatch.setattr(session, "warm_up_loader_caches", counted)
    config = clients.client_config(max_pool_connections=2, request_timeout_s=10)
    creds = mock.credentials()
    own = clients.Credentials(creds["aws_access_key_id"], creds["aws_secret_access_key"])
    found: list[int] = []

    async def lane(region: str) -> None:
        async with clients.ec2_client(
            session, region=region, endpoint_url=mock.endpoint_url, config=config, credentials=own
        ) as ec2:
            page = await ec2.describe_instances()
            found.append(sum(len(r["Instances"]) for r in page["Reservations"]))

    async with anyio.create_task_group() as tg:
        for i in range(24):  # an organisation's first wave: many lanes' clients at once
            tg.start_soon(lane, REGIONS[i % len(REGIONS)])
    assert found == [2] * 24
    assert loads == [("ec2", False)]

    # An account's session shares its base session's loader: its clients load nothing again.
    signing = AccountCredentials(await session.get_credentials(), label="test", own=True)
    account = account_session(session, signing)
    monkeypatch.setattr(account, "warm_up_loader_caches", counted)
    async with clients.ec2_client(
        account, region=REGIONS[0], endpoint_url=mock.endpoint_url, config=config
    ):
        pass
    assert loads == [("ec2", False)]
