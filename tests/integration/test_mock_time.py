"""The mock makes time real: expiring AssumeRole sessions (and renewal through botocore's
refreshable credentials), outage windows, scheduled instance changes, answer latency.

Everything goes through the real aiobotocore client against the mock on 127.0.0.1. Waits are
on the mock's own clock (``mock.aws_now()``), bounded; timing bounds are >= 10x the expected.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.credentials import AioRefreshableCredentials
from aiobotocore.session import get_session
from botocore.credentials import CredentialProvider
from botocore.exceptions import ClientError

from fleetimage.core.errors import MockError
from fleetimage.mock import InstanceEvent, MockConfig, MockEC2, Outage
from fleetimage.mock.cli import _outage, _pairs

ACCOUNT = "123456789012"
OTHER = "210987654321"
ROLE = f"arn:aws:iam::{OTHER}:role/fleetimage"
LONG_ROLE = f"arn:aws:iam::{OTHER}:role/long"
REGION = "us-east-1"


def cfg(**overrides: Any) -> AioConfig:
    kwargs: dict[str, Any] = {
        "retries": {"total_max_attempts": 1},
        "connect_timeout": 5,
        "read_timeout": 10,
    }
    kwargs.update(overrides)
    return AioConfig(**kwargs)


def code_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    resp: Any = exc.value.response
    return resp["Error"]["Code"], resp["ResponseMetadata"]["HTTPStatusCode"]


async def until_aws(mock: MockEC2, aws_t: float, bound_s: float = 30.0) -> None:
    """Sleep until the mock's AWS clock reaches ``aws_t`` (at most ``bound_s`` wall)."""
    deadline = time.monotonic() + bound_s
    while mock.aws_now() < aws_t:
        assert time.monotonic() < deadline, f"AWS time {aws_t} never came"
        await asyncio.sleep(min(0.05, (aws_t - mock.aws_now()) / mock.config.time_scale + 0.001))


def creds_of(answer: dict[str, Any]) -> dict[str, str]:
    c = answer["Credentials"]
    return {
        "aws_access_key_id": c["AccessKeyId"],
        "aws_secret_access_key": c["SecretAccessKey"],
        "aws_session_token": c["SessionToken"],
    }


# --- AssumeRole DurationSeconds --------------------------------------------------------------


async def test_assume_role_duration_rules(mock_ec2: Any, sts_client: Any) -> None:
    mock = await mock_ec2(
        MockConfig(accounts=(ACCOUNT, OTHER), role_max_session_s={LONG_ROLE: 43200})
    )
    # botocore checks the 900 minimum itself: switch its validation off to reach the server.
    async with sts_client(mock, config=cfg(parameter_validation=False)) as sts:
        for role, duration, expected in (
            (ROLE, 899, "Member must have value greater than or equal to 900"),
            (LONG_ROLE, 43201, "Member must have value less than or equal to 43200"),
            (ROLE, 3601, "exceeds the MaxSessionDuration set for this role."),
        ):
            with pytest.raises(ClientError) as exc:
                await sts.assume_role(RoleArn=role, RoleSessionName="s1", DurationSeconds=duration)
            assert code_of(exc) == ("ValidationError", 400)
            assert expected in str(exc.value)
            assert exc.value.response["Error"]["Type"] == "Sender"
        default = await sts.assume_role(RoleArn=ROLE, RoleSessionName="s1")
        long = await sts.assume_role(RoleArn=LONG_ROLE, RoleSessionName="s1", DurationSeconds=43200)
    now = datetime.now(UTC)
    assert 3590 < (default["Credentials"]["Expiration"] - now).total_seconds() <= 3600
    assert 43190 < (long["Credentials"]["Expiration"] - now).total_seconds() <= 43200
    # Role chaining: the caller signs with a session this mock issued -> at most one hour.
    async with sts_client(mock, credentials=creds_of(default)) as chained:
        with pytest.raises(ClientError) as exc:
            await chained.assume_role(RoleArn=LONG_ROLE, RoleSessionName="c1", DurationSeconds=3601)
        assert code_of(exc) == ("ValidationError", 400)
        assert "1 hour session limit for roles assumed by role chaining" in str(exc.value)
        await chained.assume_role(RoleArn=LONG_ROLE, RoleSessionName="c1", DurationSeconds=3600)
    assert mock.assume_role_count(ROLE) == 1
    assert mock.assume_role_count(LONG_ROLE) == 2
    assert mock.assume_role_count(account=OTHER) == 3 and mock.assume_role_count() == 3


