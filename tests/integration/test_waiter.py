"""The batched waiter on its own, through aiobotocore against the mock: one lane, images made
with real CreateImage calls, and rounds driven by calling ``poll_once`` directly, so every
assertion is about calls and outcomes, not about how long anything took."""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.abc
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.credentials import AioCredentials
from aiobotocore.session import get_session
from lane_helpers import LIMITS, REGION, lane_on

from fleetimage.aws.credentials import AccountCredentials, account_session
from fleetimage.core.errors import CredentialsExpired
from fleetimage.core.models import LaneKey
from fleetimage.engine.bus import Bus
from fleetimage.engine.lane import Lane
from fleetimage.engine.limiter import Limiter
from fleetimage.engine.wait import ImageState, ImageWaiter
from fleetimage.mock import FaultConfig, MockConfig, MockEC2


async def create_images(mock: MockEC2, lane: Lane, n: int) -> list[str]:
    ids = []
    for inst in mock.instances(mock.config.accounts[0], REGION)[:n]:
        answer = await lane.client.create_image(
            InstanceId=inst["instance_id"], Name=f"waiter-{inst['instance_id']}"
        )
        ids.append(answer["ImageId"])
    return ids


def start_waits(
    tg: anyio.abc.TaskGroup, waiter: ImageWaiter, ids: list[str], results: dict[str, ImageState]
) -> anyio.Event:
    """Wait for every id in its own task; the event is set once all of them have ended."""
    all_ended = anyio.Event()

    async def one(image_id: str) -> None:
        results[image_id] = await waiter.wait(image_id)
        if len(results) == len(ids):
            all_ended.set()

    for image_id in ids:
        tg.start_soon(one, image_id)
    return all_ended


def _mock(n: int, **kw: Any) -> MockConfig:
    # pending for an AWS hour unless a test settles the images itself
    return MockConfig(
        regions=(REGION,),
        instances_per_region=n,
        pending_s=3600,
        state_mix={"running": 1.0},
        limits=LIMITS,
        **kw,
    )


@contextlib.asynccontextmanager
async def waits_started(
    waiter: ImageWaiter, ids: list[str]
) -> AsyncIterator[dict[str, ImageState]]:
    """A wait for each of ``ids`` started and blocked (the test then polls with
    ``waiter.poll_once``); yields their results as they settle. Bounded at 60 s."""
    results: dict[str, ImageState] = {}
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            start_waits(tg, waiter, ids, results)
            await anyio.wait_all_tasks_blocked()
            yield results


async def test_every_chunk_of_a_large_lane_is_polled(mock_ec2: Any, ec2_client: Any) -> None:
    """250 pending images in one lane: each round asks in two chunks (200 + 50), and all
    250 settle in the round after they became available — none is left to time out. The
    poll budget counts both calls of a round."""
    n = 250  # a literal: EC2 bounds a filter's values, and the waiter asks for 200 at most
    mock = await mock_ec2(_mock(n))
    account = mock.config.accounts[0]
    async with lane_on(mock, ec2_client) as lane:
        ids = await create_images(mock, lane, n)
        waiter = ImageWaiter(lane, poll_interval_s=60, timeout_s=3600, not_found_grace_s=3600)
        async with waits_started(waiter, ids) as results:
            before = mock.count(action="DescribeImages")
            await waiter.poll_once()
            assert mock.count(action="DescribeImages") - before == 2
            await anyio.wait_all_tasks_blocked()
            assert results == {}  # all still pending
            for image_id in ids:
                mock.set_image_state(account, REGION, image_id, "available")
            before = mock.count(action="DescribeImages")
            await waiter.poll_once()
            assert mock.count(action="DescribeImages") - before == 2
            assert waiter.schedule.polls == 4
    assert len(results) == n
    assert all(r.state == "available" for r in results.values())


