"""What a copy's wait or a stop means for its record (the copy phase's messages)."""

from __future__ import annotations

from fleetimage.core.models import Outcome
from fleetimage.engine.runstate import StopReason
from fleetimage.engine.wait import ImageState

__all__ = ["NOT_STARTED", "settle_message"]

NOT_STARTED = {
    StopReason.INTERRUPTED: "the run was interrupted before this copy started; resume it",
    StopReason.DEADLINE: "the deadline passed before this copy started",
    StopReason.ERROR_BUDGET: "max_errors was exceeded; no new copies were started",
    StopReason.CREDENTIALS: "your own AWS credentials expired; renew them and resume",
    StopReason.JOURNAL: "the journal failed, so no CopyImage could be journaled before it "
    "was sent; no new copies were started",
}


def settle_message(result: ImageState) -> tuple[Outcome, str, str, bool] | None:
    """(outcome, code, message, counts as an error) for a copy that did not become available;
    None when it stays pending (the run was interrupted: resume waits for it)."""
    if result.state == "released":
        if result.code == StopReason.DEADLINE:
            return (
                Outcome.TIMED_OUT,
                result.code,
                "deadline reached while the copy was pending; it may still become available",
                False,
            )
        if result.code == StopReason.CREDENTIALS:
            return Outcome.UNKNOWN, result.code, NOT_STARTED[StopReason.CREDENTIALS], False
        return None
    if result.state == "unknown":
        return Outcome.UNKNOWN, result.code, result.message, True
    if result.state == "timed_out":
        return Outcome.TIMED_OUT, result.code, result.message, True
    code = result.code or f"Image{result.state.capitalize()}"
    message = result.message or f"the copy entered state {result.state}"
    return Outcome.FAILED, code, message, True
