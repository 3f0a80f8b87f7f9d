"""The fleet config's option groups: wait, limits, concurrency, retry, limiter, error budget."""

from __future__ import annotations

import difflib
from typing import Annotated, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    model_serializer,
    model_validator,
)

from fleetimage.config.checks import (
    NonNegFloat,
    NonNegInt,
    PosFloat,
    PosInt,
    Region,
    StrictBool,
)
from fleetimage.config.errors import (
    FieldError,
)
from fleetimage.config.limits import load_default_limits

__all__ = [
    "ConcurrencyOptions",
    "ErrorBudget",
    "LimitSpec",
    "LimiterOptions",
    "Limits",
    "RegionLimits",
    "RetryOptions",
    "WaitOptions",
]

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class WaitOptions(BaseModel):
    """Waiting for images to become available."""

    model_config = _FROZEN
    enabled: StrictBool = True
    timeout_s: PosFloat = 7200.0
    # The longest between two polls (the schedule's ceiling, and its interval until the lane
    # has seen an image settle); min_poll_interval_s is the shortest.
    poll_interval_s: PosFloat = 15.0
    min_poll_interval_s: PosFloat = 1.0
    # DescribeImages calls per image waited for: the schedule plans 80 % of it (the rest pays
    # for polls past the budget: the tail rule's, and every poll_interval_s at the latest; up
    # to 4 polls are skipped in a row while the lane still creates images short of budget).
    polls_per_image: PosFloat = 0.05
    not_found_grace_s: NonNegFloat = 120.0


class LimitSpec(BaseModel):
    """An override of one action's bucket; unset fields keep the underlying value."""

    model_config = _FROZEN
    burst: Annotated[int | None, Field(strict=True, ge=1)] = None
    rate_per_s: Annotated[float | None, Field(strict=True, gt=0, allow_inf_nan=False)] = None

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.burst is None and self.rate_per_s is None:
            raise ValueError("set burst and/or rate_per_s (or remove the entry)")
        return self

    def apply(self, base: tuple[int, float]) -> tuple[int, float]:
        burst = self.burst if self.burst is not None else base[0]
        rate = self.rate_per_s if self.rate_per_s is not None else base[1]
        return burst, float(rate)


def _check_actions(data: object, *, extra_known: tuple[str, ...] = ()) -> None:
    if not isinstance(data, dict):
        return  # pydantic reports the type error
    known = tuple(load_default_limits())
    for key in data:
        if not isinstance(key, str):
            raise FieldError(
                f"key {key!r} was read by YAML as {'null' if key is None else 'a non-string'}; "
                f'quote it (e.g. "{key}") if it is meant as an action name'
            )
        if key in known or key in extra_known:
            continue
        hint = difflib.get_close_matches(str(key), known + extra_known, n=1)
        did = f"did you mean {hint[0]!r}? " if hint else ""
        raise FieldError(
            f"unknown action {key!r} ({did}known: {', '.join(sorted(known + extra_known))})",
            (key,),
        )


class RegionLimits(BaseModel):
    """Per-action overrides for one region: ``{CreateImage: {rate_per_s: 2}}``."""

    model_config = ConfigDict(frozen=True, extra="allow")
    __pydantic_extra__: dict[str, LimitSpec] = Field(init=False)

    @model_validator(mode="before")
    @classmethod
    def _known_actions(cls, data: object) -> object:
        _check_actions(data)
        return data

    @property
    def actions(self) -> dict[str, LimitSpec]:
        return dict(self.model_extra or {})


class Limits(BaseModel):
    """Overrides of ``limits.yaml``: per action, and per region under ``regions``."""

    model_config = ConfigDict(frozen=True, extra="allow")
    __pydantic_extra__: dict[str, LimitSpec] = Field(init=False)
    regions: dict[Region, RegionLimits] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _known_actions(cls, data: object) -> object:
        _check_actions(data, extra_known=("regions",))
        return data

    @property
    def actions(self) -> dict[str, LimitSpec]:
        return dict(self.model_extra or {})