async def test_failed_images_carry_ec2s_reason(mock_ec2: Any, ec2_client: Any) -> None:
    mock = await mock_ec2(_mock(3))
    account = mock.config.accounts[0]
    async with lane_on(mock, ec2_client) as lane:
        ids = await create_images(mock, lane, 3)
        waiter = ImageWaiter(lane, poll_interval_s=60, timeout_s=3600, not_found_grace_s=3600)
        async with waits_started(waiter, ids) as results:
            mock.set_image_state(
                account, REGION, ids[0], "failed", ("Client.Boom", "the volume went away")
            )
            mock.set_image_state(account, REGION, ids[1], "available")
            await waiter.poll_once()
            await anyio.wait_all_tasks_blocked()  # the settled waits record their results
            assert set(results) == {ids[0], ids[1]}  # the third is still pending
            waiter.release_all(ImageState("unknown", "Stopped", "test over"))
    assert results[ids[0]] == ImageState("failed", "Client.Boom", "the volume went away")
    assert results[ids[1]] == ImageState("available")
    assert results[ids[2]] == ImageState("unknown", "Stopped", "test over")
    # after release_all, a new wait returns at once with the same result
    assert await waiter.wait("ami-00000000") == ImageState("unknown", "Stopped", "test over")


async def test_census_notices_a_deregistered_image_only_after_the_grace(
    mock_ec2: Any, ec2_client: Any
) -> None:
    mock = await mock_ec2(_mock(2))
    account = mock.config.accounts[0]
    async with lane_on(mock, ec2_client) as lane:
        ids = await create_images(mock, lane, 2)
        waiter = ImageWaiter(lane, poll_interval_s=60, timeout_s=3600, not_found_grace_s=3600)
        async with waits_started(waiter, ids) as results:
            mock.deregister_image(account, REGION, ids[0])
            await waiter.poll_once()  # not a census round: absent just means pending
            await anyio.wait_all_tasks_blocked()
            assert results == {}
            waiter.not_found_grace_s = 0.0  # the grace is over: the next round is a census
            await waiter.poll_once()
            await anyio.wait_all_tasks_blocked()
            assert set(results) == {ids[0]}
            await waiter.poll_once()  # census again: the live image is still pending
            await anyio.wait_all_tasks_blocked()
            assert set(results) == {ids[0]}
            waiter.release_all(ImageState("unknown"))
    gone = results[ids[0]]
    assert (gone.state, gone.code) == ("not_found", "InvalidAMIID.NotFound")
    assert "vanished from DescribeImages" in gone.message


async def test_a_pending_image_past_its_timeout_is_timed_out_by_the_poll(
    mock_ec2: Any, ec2_client: Any
) -> None:
    mock = await mock_ec2(_mock(1))
    async with lane_on(mock, ec2_client) as lane:
        ids = await create_images(mock, lane, 1)
        waiter = ImageWaiter(lane, poll_interval_s=60, timeout_s=0.0, not_found_grace_s=3600)
        async with waits_started(waiter, ids) as results:
            await waiter.poll_once()
    result = results[ids[0]]
    assert result == ImageState(
        "timed_out", "WaitTimeout", "still pending after 0 s; the image may still become available"
    )


@pytest.mark.parametrize(
    ("deregister", "seen_as"), [(False, "still pending"), (True, "still not visible")]
)
async def test_a_census_round_before_the_grace_keeps_absent_images_and_times_out_by_state(
    mock_ec2: Any, ec2_client: Any, deregister: bool, seen_as: str
) -> None:
    """A census round (every watched image asked for, not only settled ones) that comes
    before an image's not-found grace is over: an absent image is not declared gone, and an
    image past its timeout is described by what the census saw."""
    mock = await mock_ec2(_mock(1))
    account = mock.config.accounts[0]
    async with lane_on(mock, ec2_client) as lane:
        ids = await create_images(mock, lane, 1)
        if deregister:
            mock.deregister_image(account, REGION, ids[0])
        waiter = ImageWaiter(lane, poll_interval_s=60, timeout_s=3600, not_found_grace_s=3600)
        waiter._last_census = -math.inf  # the last census is long past: this round is one
        async with waits_started(waiter, ids) as results:
            await waiter.poll_once()  # within the image's grace: not "not_found"
            await anyio.wait_all_tasks_blocked()
            assert results == {}
            waiter.release_all(ImageState("unknown"))
        waiter = ImageWaiter(lane, poll_interval_s=60, timeout_s=0.0, not_found_grace_s=3600)
        waiter._last_census = -math.inf
        results = {}
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                start_waits(tg, waiter, ids, results)
                await anyio.wait_all_tasks_blocked()
                await waiter.poll_once()
    assert results[ids[0]] == ImageState(
        "timed_out", "WaitTimeout", f"{seen_as} after 0 s; the image may still become available"
    )