# --- expiry -----------------------------------------------------------------------------------


async def test_session_expires_then_ec2_request_expired_and_sts_expired_token(
    mock_ec2: Any, ec2_client: Any, sts_client: Any
) -> None:
    # 900 AWS seconds at time_scale 300: 3 wall seconds.
    mock = await mock_ec2(
        MockConfig(accounts=(ACCOUNT, OTHER), time_scale=300, instances_per_region=2)
    )
    async with sts_client(mock) as sts:
        answer = await sts.assume_role(RoleArn=ROLE, RoleSessionName="s1", DurationSeconds=900)
    expiration = answer["Credentials"]["Expiration"]
    left = (expiration - datetime.now(UTC)).total_seconds()
    assert 2.0 < left <= 3.0  # the real UTC moment of expiry: 900 s / 300
    session = creds_of(answer)
    async with (
        ec2_client(mock, REGION, credentials=session) as ec2,
        sts_client(mock, credentials=session) as sts_s,
    ):
        await ec2.describe_instances()
        assert (await sts_s.get_caller_identity())["Account"] == OTHER
        # Expiration is the wall moment the key stops working: just past it, it has.
        await asyncio.sleep((expiration - datetime.now(UTC)).total_seconds() + 0.02)
        with pytest.raises(ClientError) as exc:
            await ec2.describe_instances()
        assert code_of(exc) == ("RequestExpired", 400) and "Request has expired." in str(exc.value)
        with pytest.raises(ClientError) as exc:
            await sts_s.get_caller_identity()
        assert code_of(exc) == ("ExpiredToken", 403)
        assert "security token included in the request is expired" in str(exc.value)
    assert mock.count(outcome="expired", account=OTHER) == 2
    async with ec2_client(mock, REGION) as own:  # long-term keys never expire by default
        await own.describe_instances()


async def test_own_credentials_and_forced_expiry(
    mock_ec2: Any, ec2_client: Any, sts_client: Any
) -> None:
    mock = await mock_ec2(
        MockConfig(accounts=(ACCOUNT, OTHER), time_scale=100, own_credentials_expire_after_s=300)
    )
    async with ec2_client(mock, REGION) as ec2, ec2_client(mock, REGION, OTHER) as other:
        await ec2.describe_instances()
        await until_aws(mock, 300)  # 3 s wall
        with pytest.raises(ClientError) as exc:
            await ec2.describe_instances()
        assert code_of(exc) == ("RequestExpired", 400)
        mock.set_own_credentials_expiry(None)
        await ec2.describe_instances()
        # Any key can be expired at will, over HTTP too.
        key = mock.credentials(OTHER)["aws_access_key_id"]
        await other.describe_instances()
        async with aiohttp.ClientSession() as http:
            url = mock.endpoint_url + "/_mock/credentials/expire"
            async with http.post(url, json={"access_key_id": key}) as resp:
                assert resp.status == 200
            async with http.post(url, json={"nonsense": 1}) as resp:
                assert resp.status == 400
        with pytest.raises(ClientError) as exc:
            await other.describe_instances()
        assert code_of(exc) == ("RequestExpired", 400)
        await ec2.describe_instances()
    async with sts_client(mock) as sts:
        answer = await sts.assume_role(RoleArn=ROLE, RoleSessionName="s1")  # one hour
    async with ec2_client(mock, REGION, credentials=creds_of(answer)) as session:
        await session.describe_instances()
        assert mock.expire_all_session_credentials() == 1
        with pytest.raises(ClientError) as exc:
            await session.describe_instances()
        assert code_of(exc) == ("RequestExpired", 400)


