"""The mock as a server: SigV4 scope, accounts, STS, loopback-only binding, config
validation, introspection over HTTP, the thread runner and the CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import aiohttp
import pytest
from botocore.exceptions import ClientError

from fleetimage.core.errors import MockError
from fleetimage.mock import FaultConfig, MockConfig, MockEC2, MockEC2Thread

ACCOUNT = "123456789012"
OTHER = "210987654321"
SCOPE = "AWS4-HMAC-SHA256 Credential=AKIA123456789012XXXX/20261127/{region}/{service}/aws4_request, SignedHeaders=host, Signature=00"


async def raw_post(mock: MockEC2, body: str, authorization: str | None) -> tuple[int, str]:
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    if authorization:
        headers["Authorization"] = authorization
    async with (
        aiohttp.ClientSession() as http,
        http.post(mock.endpoint_url + "/", data=body, headers=headers) as resp,
    ):
        return resp.status, await resp.text()


async def test_no_sigv4_is_auth_failure_and_unknown_action_invalid(mock_ec2: Any) -> None:
    mock = await mock_ec2(MockConfig())
    status, text = await raw_post(mock, "Action=DescribeInstances&Version=2016-11-15", None)
    assert status == 401 and "<Code>AuthFailure</Code>" in text and "<RequestID>" in text
    basic = "Basic dXNlcjpwYXNz"
    status, text = await raw_post(mock, "Action=DescribeInstances&Version=2016-11-15", basic)
    assert status == 401
    ec2_scope = SCOPE.format(region="us-east-1", service="ec2")
    status, text = await raw_post(mock, "Action=RunInstances&Version=2016-11-15", ec2_scope)
    assert status == 400 and "<Code>InvalidAction</Code>" in text
    status, text = await raw_post(mock, "Action=DescribeInstances&Version=2016-11-15", ec2_scope)
    assert status == 200 and "<DescribeInstancesResponse" in text
    assert 'xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"' in text
    sts_scope = SCOPE.format(region="us-east-1", service="sts")
    status, text = await raw_post(mock, "Action=GetFederationToken&Version=2011-06-15", sts_scope)
    assert status == 400 and "<ErrorResponse" in text and "InvalidAction" in text


async def test_sts_assume_role_lands_in_the_role_account(
    mock_ec2: Any, ec2_client: Any, sts_client: Any
) -> None:
    mock = await mock_ec2(MockConfig(accounts=(ACCOUNT, OTHER), instances_per_region=4, seed=9))
    async with sts_client(mock) as sts:
        me = await sts.get_caller_identity()
        assert me["Account"] == ACCOUNT and me["Arn"].startswith(f"arn:aws:iam::{ACCOUNT}:")
        resp = await sts.assume_role(
            RoleArn=f"arn:aws:iam::{OTHER}:role/path/fleetimage", RoleSessionName="run-1"
        )
    creds = resp["Credentials"]
    assert creds["AccessKeyId"].startswith(f"ASIA{OTHER}") and len(creds["AccessKeyId"]) == 20
    assert creds["SecretAccessKey"] and creds["SessionToken"] and creds["Expiration"]
    assert resp["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{OTHER}:assumed-role/fleetimage/run-1"
    assumed = {
        "aws_access_key_id": creds["AccessKeyId"],
        "aws_secret_access_key": creds["SecretAccessKey"],
        "aws_session_token": creds["SessionToken"],
    }
    async with sts_client(mock, credentials=assumed) as sts:
        who = await sts.get_caller_identity()
        assert who["Account"] == OTHER and who["Arn"] == resp["AssumedRoleUser"]["Arn"]
    async with ec2_client(mock, "us-east-1", credentials=assumed) as ec2:
        found = await ec2.describe_instances()
    ids = [i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]]
    assert ids == [r["instance_id"] for r in mock.instances(OTHER, "us-east-1")]
    assert mock.count(action="DescribeInstances", account=OTHER) == 1


async def test_sts_denied_and_malformed(mock_ec2: Any, sts_client: Any) -> None:
    denied_role = f"arn:aws:iam::{OTHER}:role/denied"
    mock = await mock_ec2(MockConfig(denied_roles=frozenset({denied_role, "333333333333"})))
    async with sts_client(mock) as sts:
        for arn, code, status in (
            (denied_role, "AccessDenied", 403),
            ("arn:aws:iam::333333333333:role/any", "AccessDenied", 403),
            ("arn:aws:iam::12345:role/short-account", "ValidationError", 400),
            ("arn:aws:iam::123456789012:user/not-a-role", "ValidationError", 400),
        ):
            with pytest.raises(ClientError) as exc:
                await sts.assume_role(RoleArn=arn, RoleSessionName="s1")
            resp: Any = exc.value.response
            assert (resp["Error"]["Code"], resp["ResponseMetadata"]["HTTPStatusCode"]) == (
                code,
                status,
            )
            assert resp["Error"]["Type"] == "Sender"
        ok = await sts.assume_role(RoleArn=f"arn:aws:iam::{OTHER}:role/fine", RoleSessionName="s1")
        assert ok["Credentials"]["AccessKeyId"].startswith(f"ASIA{OTHER}")


def test_loopback_only() -> None:
    for host in ("0.0.0.0", "10.0.0.1", "::", "example.com", "192.168.1.1"):
        with pytest.raises(MockError):
            MockEC2(MockConfig(), host=host)
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        MockEC2(MockConfig(), host=host)


async def test_binds_loopback_addresses(mock_ec2: Any) -> None:
    mock = MockEC2(MockConfig(), host="localhost")
    async with mock:
        assert mock.endpoint_url.startswith("http://127.0.0.1:")
    with pytest.raises(MockError):
        _ = mock.endpoint_url


@pytest.mark.parametrize(
    "kwargs",
    [
        {"regions": ()},
        {"regions": "us-east-1"},
        {"regions": ("Mars",)},
        {"accounts": ("1234",)},
        {"instances_per_region": -1},
        {"time_scale": 0},
        {"pending_s": -1},
        {"failure_rate": 1.5},
        {"neighbour_load": -0.1},
        {"limits": {"CreateImage": (1,)}},
        {"limits": {"CreateImage": (-1, 1)}},
        {"state_mix": {"exploded": 1.0}},
        {"state_mix": {"running": 0.0}},
        {"deregistered_listed_s": -1},
        {"ignore_dry_run": "yes"},
        {"duplicate_message_without_id": 1},
        {"create_image_answer_without_id": None},
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(MockError):
        MockConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"internal_error": 2.0},
        {"reset": -0.5},
        {"throttle": 0.6, "unavailable": 0.6},
        {"slow_s": -1},
    ],
)
def test_fault_config_rejects_bad_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(MockError):
        FaultConfig(**kwargs)


async def test_http_introspection(mock_ec2: Any, ec2_client: Any) -> None:
    mock = await mock_ec2(MockConfig(instances_per_region=0, pending_s=0.0))
    iid = mock.add_instance(ACCOUNT, "us-east-1")
    async with ec2_client(mock, "us-east-1") as ec2:
        await ec2.create_image(InstanceId=iid, Name="one")
        await ec2.create_image(InstanceId=iid, Name="two")
    async with aiohttp.ClientSession() as http:
        async with http.get(mock.endpoint_url + "/_mock/counters") as resp:
            counters = await resp.json()
        assert {
            "account": ACCOUNT,
            "region": "us-east-1",
            "action": "CreateImage",
            "outcome": "ok",
            "count": 2,
        } in counters
        async with http.get(mock.endpoint_url + "/_mock/images") as resp:
            assert await resp.json() == [
                {"account": ACCOUNT, "region": "us-east-1", "states": {"available": 2}}
            ]
        async with http.get(mock.endpoint_url + "/_mock/duplicates") as resp:
            assert await resp.json() == [
                {"account": ACCOUNT, "region": "us-east-1", "instance_id": iid, "images": 2}
            ]
        async with http.post(mock.endpoint_url + "/_mock/reset") as resp:
            assert resp.status == 200
        async with http.get(mock.endpoint_url + "/_mock/nope") as resp:
            assert resp.status == 404
    assert mock.counters == {} and mock.images(ACCOUNT, "us-east-1") == []


async def test_thread_runner(ec2_client: Any) -> None:
    with MockEC2Thread(MockConfig(instances_per_region=3)) as thread:
        iid = thread.call(lambda m: m.add_instance(ACCOUNT, "us-east-1"))
        async with ec2_client(
            thread.endpoint_url, "us-east-1", credentials=thread.credentials()
        ) as ec2:
            resp = await ec2.describe_instances(InstanceIds=[iid])
        assert resp["Reservations"][0]["Instances"][0]["InstanceId"] == iid
        assert thread.count(action="DescribeInstances") == 1
    with pytest.raises(MockError):
        thread.call(lambda m: None)


async def test_cli_mock_serve_prints_endpoint_and_serves(ec2_client: Any) -> None:
    args = ["mock", "serve", "--regions", "us-east-1,eu-west-1", "--instances-per-region", "3"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from fleetimage.cli import main; main()",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert first.startswith("mock EC2 listening on http://127.0.0.1:")
        url = first.split()[-1]
        lines = [(await proc.stdout.readline()).decode() for _ in range(4)]
        assert f"export AWS_ENDPOINT_URL_EC2={url}\n" in lines
        assert f"export AWS_ENDPOINT_URL_STS={url}\n" in lines
        async with ec2_client(url, "eu-west-1") as ec2:
            resp = await ec2.describe_instances()
        assert sum(len(r["Instances"]) for r in resp["Reservations"]) == 3
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


def test_cli_refuses_non_loopback() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from fleetimage.cli import main; main()",
            "mock",
            "serve",
            "--host",
            "0.0.0.0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "loopback" in proc.stderr