async def test_images_time_out_while_describe_images_keeps_failing(
    mock_ec2: Any, ec2_client: Any
) -> None:
    """DescribeImages answers 503 for good: the poll waits at the lane's breaker, and the
    images still end at their own timeout (0.3 s; fail_after allows 100x that)."""
    mock = await mock_ec2(_mock(2, faults=FaultConfig(unavailable=1.0, actions={"DescribeImages"})))
    async with lane_on(mock, ec2_client) as lane:
        ids = await create_images(mock, lane, 2)
        waiter = ImageWaiter(lane, poll_interval_s=0.05, timeout_s=0.3, not_found_grace_s=3600)
        results: dict[str, ImageState] = {}
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter.run)
                all_ended = start_waits(tg, waiter, ids, results)
                await all_ended.wait()
                tg.cancel_scope.cancel()
    for result in results.values():
        assert (result.state, result.code) == ("timed_out", "WaitTimeout")
        assert result.message.startswith("no state seen within 0.3 s (DescribeImages kept failing)")
    assert mock.count(action="DescribeImages") > 0


async def test_a_cancelled_wait_is_no_longer_polled(mock_ec2: Any, ec2_client: Any) -> None:
    mock = await mock_ec2(_mock(1))
    async with lane_on(mock, ec2_client) as lane:
        ids = await create_images(mock, lane, 1)
        waiter = ImageWaiter(lane, poll_interval_s=60, timeout_s=3600, not_found_grace_s=3600)
        with anyio.move_on_after(0.05):  # two waits for one image, both cancelled
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter.wait, ids[0])
                tg.start_soon(waiter.wait, ids[0])
        before = mock.count(action="DescribeImages")
        await waiter.poll_once()
        assert mock.count(action="DescribeImages") == before  # nothing left to ask about


async def test_an_answer_that_waiting_cannot_fix_ends_every_wait_at_once(
    mock_ec2: Any, ec2_client: Any
) -> None:
    """DescribeImages refused for good (here 401 AuthFailure: the waiter's keys are not
    accepted): the images' states cannot be read, so they end ``unknown`` at the first poll
    (resume polls them again), not as a WaitTimeout hours later."""
    refused = {"aws_access_key_id": "AKIAREFUSEDKEY000000", "aws_secret_access_key": "x" * 40}
    mock = await mock_ec2(_mock(2, rejected_access_keys=frozenset({refused["aws_access_key_id"]})))
    async with lane_on(mock, ec2_client) as lane:
        ids = await create_images(mock, lane, 2)
    async with lane_on(mock, ec2_client, credentials=refused) as lane:
        waiter = ImageWaiter(lane, poll_interval_s=0.01, timeout_s=3600, not_found_grace_s=3600)
        results: dict[str, ImageState] = {}
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter.run)
                all_ended = start_waits(tg, waiter, ids, results)
                await all_ended.wait()
                tg.cancel_scope.cancel()
    assert {(r.state, r.code) for r in results.values()} == {("unknown", "AuthFailure")}
    assert all(
        r.message.startswith("the image was created but its state cannot be read: ")
        for r in results.values()
    )


async def test_the_poll_loop_settles_images_and_two_waits_share_one_watch(
    mock_ec2: Any, ec2_client: Any
) -> None:
    """``run`` polls while images are watched; two waits for one image both get its end."""
    mock = await mock_ec2(_mock(2))
    account = mock.config.accounts[0]
    async with lane_on(mock, ec2_client) as lane:
        ids = await create_images(mock, lane, 2)
        waiter = ImageWaiter(lane, poll_interval_s=0.01, timeout_s=3600, not_found_grace_s=3600)
        results: dict[str, ImageState] = {}
        again: list[ImageState] = []

        async def wait_again() -> None:
            again.append(await waiter.wait(ids[0]))

        with anyio.fail_after(30):  # settles in a few 10 ms polls
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter.run)
                all_ended = start_waits(tg, waiter, ids, results)
                tg.start_soon(wait_again)
                for _ in itertools.count():  # a first poll saw them pending: the loop goes on
                    if mock.count(action="DescribeImages") >= 1:
                        break
                    await anyio.sleep(0.01)
                for image_id in ids:
                    mock.set_image_state(account, REGION, image_id, "available")
                await all_ended.wait()
                tg.cancel_scope.cancel()
    assert {r.state for r in results.values()} == {"available"}
    assert again == [ImageState("available")]