# --- renewal through botocore's refreshable credentials ---------------------------------------


class _Provider(CredentialProvider):  # type: ignore[misc]
    """Hands the refreshable credentials to a session (aiobotocore awaits load())."""

    METHOD = "mock-assume-role"

    def __init__(self, creds: AioRefreshableCredentials) -> None:
        self.creds = creds

    async def load(self) -> AioRefreshableCredentials:
        return self.creds


async def _drive_refreshing_client(
    mock: MockEC2, sts_client: Any, margins: tuple[float, float] | None, wall_s: float
) -> int:
    """EC2 calls for ``wall_s`` seconds through credentials that renew with AssumeRole
    (900 s sessions); returns the number of calls. Every call must succeed."""
    async with sts_client(mock) as sts:

        async def refresh() -> dict[str, str]:
            c = (await sts.assume_role(RoleArn=ROLE, RoleSessionName="r1", DurationSeconds=900))[
                "Credentials"
            ]
            return {
                "access_key": c["AccessKeyId"],
                "secret_key": c["SecretAccessKey"],
                "token": c["SessionToken"],
                "expiry_time": c["Expiration"].isoformat(),
            }

        kwargs: dict[str, Any] = {}
        if margins is not None:
            kwargs = {"advisory_timeout": margins[0], "mandatory_timeout": margins[1]}
        creds = AioRefreshableCredentials.create_from_metadata(
            metadata=await refresh(), refresh_using=refresh, method=_Provider.METHOD, **kwargs
        )
        session = get_session()
        session.get_component("credential_provider").insert_before("env", _Provider(creds))
        calls = 0
        async with session.create_client(
            "ec2", region_name=REGION, endpoint_url=mock.endpoint_url, config=cfg()
        ) as ec2:
            deadline = time.monotonic() + wall_s
            while time.monotonic() < deadline:
                await ec2.describe_instances()  # never RequestExpired
                calls += 1
                await asyncio.sleep(0.05)
    return calls


async def test_refreshable_credentials_renew_across_expiries_without_a_storm(
    mock_ec2: Any, sts_client: Any
) -> None:
    # 900 s sessions at time_scale 600 = 1.5 s wall; margins scaled like the session
    # (AWS 450 s advisory / 300 s mandatory -> 0.75 / 0.5 wall s): a renewal every ~0.75 s.
    mock = await mock_ec2(
        MockConfig(accounts=(ACCOUNT, OTHER), time_scale=600, instances_per_region=1)
    )
    calls = await _drive_refreshing_client(mock, sts_client, (450 / 600, 300 / 600), 5.0)
    renewals = mock.assume_role_count(ROLE) - 1
    assert calls >= 20  # ran across >= 3 expiries
    assert 2 <= renewals <= 20, renewals  # ~7 expected; a storm would be one per call
    assert mock.count(outcome="expired") == 0


async def test_default_botocore_margins_refresh_on_every_call(
    mock_ec2: Any, sts_client: Any
) -> None:
    # botocore's default margins (900 s advisory, 600 s mandatory, in wall seconds) exceed a
    # 1.5 s session: every call renews. (Against AWS a 900 s session does the same.)
    mock = await mock_ec2(
        MockConfig(accounts=(ACCOUNT, OTHER), time_scale=600, instances_per_region=1)
    )
    calls = await _drive_refreshing_client(mock, sts_client, None, 1.0)
    assert mock.assume_role_count(ROLE) >= calls  # one AssumeRole per EC2 call (+ the first)


# --- outages ----------------------------------------------------------------------------------


