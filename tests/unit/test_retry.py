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


async def _attempts(policy: Policy, errors: list[AwsError]) -> tuple[int, BaseException | None]:
    calls = 0
    try:
        async for attempt in retrying(policy):
            with attempt:
                calls += 1
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
