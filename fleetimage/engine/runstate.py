"""What all lanes of a run share: the error budget, the stop request, the hand-off to copies.

In one process the budget and the stop live here. A worker process (engine/worker.py) images
only some lanes of the run, and the budget and the stop are the whole run's: its state then
has a :class:`RunLink` to the parent, which counts for every worker and stops them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import anyio

from fleetimage.config import ErrorBudget
from fleetimage.core.errors import CredentialsExpired
from fleetimage.core.models import ImageSpec
from fleetimage.engine.bus import LEDGER_FAILED
from fleetimage.engine.settling import PollBudget
from fleetimage.engine.stop import Stopper
from fleetimage.engine.wait import ImageState, ImageWaiter

__all__ = ["RunLink", "RunState", "StopReason"]


# The run's last lanes poll their last images sooner (settling.py). Two, not one: the last
# two lanes often settle within a poll's gap of each other, and the last lane is named only
# once the one before it has seen its last image (fleet-10k: 1-2 AWS s later).
LAST_LANES = 2


class StopReason:
    INTERRUPTED = "Interrupted"
    DEADLINE = "DeadlineReached"
    ERROR_BUDGET = "ErrorBudgetExceeded"
    JOURNAL = LEDGER_FAILED
    CREDENTIALS = CredentialsExpired.CODE


class RunLink(Protocol):
    """Where a worker's share of the run's budget and stop goes (the parent process)."""

    def counted(self, *, errors: int = 0, targets: int = 0, discovered: bool = False) -> None:
        """Errors and targets this worker added; ``discovered``: its discovery is done."""

    def stopped(self, reason: str, *, stop_waiting: bool) -> None:
        """This worker stopped new work for ``reason``: the run stops everywhere."""


@dataclass(slots=True)
class RunState:
    """What all lanes share: the error budget, the stop request, the hand-off to copies."""

    budget: ErrorBudget
    total: int  # targets to image, discovered so far
    discovering: bool = True  # a percent budget means nothing until the total is known
    errors: int = 0
    stopper: Stopper = field(default_factory=Stopper)
    interrupted: bool = False  # Ctrl-C / stop event, whatever stopped new work first
    feeders: list[anyio.CancelScope] = field(default_factory=list)
    waiters: list[ImageWaiter] = field(default_factory=list)
    lanes_imaging: int = 0  # lanes of this process whose targets are not all settled
    # The DescribeImages budget of this process's lanes: the last lanes spend what others left.
    poll_budget: PollBudget = field(default_factory=PollBudget)
    on_available: Callable[[ImageSpec, str], object] | None = None  # copy_lanes.CopyPhase
    # A worker's link to the run's budget and stop (None: this process is the whole run).
    link: RunLink | None = None
    # Called with (reason, stop_waiting) after every stop request (the parent tells workers).
    on_stop: Callable[[str, bool], None] | None = None

    @property
    def stop_reason(self) -> str | None:
        return self.stopper.reason

    def request_stop(self, reason: str, *, stop_waiting: bool, relay: bool = True) -> None:
        """``relay``: tell the link (a stop that came over the link is not sent back)."""
        first = self.stopper.reason is None
        # Token waits, backoffs and discovery pages end at once; sends in flight are answered.
        self.stopper.request(reason)
        for scope in self.feeders:
            scope.cancel()
        if stop_waiting:
            for waiter in self.waiters:
                waiter.release_all(ImageState("released", reason))
        if relay and self.link is not None and (first or stop_waiting):
            self.link.stopped(reason, stop_waiting=stop_waiting)
        if self.on_stop is not None:
            self.on_stop(reason, stop_waiting)

    def stopping(self) -> bool:
        return self.stopper.reason is not None

    def add_targets(self, count: int) -> None:
        self.total += count
        if self.link is not None:
            self.link.counted(targets=count)

    def record_error(self, count: int = 1) -> None:
        if self.link is not None:  # the run's budget is counted where every worker's is
            self.errors += count
            self.link.counted(errors=count)
            return
        self.errors += count
        if self.discovering and self.budget.percent is not None:
            return
        if self.budget.exceeded(self.errors, self.total):
            self.request_stop(StopReason.ERROR_BUDGET, stop_waiting=False)

    def lane_started(self) -> None:
        self.lanes_imaging += 1

    def lane_finished(self) -> None:
        self.lanes_imaging -= 1
        self._nudge_last()

    def among_last_lanes(self) -> bool:
        """At most ``LAST_LANES`` lanes left imaging in this process, and no more to come: the
        run waits for their images last (in a worker: the last of this worker's)."""
        return not self.discovering and 0 < self.lanes_imaging <= LAST_LANES

    def _nudge_last(self) -> None:
        if self.among_last_lanes():  # the lanes left may be asleep, timed as lanes of many
            for waiter in self.waiters:
                waiter.nudge()

    def discovery_done(self) -> None:
        self.discovering = False
        self._nudge_last()
        if self.link is not None:
            self.link.counted(discovered=True)
            return
        self.record_error(0)