async def test_outage_error_window_per_region_and_action(mock_ec2: Any, ec2_client: Any) -> None:
    window = Outage(start_s=200, end_s=400, region=REGION, action="DescribeInstances")
    mock = await mock_ec2(
        MockConfig(regions=(REGION, "eu-west-1"), time_scale=100, outages=(window,))
    )
    async with ec2_client(mock, REGION) as ec2, ec2_client(mock, "eu-west-1") as eu:
        # Making the clients and their first request can take seconds on a loaded machine,
        # past the window's start (2 s wall): warm them up outside the window's scope, then
        # restart the mock's clock so the call before the window is one request away.
        await ec2.describe_images(Owners=["self"])
        await eu.describe_instances()
        mock.reset()
        await ec2.describe_instances()
        await until_aws(mock, 210)
        with pytest.raises(ClientError) as exc:
            await ec2.describe_instances()
        assert code_of(exc) == ("Unavailable", 503)
        await ec2.describe_images(Owners=["self"])  # another action
        await eu.describe_instances()  # another region
        await until_aws(mock, 400)
        await ec2.describe_instances()
        # At run time: every action in every region, then cleared.
        now = mock.aws_now()
        mock.add_outage(Outage(start_s=now, end_s=now + 10_000))
        with pytest.raises(ClientError) as exc:
            await eu.describe_images(Owners=["self"])
        assert code_of(exc) == ("Unavailable", 503)
        mock.clear_outages()
        await eu.describe_images(Owners=["self"])
    assert mock.count(outcome="outage") == 2


async def test_outage_timeout_holds_then_drops_never_forever(
    mock_ec2: Any, ec2_client: Any
) -> None:
    # Window 0..500 AWS s at time_scale 100: held up to 5 s wall.
    mock = await mock_ec2(MockConfig(time_scale=100, outages=(Outage(0, 500, mode="timeout"),)))
    async with ec2_client(mock, REGION, config=cfg(read_timeout=0.3)) as impatient:
        started = time.monotonic()
        with pytest.raises(Exception) as exc:
            await impatient.describe_instances()
        assert "timeout" in type(exc.value).__name__.lower() or "timeout" in str(exc.value).lower()
        assert time.monotonic() - started < 3.0
    async with ec2_client(mock, REGION, config=cfg(read_timeout=60)) as patient:
        started = time.monotonic()
        with pytest.raises(Exception) as exc:  # dropped at the window's end, not answered
            await patient.describe_instances()
        assert not isinstance(exc.value, ClientError)
        assert time.monotonic() - started < 20.0
        assert mock.aws_now() >= 500
        await patient.describe_instances()  # the window is over
    # POST /_mock/outages adds one at run time; bad fields answer 400.
    async with aiohttp.ClientSession() as http:
        url = mock.endpoint_url + "/_mock/outages"
        async with http.post(url, json={"start_s": 0, "end_s": 1e9, "action": "CreateImage"}) as r:
            assert r.status == 200
        async with http.post(url, json={"start_s": 5, "end_s": 1}) as r:
            assert r.status == 400 and "end_s" in (await r.json())["error"]
        async with http.get(url) as r:
            listed = await r.json()
    assert [o["action"] for o in listed] == [None, "CreateImage"]


# --- scheduled instance changes ---------------------------------------------------------------


