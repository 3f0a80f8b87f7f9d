"""What lanes of a run share: which lanes' images are the last the run waits for."""

from __future__ import annotations

from typing import Any, cast

from fleetimage.config import ErrorBudget
from fleetimage.engine.runstate import LAST_LANES, RunState
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


def test_the_last_lanes_are_known_once_discovery_is_done_and_the_others_have_finished() -> None:
    state, waiters = _state(LAST_LANES + 2)
    state.lane_finished()
    state.lane_finished()
    assert not state.among_last_lanes()  # more lanes may still be discovered
    assert {w.nudges for w in waiters} == {0}
    state.discovery_done()
    assert state.among_last_lanes()
    # The lanes left may be asleep, their polls timed as lanes of many: every waiter is
    # nudged (those of finished lanes watch nothing, and sleep on).
    assert {w.nudges for w in waiters} == {1}


def test_discovery_done_with_more_lanes_imaging_names_none_last_until_few_are_left() -> None:
    state, waiters = _state(LAST_LANES + 1)
    state.discovery_done()
    assert not state.among_last_lanes()
    assert {w.nudges for w in waiters} == {0}
    state.lane_finished()
    assert state.among_last_lanes()
    assert {w.nudges for w in waiters} == {1}
    for _ in range(LAST_LANES):
        state.lane_finished()
    assert not state.among_last_lanes()  # none left
