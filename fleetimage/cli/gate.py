"""What stands between discovery and the first CreateImage of ``fleetimage run``: the
question, the refusal of a fleet with nothing to image, and the lanes' warnings.

A run shown its plan first (:func:`warn_lanes`, then :func:`ask`) is refused before anything
is sent when the plan holds no target. A run that asks nothing images each lane from its first
discovery page; it is refused once discovery has found nothing (:func:`imaged_any`), which
sent nothing either, and it shows each lane's failure as it happens (:class:`Underway`).
"""

from __future__ import annotations

import sys
from typing import Any

import anyio
import typer
from rich.console import Console

from fleetimage.core.errors import UsageError
from fleetimage.core.models import Event, LaneFailed, Outcome
from fleetimage.engine.announce import PLANNING_REFUSALS
from fleetimage.output.report import RunReport

__all__ = ["Underway", "ask", "asks", "imaged_any", "nothing_to_image", "warn_lanes"]


def asks(yes: bool) -> bool:
    """Whether the run asks before imaging: not with ``--yes``, nor without a terminal."""
    return not yes and sys.stdin.isatty()


def ask(yes: bool, question: str) -> bool:
    return typer.confirm(question, default=False, err=True) if asks(yes) else True


def nothing_to_image(lane_errors: int, lanes: int | None = None) -> UsageError:
    of = "" if lanes is None else f" of {lanes}"
    why = f"; {lane_errors}{of} lanes failed (see the warnings)" if lane_errors else ""
    return UsageError(
        f"the targets resolve to no instance to image{why}; check the config's regions and "
        "filters (fleetimage plan shows them), or pass --allow-empty"
    )


def imaged_any(report: RunReport) -> bool:
    """Whether discovery gave the run a target to image (a plan's ``targets``)."""
    return any(
        r.outcome is not Outcome.SKIPPED
        and not (r.attempts == 0 and r.error_code in PLANNING_REFUSALS)
        for r in report.results
    )


def _warn(err: Console, account: str, region: str, what: str) -> None:
    err.print(f"warning: {account}/{region}: {what}", markup=False, highlight=False)


def warn_lanes(data: dict[str, Any], err: Console) -> None:
    """The plan's failed lanes and instance ids not found (``plan_data``'s lanes)."""
    for lane in data["lanes"]:
        if lane["error"]:
            e = lane["error"]
            what = f"{e['action']}: {e['code']}: {e['message']}"
            _warn(err, lane["account"], lane["region"], what)
        if lane["missing"]:
            _warn(err, lane["account"], lane["region"], f"not found: {', '.join(lane['missing'])}")


class Underway:
    """An event observer for a run shown no plan: at its first event (the run is under way:
    a refused run id prints its error alone) it says so and lets the progress display start;
    then it shows each lane failure as it happens (instance ids not found are failed
    targets, in the summary)."""

    def __init__(self, err: Console, banner: str, started: anyio.Event) -> None:
        self.err, self.banner, self.started = err, banner, started

    def __call__(self, event: Event) -> None:
        if not self.started.is_set():
            self.err.print(self.banner, markup=False, highlight=False)
            self.started.set()
        if isinstance(event, LaneFailed):
            what = f"{event.action}: {event.error_code}: {event.error_message}"
            _warn(self.err, event.account, event.region, what)