class ConcurrencyOptions(BaseModel):
    model_config = _FROZEN
    max_in_flight_per_region: PosInt = 20
    max_pending_images_per_region: PosInt = 500


class RetryOptions(BaseModel):
    """Retries and the lane breaker; every time constant is a knob (tests scale them down)."""

    model_config = _FROZEN
    max_attempts: PosInt = 8  # calls outside a lane (STS); lane calls: breaker + max_outage_s
    base_delay_s: PosFloat = 0.5
    max_delay_s: PosFloat = 30.0
    quota_delay_s: PosFloat = 60.0
    quota_max_attempts: PosInt = 5
    request_timeout_s: PosFloat = 60.0
    max_outage_s: PosFloat = 1800.0
    breaker_failures: PosInt = 5
    breaker_cooldown_s: PosFloat = 1.0
    breaker_max_cooldown_s: PosFloat = 60.0

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        pairs = (("base_delay_s", "max_delay_s"), ("breaker_cooldown_s", "breaker_max_cooldown_s"))
        for low, high in pairs:
            lo, hi = getattr(self, low), getattr(self, high)
            if hi < lo:
                raise FieldError(f"{high} ({hi}) must be >= {low} ({lo})", (high,))
        return self


class LimiterOptions(BaseModel):
    """The adaptive limiter's time constants, in AWS seconds (see ``ratelimit.py``)."""

    model_config = _FROZEN
    min_coalesce_s: PosFloat = 1.0  # throttles this soon after a cut are the same event
    max_credit_s: PosFloat = 1.0  # a success credits at most this much time to recovery
    recovery_fraction_per_s: PosFloat = 0.05  # of the ceiling, per second of successes
    # After a cut within probe_memory_s of the last, the climb above the rate it left goes at
    # this share of that speed ...
    probe_fraction: Annotated[float, Field(strict=True, gt=0, le=1)] = 0.1
    probe_memory_s: NonNegFloat = 60.0  # ... for this long after the cut
    # The server adds its tokens in steps this far apart (AWS: every second); 0 = continuously.
    refill_period_s: NonNegFloat = 1.0


class ErrorBudget(BaseModel):
    """``max_errors``: a count N (stop once errors > N) or a percent P (errors > P% of total).

    Written as ``10``, ``"10"`` or ``"5%"``; serialised back to that form.
    """

    model_config = _FROZEN
    count: NonNegInt | None = None
    percent: Annotated[float | None, Field(strict=True, ge=0, le=100)] = None

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, data: object) -> object:
        if isinstance(data, dict):
            return data
        expected = 'expected a count (e.g. 10) or a percent (e.g. "5%")'
        if isinstance(data, bool) or not isinstance(data, int | str):
            raise ValueError(f"{expected}, got {data!r}")
        if isinstance(data, int):
            return {"count": data}
        text = data.strip()
        try:
            if text.endswith("%"):
                return {"percent": float(text[:-1])}
            return {"count": int(text)}
        except ValueError:
            raise ValueError(f"{expected}, got {data!r}") from None

    @model_validator(mode="after")
    def _one(self) -> Self:
        if (self.count is None) == (self.percent is None):
            raise ValueError('give either a count (e.g. 10) or a percent (e.g. "5%")')
        return self

    @model_serializer
    def _dump(self) -> int | str:
        if self.count is not None:
            return self.count
        assert self.percent is not None
        p = self.percent
        return f"{int(p) if p.is_integer() else p!r}%"

    def exceeded(self, errors: int, total: int) -> bool:
        """True when no new work should start: errors > N, or errors > P% of total."""
        if self.count is not None:
            return errors > self.count
        assert self.percent is not None
        return errors * 100 > self.percent * total  # integer-side compare: no float rounding