async def test_expired_credentials_end_every_wait_as_unknown(
    mock_ec2: Any, ec2_client: Any
) -> None:
    """The caller's own keys expire mid-wait: renewing cannot help, so the images' states
    are unknown (resume polls them again) and the lane is told, once."""
    mock = await mock_ec2(_mock(2))
    keys = mock.credentials(mock.config.accounts[0])
    holder = AccountCredentials(
        AioCredentials(keys["aws_access_key_id"], keys["aws_secret_access_key"]),
        label="the test's own keys",
        own=True,
    )
    session = account_session(get_session(), holder)
    told: list[CredentialsExpired] = []
    async with session.create_client(
        "ec2",
        region_name=REGION,
        endpoint_url=mock.endpoint_url,
        config=AioConfig(retries={"total_max_attempts": 1}),
    ) as client:
        async with lane_on(mock, ec2_client) as maker:
            ids = await create_images(mock, maker, 2)
        lane = Lane(
            LaneKey(mock.config.accounts[0], REGION),
            client,
            Limiter.from_limits(LIMITS),
            maker.retry_policy,
            run_id="run-expiry",
            bus=Bus([]),
            credentials=holder,
        )
        waiter = ImageWaiter(
            lane,
            poll_interval_s=0.01,
            timeout_s=3600,
            not_found_grace_s=3600,
            on_credentials_expired=told.append,
        )
        mock.expire_key(keys["aws_access_key_id"])
        results: dict[str, ImageState] = {}
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter.run)
                all_ended = start_waits(tg, waiter, ids, results)
                await all_ended.wait()
                tg.cancel_scope.cancel()
    assert len(told) == 1 and told[0].own
    assert set(results.values()) == {ImageState("unknown", told[0].code, told[0].message)}


async def test_images_are_still_polled_after_new_work_stopped(
    mock_ec2: Any, ec2_client: Any
) -> None:
    """A stop (Ctrl-C, the deadline, the error budget) ends new work, never the wait for
    images already created: the waiter's polls are not interruptible."""
    mock = await mock_ec2(_mock(2))
    account = mock.config.accounts[0]
    async with lane_on(mock, ec2_client) as lane:
        ids = await create_images(mock, lane, 2)
        lane.stopper.request("interrupted")
        waiter = ImageWaiter(lane, poll_interval_s=60, timeout_s=3600, not_found_grace_s=3600)
        async with waits_started(waiter, ids) as results:
            for image_id in ids:
                mock.set_image_state(account, REGION, image_id, "available")
            await waiter.poll_once()
    assert {r.state for r in results.values()} == {"available"} and len(results) == 2


async def test_a_nudge_times_a_sleeping_poll_loops_next_poll_again(
    mock_ec2: Any, ec2_client: Any
) -> None:
    """A lane left among the run's last may be asleep, its next poll timed as one lane of
    many: a nudge wakes the loop, which asks again whether its images are the run's last."""
    mock = await mock_ec2(_mock(1))
    asked: list[bool] = []
    last = False

    def among_last_lanes() -> bool:
        asked.append(last)
        return last

    async with lane_on(mock, ec2_client) as lane:
        ids = await create_images(mock, lane, 1)
        # An hour's ceiling, nothing learned yet: without a nudge the loop sleeps an hour.
        waiter = ImageWaiter(
            lane,
            poll_interval_s=3600,
            timeout_s=7200,
            not_found_grace_s=7200,
            among_last_lanes=among_last_lanes,
        )
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter.run)
                start_waits(tg, waiter, ids, {})
                await anyio.wait_all_tasks_blocked()
                assert asked == [False]
                last = True
                waiter.nudge()
                await anyio.wait_all_tasks_blocked()
                assert asked == [False, True]
                assert mock.count(action="DescribeImages") == 0  # timed again, not polled
                tg.cancel_scope.cancel()