async def test_scheduled_termination_disappearance_and_untag(
    mock_ec2: Any, ec2_client: Any
) -> None:
    base = MockConfig(instances_per_region=3, state_mix={"running": 1.0}, seed=5, time_scale=100)
    gone, dying, untagged = (r["instance_id"] for r in MockEC2(base).instances(ACCOUNT, REGION))
    events = (
        InstanceEvent(at_s=200, instance_id=dying, state="terminated"),
        InstanceEvent(at_s=200, instance_id=gone, vanish=True),
        InstanceEvent(at_s=200, instance_id=untagged, remove_tags=frozenset({"Env"})),
    )
    mock = await mock_ec2(
        MockConfig(
            instances_per_region=3,
            state_mix={"running": 1.0},
            seed=5,
            time_scale=100,
            instance_events=events,
        )
    )
    pending = mock.add_instance(ACCOUNT, REGION, tags={"Env": "prod"})
    mock.add_instance_event(InstanceEvent(at_s=200, instance_id=pending, state="pending"))
    with pytest.raises(MockError):
        mock.add_instance_event(
            InstanceEvent(at_s=1, instance_id="i-0123456789abcdef0", state="stopped")
        )
    has_env = [{"Name": "tag-key", "Values": ["Env"]}]

    async def ids(ec2: Any, filters: list[dict[str, Any]]) -> set[str]:
        resp = await ec2.describe_instances(Filters=filters)
        return {i["InstanceId"] for r in resp["Reservations"] for i in r["Instances"]}

    async with ec2_client(mock, REGION) as ec2:
        assert await ids(ec2, has_env) == {gone, dying, untagged, pending}
        await until_aws(mock, 200)
        assert await ids(ec2, has_env) == {dying, pending}
        running = [{"Name": "instance-state-name", "Values": ["running"]}]
        assert await ids(ec2, running) == {untagged}
        with pytest.raises(ClientError) as exc:
            await ec2.describe_instances(InstanceIds=[gone])
        assert code_of(exc) == ("InvalidInstanceID.NotFound", 400)
        with pytest.raises(ClientError) as exc:
            await ec2.create_image(InstanceId=gone, Name="gone-image")
        assert code_of(exc) == ("InvalidInstanceID.NotFound", 400)
        for iid in (dying, pending):
            with pytest.raises(ClientError) as exc:
                await ec2.create_image(InstanceId=iid, Name=f"img-{iid}")
            assert code_of(exc) == ("InvalidParameterValue", 400)
            assert "not in a valid state" in str(exc.value)
        await ec2.create_image(InstanceId=untagged, Name="still-fine")
    async with aiohttp.ClientSession() as http:
        body = {"at_s": 0, "instance_id": untagged, "set_tags": {"Env": "dev"}}
        async with http.post(mock.endpoint_url + "/_mock/instance_events", json=body) as r:
            assert r.status == 200
        async with http.get(mock.endpoint_url + "/_mock/instance_events") as r:
            report = await r.json()
    assert report["pending"] == [] and len(report["applied"]) == 5
    assert {a["outcome"] for a in report["applied"]} >= {"vanished", "untagged Env", "tagged Env"}
    assert [
        r["tags"].get("Env")
        for r in mock.instances(ACCOUNT, REGION)
        if r["instance_id"] == untagged
    ] == ["dev"]


# --- latency ----------------------------------------------------------------------------------


async def test_latency_per_answer_per_region_and_not_blocking(
    mock_ec2: Any, ec2_client: Any
) -> None:
    # 30 AWS s base, +60 in eu-west-1, at time_scale 100: 0.3 s / 0.9 s wall.
    mock = await mock_ec2(
        MockConfig(
            regions=(REGION, "eu-west-1"),
            instances_per_region=1,
            time_scale=100,
            latency_s=30,
            region_latency_s={"eu-west-1": 60},
        )
    )
    async with (
        ec2_client(mock, REGION, config=cfg(max_pool_connections=40)) as ec2,
        ec2_client(mock, "eu-west-1") as eu,
    ):
        started = time.monotonic()
        await ec2.describe_instances()
        assert 0.3 <= time.monotonic() - started < 3.0
        started = time.monotonic()
        await eu.describe_instances()
        assert 0.9 <= time.monotonic() - started < 9.0
        # 30 concurrent answers wait together (the loop is never blocked): serial would be 9 s.
        started = time.monotonic()
        await asyncio.gather(*(ec2.describe_instances() for _ in range(30)))
        assert 0.3 <= time.monotonic() - started < 4.0
        async with aiohttp.ClientSession() as http:
            url = mock.endpoint_url + "/_mock/latency"
            async with http.post(url, json={"latency_s": 0, "region_latency_s": {}}) as r:
                assert (await r.json())["latency_s"] == 0
        started = time.monotonic()
        await eu.describe_instances()
        assert time.monotonic() - started < 0.3


