"""The checks every knob of the mock shares: each failure is a :class:`MockError` naming
the knob, raised when the knob's dataclass is built (before any server starts)."""

from __future__ import annotations

import math
import re

from fleetimage.core.errors import MockError

__all__ = ["check_finite", "check_non_negative", "check_rate", "check_region"]

_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")


def check_rate(name: str, value: float) -> None:
    if not isinstance(value, int | float) or math.isnan(value) or not 0.0 <= value <= 1.0:
        raise MockError(f"{name} must be a rate between 0 and 1, got {value!r}")


def check_non_negative(name: str, value: float) -> None:
    if not isinstance(value, int | float) or math.isnan(value) or value < 0:
        raise MockError(f"{name} must be a number >= 0, got {value!r}")


def check_finite(name: str, value: float) -> None:
    check_non_negative(name, value)
    if math.isinf(value):
        raise MockError(f"{name} must be finite, got {value!r}")


def check_region(name: str, region: object) -> None:
    if not isinstance(region, str) or not _REGION_RE.match(region):
        raise MockError(f"{name}: {region!r} is not a region name")
