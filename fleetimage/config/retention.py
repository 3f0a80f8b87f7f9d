"""``retention:``, what ``fleetimage prune`` keeps: the config model and its age grammar.

Ages use the ``--deadline`` duration grammar (``45m``, ``12h``, ``30d``, ``1h30m``; a bare
number is seconds) and are stored as seconds.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from fleetimage.config.checks import PosInt, TagKey
from fleetimage.core.durations import parse_duration

__all__ = ["Age", "RetentionOptions"]

DAY_S = 86400.0


def _parse_age(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError(f"expected an age like 30d, 12h or 45m, got {value!r}")
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"expected an age like 30d, 12h or 45m, got {value!r}")
    seconds = parse_duration(value)
    if seconds is None:
        raise ValueError(f"age {value!r} is not a duration (e.g. 30d, 12h, 45m, 1h30m)")
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"age {value!r} must be a finite duration >= 0 (e.g. 30d)")
    return seconds


Age = Annotated[float, BeforeValidator(_parse_age)]


class RetentionOptions(BaseModel):
    """What prune keeps (per instance and region); the rest of this fleet's images go.

    An image is deleted only when every rule allows it: outside the ``keep_last`` newest
    available images, older than ``max_age`` (when set), older than ``min_age``, not
    launched within ``min_unused``, carrying none of ``keep_tagged``, not referenced and
    not protected.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    keep_last: PosInt = 1
    max_age: Age | None = None
    min_age: Age = DAY_S
    min_unused: Age = 7 * DAY_S
    keep_tagged: tuple[TagKey, ...] = ()
    version_depth: Annotated[int, Field(strict=True, ge=1, le=10000)] = 10
