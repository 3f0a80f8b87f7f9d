"""What lanes of a run share: which lane's images are the last the run waits for."""

from __future__ import annotations

from typing import Any, cast

from fleetimage.config import ErrorBudget
from fleetimage.engine.runstate import RunState
from fleetimage.engine.wait import ImageWaiter


class _Waiter:
    def __init__(self) -> None:
        self.nudges = 0

    def nudge(self) -> None:
        self.nudges += 1


def _state(lanes: int) -> tuple[RunState, list[_Waiter]]:
    state = RunState(ErrorBudget(count=10), total=0)
    waiters = [_Waiter() for _ in range(lanes)]
    for waiter in waiters:
        state.waiters.append(cast(ImageWaiter, cast(Any, waiter)))
        state.lane_started()
    return state, waiters


def test_the_last_lane_is_known_once_discovery_is_done_and_the_others_have_finished() -> None:
    state, waiters = _state(3)
    state.lane_finished()
    state.lane_finished()
    assert not state.last_lane()  # more lanes may still be discovered
    assert [w.nudges for w in waiters] == [0, 0, 0]
    state.discovery_done()
    assert state.last_lane()
    # The lane left may be asleep, its poll timed as one lane of many: every waiter is
    # nudged (those of finished lanes watch nothing, and sleep on).
    assert [w.nudges for w in waiters] == [1, 1, 1]


def test_discovery_done_with_lanes_imaging_names_no_last_lane_until_one_is_left() -> None:
    state, waiters = _state(2)
    state.discovery_done()
    assert not state.last_lane()
    assert [w.nudges for w in waiters] == [0, 0]
    state.lane_finished()
    assert state.last_lane()
    assert [w.nudges for w in waiters] == [1, 1]
    state.lane_finished()
    assert not state.last_lane()  # none left
