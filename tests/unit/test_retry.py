"""The retry policy and the error classification (no network)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from fleetimage.core.errors import AwsError, ErrorKind, classify
from fleetimage.engine.retry import THROTTLE_BUDGET_FACTOR, retrying


@dataclass(frozen=True)
class Policy:
    max_attempts: int = 3
    base_delay_s: float = 0.0
    max_delay_s: float = 0.0
    quota_delay_s: float = 0.0
    quota_max_attempts: int = 2
    max_outage_s: float = 60.0


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("RequestLimitExceeded", 503, ErrorKind.THROTTLE),
        ("InvalidAMIName.Duplicate", 400, ErrorKind.DUPLICATE_NAME),
        ("ConcurrentSnapshotLimitExceeded", 400, ErrorKind.QUOTA),
        ("InternalError", 500, ErrorKind.TRANSIENT),
        ("Unavailable", 503, ErrorKind.TRANSIENT),
        ("SomethingNew", 502, ErrorKind.TRANSIENT),
        ("InvalidParameterValue", 400, ErrorKind.FATAL),
        ("UnauthorizedOperation", 403, ErrorKind.FATAL),
        ("InvalidInstanceID.NotFound", 400, ErrorKind.FATAL),
    ],
)
def test_classify(code: str, status: int, kind: ErrorKind) -> None:
    assert classify(code, status) is kind


class Ticking:
    """A clock that moves ``step_s`` each time an attempt is made."""

    def __init__(self, step_s: float) -> None:
        self.t = 0.0
        self.step_s = step_s

    def __call__(self) -> float:
        return self.t


async def _attempts(
    policy: Policy, errors: list[AwsError], *, clock: Ticking | None = None
) -> tuple[int, BaseException | None]:
    calls = 0
    in_lane = clock is not None
    try:
        async for attempt in retrying(policy, in_lane=in_lane, clock=clock or Ticking(0.0)):
            with attempt:
                calls += 1
                if clock is not None:
                    clock.t += clock.step_s
                if errors:
                    raise errors.pop(0)
    except AwsError as exc:
        return calls, exc
    return calls, None


def err(code: str, status: int = 400, kind: ErrorKind | None = None) -> AwsError:
    return AwsError(code, "m", action="X", http_status=status, kind=kind)


async def test_fatal_is_not_retried() -> None:
    calls, exc = await _attempts(Policy(), [err("InvalidParameterValue")])
    assert calls == 1 and isinstance(exc, AwsError)


async def test_transient_stops_at_max_attempts() -> None:
    calls, exc = await _attempts(Policy(), [err("InternalError", 500) for _ in range(10)])
    assert calls == 3 and exc is not None


async def test_throttles_have_a_larger_budget_than_errors() -> None:
    throttles = [err("RequestLimitExceeded", 503) for _ in range(5)]
    calls, exc = await _attempts(Policy(), throttles)
    assert calls == 6 and exc is None  # five throttles then success, though max_attempts is 3
    many = [err("RequestLimitExceeded", 503) for _ in range(100)]
    calls, exc = await _attempts(Policy(), many)
    assert calls == 3 * THROTTLE_BUDGET_FACTOR and exc is not None


async def test_quota_has_its_own_bound() -> None:
    calls, exc = await _attempts(Policy(), [err("PendingSnapshotLimitExceeded") for _ in range(5)])
    assert calls == 2 and exc is not None


async def test_ambiguous_is_retried_and_mixed_kinds_share_the_error_budget() -> None:
    errors = [
        err("ReadTimeout", kind=ErrorKind.AMBIGUOUS),
        err("InternalError", 500),
        err("ReadTimeout", kind=ErrorKind.AMBIGUOUS),
    ]
    calls, exc = await _attempts(Policy(), errors)
    assert calls == 3 and exc is not None


# --- in a lane: throttles and transient errors are bounded by time, not counted -----------


async def test_in_a_lane_throttles_never_spend_a_count() -> None:
    many = [err("RequestLimitExceeded", 503) for _ in range(200)]
    calls, exc = await _attempts(Policy(max_outage_s=1e9), many, clock=Ticking(1.0))
    assert calls == 201 and exc is None  # 200 throttles, then success; max_attempts is 3


async def test_in_a_lane_transient_errors_never_spend_a_count() -> None:
    errors = [err("Unavailable", 503) for _ in range(50)]
    errors += [err("ReadTimeout", kind=ErrorKind.AMBIGUOUS) for _ in range(50)]
    calls, exc = await _attempts(Policy(max_outage_s=1e9), errors, clock=Ticking(1.0))
    assert calls == 101 and exc is None


async def test_in_a_lane_the_budget_is_max_outage_s_of_trying() -> None:
    many = [err("RequestLimitExceeded", 503) for _ in range(200)]
    calls, exc = await _attempts(Policy(max_outage_s=30.0), many, clock=Ticking(1.0))
    assert calls == 31 and isinstance(exc, AwsError) and exc.code == "RequestLimitExceeded"
    many = [err("InternalError", 500) for _ in range(200)]
    calls, exc = await _attempts(Policy(max_outage_s=10.0), many, clock=Ticking(2.0))
    assert calls == 6 and isinstance(exc, AwsError) and exc.code == "InternalError"


async def test_in_a_lane_quota_errors_keep_their_count_and_their_code() -> None:
    errors = [err("ConcurrentSnapshotLimitExceeded") for _ in range(5)]
    calls, exc = await _attempts(Policy(max_outage_s=1e9), errors, clock=Ticking(1.0))
    assert calls == 2 and isinstance(exc, AwsError)
    assert exc.code == "ConcurrentSnapshotLimitExceeded"


async def test_in_a_lane_fatal_answers_are_not_retried() -> None:
    calls, exc = await _attempts(Policy(), [err("InvalidParameterValue")], clock=Ticking(1.0))
    assert calls == 1 and isinstance(exc, AwsError)


async def test_a_long_outage_of_tiny_backoffs_does_not_overflow_the_backoff() -> None:
    """A lane keeps retrying a transient error until max_outage_s: with small delays (a
    time-scaled run) that is more than 1,024 attempts, where 2 ** (n - 1) no longer fits a
    float. Found while writing the test of an endpoint that ignores DryRun."""
    clock = Ticking(1e-6)
    errors = [err("InternalError", 500) for _ in range(1500)]
    calls, exc = await _attempts(
        Policy(base_delay_s=0.01, max_delay_s=0.0, max_outage_s=0.0012), errors, clock=clock
    )
    assert calls > 1025  # past the attempt where the backoff overflowed
    assert isinstance(exc, AwsError) and exc.code == "InternalError"