def test_latency_jitter_is_uniform_seeded_and_clamped() -> None:
    config = MockConfig(latency_s=10, latency_jitter_s=4, seed=7)
    a, b = MockEC2(config).latency, MockEC2(config).latency
    draws = [a.draw(REGION) for _ in range(2000)]
    assert draws == [b.draw(REGION) for _ in range(2000)]  # reproducible
    assert min(draws) >= 6 and max(draws) <= 14 and 9.8 < sum(draws) / len(draws) < 10.2
    clamped = MockEC2(MockConfig(latency_s=1, latency_jitter_s=5)).latency
    assert min(clamped.draw(REGION) for _ in range(500)) == 0.0
    with pytest.raises(MockError):
        a.set(latency_s=-1)


# --- clock, config, CLI -------------------------------------------------------------------------


async def test_aws_clock_and_introspection(mock_ec2: Any, sts_client: Any) -> None:
    mock = await mock_ec2(MockConfig(accounts=(ACCOUNT, OTHER), time_scale=1000))
    await asyncio.sleep(0.1)
    assert 90 <= mock.aws_now() < 1000
    async with sts_client(mock) as sts:
        await sts.assume_role(RoleArn=ROLE, RoleSessionName="s1")
    async with aiohttp.ClientSession() as http:
        async with http.get(mock.endpoint_url + "/_mock/clock") as r:
            clock = await r.json()
        async with http.get(mock.endpoint_url + "/_mock/credentials") as r:
            creds = await r.json()
        async with http.post(mock.endpoint_url + "/_mock/latency", data=b"not json") as r:
            assert r.status == 400
    assert clock["time_scale"] == 1000 and clock["aws_now_s"] >= 90
    assert creds["assume_role"] == {ROLE: 1} and creds["assume_role_by_account"] == {OTHER: 1}
    assert creds["sessions"][0]["expires_at_s"] - creds["sessions"][0]["issued_at_s"] == 3600
    mock.reset()
    assert mock.aws_now() < 100 and mock.assume_role_count() == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"role_max_session_s": {ROLE: 100}},
        {"role_max_session_s": {ROLE: 43201}},
        {"role_max_session_s": {"arn:aws:iam::1:user/x": 3600}},
        {"own_credentials_expire_after_s": -1},
        {"outages": ("all day",)},
        {"latency_s": -1},
        {"latency_jitter_s": math.nan},
        {"latency_s": math.inf},
        {"region_latency_s": {"Mars": 1}},
    ],
)
def test_config_rejects_bad_time_knobs(kwargs: dict[str, Any]) -> None:
    with pytest.raises(MockError) as exc:
        MockConfig(**kwargs)
    assert f"MockConfig.{next(iter(kwargs))}" in str(exc.value)


@pytest.mark.parametrize(
    ("kind", "kwargs", "field"),
    [
        (Outage, {"start_s": 10, "end_s": 5}, "end_s"),
        (Outage, {"start_s": 0, "end_s": 5, "mode": "hang"}, "mode"),
        (Outage, {"start_s": 0, "end_s": 5, "region": "Mars"}, "region"),
        (InstanceEvent, {"at_s": 1, "instance_id": "i-0123456789abcdef0"}, "change"),
        (InstanceEvent, {"at_s": 1, "instance_id": "x", "vanish": True}, "instance_id"),
        (InstanceEvent, {"at_s": 1, "instance_id": "i-01234567", "state": "gone"}, "state"),
    ],
)
def test_events_reject_bad_values(kind: Any, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(MockError) as exc:
        kind(**kwargs)
    assert field in str(exc.value)


def test_cli_parsers() -> None:
    assert _outage("0,60,*,CreateImage,timeout") == Outage(0, 60, None, "CreateImage", "timeout")
    assert _outage("5,6,eu-west-1") == Outage(5, 6, "eu-west-1")
    assert _pairs(["arn:aws:iam::210987654321:role/a=b=7200"], "--x") == {
        "arn:aws:iam::210987654321:role/a=b": 7200.0
    }
    for bad in ("1", "a,b", "0,1,us-east-1,X,forever"):
        with pytest.raises(MockError):
            _outage(bad)
    with pytest.raises(MockError):
        _pairs(["nope"], "--x")
