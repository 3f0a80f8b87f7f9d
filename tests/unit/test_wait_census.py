"""The waiter's census: an image is "vanished" only when a request made more than
``not_found_grace_s`` after it was registered leaves it out, however late the answer comes."""

from __future__ import annotations

from typing import Any, cast

import anyio

from fleetimage.engine.lane import Lane
from fleetimage.engine.wait import ImageState, ImageWaiter

IMAGE = "ami-0123456789abcdef0"
GRACE_S = 0.5  # far above a poll interval (0.01 s): the first census is asked well inside it


class _Region:
    """DescribeImages over one image: EC2 reads the state when a request arrives; the answer
    reaches the caller ``answer_delays_s[n]`` later (retries, a slow answer, a busy loop)."""

    def __init__(self, *, visible_from_call: int | None, answer_delays_s: list[float]) -> None:
        self.visible_from_call = visible_from_call  # None: never listed (deregistered)
        self.answer_delays_s = answer_delays_s
        self.calls: list[tuple[bool, bool]] = []  # (census, the image was in the answer)

    async def call(self, action: str, params: dict[str, Any], *, interruptible: bool) -> Any:
        assert action == "DescribeImages" and not interruptible
        n = len(self.calls)
        census = len(params["Filters"]) == 1  # no state filter: every watched image
        listed = self.visible_from_call is not None and n >= self.visible_from_call
        self.calls.append((census, listed))
        images = [{"ImageId": IMAGE, "State": "available"}] if listed else []
        delay = self.answer_delays_s[n] if n < len(self.answer_delays_s) else 0.0
        await anyio.sleep(delay)  # the state was read above: the answer is that old
        return {"Images": images}


async def _wait(region: _Region) -> tuple[ImageState, float]:
    waiter = ImageWaiter(
        cast(Lane, region), poll_interval_s=0.01, timeout_s=30, not_found_grace_s=GRACE_S
    )
    # The grace has passed since the waiter started: its first poll is a census round.
    await anyio.sleep(GRACE_S)
    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter.run)
        registered = anyio.current_time()
        with anyio.fail_after(10):
            result = await waiter.wait(IMAGE)
        tg.cancel_scope.cancel()
    return result, anyio.current_time() - registered


async def test_a_new_image_missing_from_a_census_answer_that_came_late_is_still_pending() -> None:
    """Made a moment ago, not yet listed (eventual consistency) when the census request was
    read, and that answer arrived after more than the grace: not a vanished image."""
    region = _Region(visible_from_call=1, answer_delays_s=[1.5 * GRACE_S])
    result, _ = await _wait(region)
    assert region.calls[0] == (True, False)  # the late census answer left it out
    assert result.state == "available", result


async def test_an_image_left_out_of_a_census_asked_after_the_grace_has_vanished() -> None:
    region = _Region(visible_from_call=None, answer_delays_s=[])
    result, waited = await _wait(region)
    assert (result.state, result.code) == ("not_found", "InvalidAMIID.NotFound")
    assert waited > GRACE_S


async def test_a_late_census_answer_still_finds_an_image_gone_for_over_the_grace() -> None:
    """Slow answers do not hide a vanished image: the census asked after the grace decides."""
    region = _Region(visible_from_call=None, answer_delays_s=[1.5 * GRACE_S] * 10)
    result, waited = await _wait(region)
    assert result.state == "not_found"
    assert waited > GRACE_S
