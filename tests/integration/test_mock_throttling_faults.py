"""Token buckets (burst, refill, time_scale, neighbour_load, off) and injected faults."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

from fleetimage.core.errors import MockError
from fleetimage.mock import FaultConfig, MockConfig, load_default_limits

ACCOUNT = "123456789012"
REGION = "us-east-1"


async def outcomes(ec2: Any, n: int, **kwargs: Any) -> list[str]:
    """Fire ``n`` DescribeImages calls one after the other; 'ok' or the error code each."""
    out = []
    for _ in range(n):
        try:
            await ec2.describe_images(**kwargs)
            out.append("ok")
        except ClientError as exc:
            assert exc.response["ResponseMetadata"]["HTTPStatusCode"] in (500, 503)
            out.append(exc.response["Error"]["Code"])
    return out


def test_default_limits_come_from_limits_yaml() -> None:
    limits = load_default_limits()
    assert limits["CreateImage"] == (50.0, 5.0)
    assert limits["DescribeImages"] == (100.0, 20.0)


async def test_burst_then_refill_scaled_by_time_scale(mock_ec2: Any, ec2_client: Any) -> None:
    # burst 5, 1 token/s * time_scale 10 = 10 tokens per wall second. Bounds are computed
    # from the measured elapsed time, so a loaded machine cannot make this flaky.
    rate = 10.0
    mock = await mock_ec2(MockConfig(limits={"DescribeImages": (5, 1.0)}, time_scale=10))
    async with ec2_client(mock, REGION) as ec2:
        start = time.monotonic()
        first = await outcomes(ec2, 8)
        elapsed = time.monotonic() - start
        assert first[:5] == ["ok"] * 5
        assert first.count("ok") <= 5 + rate * elapsed
        assert "RequestLimitExceeded" in first or elapsed > 0.1
        await asyncio.sleep(0.3)  # ~3 tokens
        start = time.monotonic()
        second = await outcomes(ec2, 6)
        elapsed = 0.3 + time.monotonic() - start
        assert 2 <= second.count("ok") <= 1 + rate * elapsed
        # a steady stream gets ~rate: burst + 10/s
        await asyncio.sleep(0.6)  # refill to the burst (capped at 5)
        ok_before = mock.count(action="DescribeImages", outcome="ok")
        calls = 0
        start = time.monotonic()
        while time.monotonic() - start < 0.5:
            await outcomes(ec2, 1)
            calls += 1
        elapsed = time.monotonic() - start
        ok = mock.count(action="DescribeImages", outcome="ok") - ok_before
        assert min(calls, 5 + 3) <= ok <= 5 + rate * elapsed + 1
    # buckets are per (account, region, action): other actions/regions are untouched
    async with ec2_client(mock, "eu-west-1") as eu:
        assert await outcomes(eu, 5) == ["ok"] * 5
    assert mock.count(outcome="throttled") == mock.count(
        action="DescribeImages", region=REGION, outcome="throttled"
    )


async def test_throttled_requests_apply_nothing(mock_ec2: Any, ec2_client: Any) -> None:
    mock = await mock_ec2(MockConfig(instances_per_region=0, limits={"CreateImage": (2, 0.0001)}))
    iid = mock.add_instance(ACCOUNT, REGION)
    async with ec2_client(mock, REGION) as ec2:
        await ec2.create_image(InstanceId=iid, Name="t-1")
        await ec2.create_image(InstanceId=iid, Name="t-2")
        with pytest.raises(ClientError) as exc:
            await ec2.create_image(InstanceId=iid, Name="t-3")
        resp: Any = exc.value.response
        assert resp["Error"] == {
            "Code": "RequestLimitExceeded",
            "Message": "Request limit exceeded.",
        }
        assert resp["ResponseMetadata"]["HTTPStatusCode"] == 503
        # unlimited actions are never throttled
        for _ in range(30):
            await ec2.describe_instances()
    assert [i["name"] for i in mock.images(ACCOUNT, REGION)] == ["t-1", "t-2"]
    assert mock.count(action="CreateImage", outcome="throttled") == 1
    assert mock.count(action="DescribeInstances", outcome="throttled") == 0


async def test_neighbour_load_and_throttling_off(mock_ec2: Any, ec2_client: Any) -> None:
    loaded = await mock_ec2(MockConfig(limits={"DescribeImages": (10, 0.0001)}, neighbour_load=0.5))
    free = await mock_ec2(MockConfig(limits={"DescribeImages": (1, 0.0)}, throttling=False))
    async with ec2_client(loaded, REGION) as ec2:
        assert (await outcomes(ec2, 8)).count("ok") == 5
    async with ec2_client(free, REGION) as ec2:
        assert await outcomes(ec2, 20) == ["ok"] * 20


async def test_injected_errors_and_throttles(mock_ec2: Any, ec2_client: Any) -> None:
    only = frozenset({"DescribeImages"})
    for faults, code, status in (
        (FaultConfig(internal_error=1.0, actions=only), "InternalError", 500),
        (FaultConfig(unavailable=1.0, actions=only), "Unavailable", 503),
        (FaultConfig(throttle=1.0, actions=only), "RequestLimitExceeded", 503),
    ):
        mock = await mock_ec2(MockConfig(faults=faults, instances_per_region=2))
        async with ec2_client(mock, REGION) as ec2:
            with pytest.raises(ClientError) as exc:
                await ec2.describe_images()
            resp: Any = exc.value.response
            assert (resp["Error"]["Code"], resp["ResponseMetadata"]["HTTPStatusCode"]) == (
                code,
                status,
            )
            await ec2.describe_instances()  # not in the fault's actions
        assert mock.count(action="DescribeImages", outcome="fault") == 1
        assert mock.count(action="DescribeInstances", outcome="ok") == 1


async def test_faults_apply_nothing_except_lost_answers(mock_ec2: Any, ec2_client: Any) -> None:
    create = frozenset({"CreateImage"})
    for faults, applied in (
        (FaultConfig(internal_error=1.0, actions=create), False),
        (FaultConfig(reset=1.0, actions=create), False),
        (FaultConfig(lost_answer=1.0, actions=create), True),
    ):
        mock = await mock_ec2(MockConfig(faults=faults, instances_per_region=0))
        iid = mock.add_instance(ACCOUNT, REGION)
        async with ec2_client(mock, REGION) as ec2:
            expected = ClientError if faults.internal_error else ConnectionClosedError
            with pytest.raises(expected):
                await ec2.create_image(InstanceId=iid, Name="maybe")
            images = mock.images(ACCOUNT, REGION)
            assert len(images) == (1 if applied else 0)
            if applied:
                # the naive retry with the same name is refused (answer lost again) and a
                # retry under a fresh name duplicates the AMI: what the engine must avoid
                with pytest.raises(ConnectionClosedError):
                    await ec2.create_image(InstanceId=iid, Name="maybe")
                with pytest.raises(ConnectionClosedError):
                    await ec2.create_image(InstanceId=iid, Name="maybe-again")
                assert mock.duplicates() == {(ACCOUNT, REGION, iid): 2}
                assert mock.count(action="CreateImage", outcome="lost_answer") == 3
            # the server is still healthy for other calls
            await ec2.describe_instances()


async def test_slow_answers(mock_ec2: Any, ec2_client: Any) -> None:
    slow = FaultConfig(slow=1.0, slow_s=4.0, actions=frozenset({"DescribeImages"}))
    mock = await mock_ec2(MockConfig(faults=slow, time_scale=10))  # 0.4 s
    async with ec2_client(mock, REGION) as ec2:
        start = time.monotonic()
        await ec2.describe_images()
        assert time.monotonic() - start >= 0.39  # a lower bound: a loaded machine only adds
        # Only the listed actions are slowed. Checked on the fault draw, not on a stopwatch:
        # "DescribeInstances answered in < 0.4 s" is a timing claim a loaded machine breaks.
        assert mock.faults.draw("DescribeInstances") == (None, 0.0)
        assert mock.faults.draw("DescribeImages") == (None, 4.0)
        await ec2.describe_instances()
    impatient = AioConfig(retries={"total_max_attempts": 1}, read_timeout=0.05)
    async with ec2_client(mock, REGION, config=impatient) as ec2:
        with pytest.raises(ReadTimeoutError):
            await ec2.describe_images()


async def test_faults_are_reproducible_from_the_seed(mock_ec2: Any, ec2_client: Any) -> None:
    def cfg(seed: int) -> MockConfig:
        faults = FaultConfig(internal_error=0.3, throttle=0.2, unavailable=0.1)
        return MockConfig(faults=faults, seed=seed, throttling=False)

    runs = []
    for seed in (1, 1, 2):
        mock = await mock_ec2(cfg(seed))
        async with ec2_client(mock, REGION) as ec2:
            runs.append(await outcomes(ec2, 40))
    assert runs[0] == runs[1] != runs[2]
    assert {"ok", "InternalError", "RequestLimitExceeded", "Unavailable"} == set(runs[0])


async def test_the_faults_own_seed_draws_other_faults_over_the_same_fleet(
    mock_ec2: Any, ec2_client: Any
) -> None:
    """``FaultConfig.seed`` (the benchmarks' repeats) moves the fault draws alone: the fleet,
    made from the mock's seed, stays; without it the mock's seed draws them, as before."""

    def cfg(fault_seed: int | None) -> MockConfig:
        faults = FaultConfig(internal_error=0.3, throttle=0.2, unavailable=0.1, seed=fault_seed)
        return MockConfig(faults=faults, seed=1, throttling=False)

    runs, fleets = [], []
    for fault_seed in (None, 1, 2):
        mock = await mock_ec2(cfg(fault_seed))
        fleets.append(list(mock.fleet.state(mock.config.accounts[0], REGION).instances))
        async with ec2_client(mock, REGION) as ec2:
            runs.append(await outcomes(ec2, 40))
    assert runs[0] == runs[1] != runs[2]
    assert fleets[0] == fleets[1] == fleets[2]
    with pytest.raises(MockError, match=r"FaultConfig\.seed"):
        FaultConfig(seed="7")  # type: ignore[arg-type]
