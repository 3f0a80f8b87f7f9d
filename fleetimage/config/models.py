"""The fleet config's frozen pydantic models: every key of ``config/fleet.example.yaml``.

Validation raises nothing but :class:`~fleetimage.core.errors.ConfigError`, whose message names
the file, the dotted field path (``targets[0].regions[1]``) and the fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from fleetimage.config.checks import (
    EXTERNAL_ID_RE,
    MAX_USER_TAGS,
    SESSION_NAME_RE,
    DeviceName,
    FilterValue,
    FleetName,
    InstanceId,
    NonNegFloat,
    NonNegInt,
    PosFloat,
    PosInt,
    Region,
    RoleArn,
    StrictBool,
    TagKey,
    TagValue,
    non_empty,
)
from fleetimage.config.errors import (
    FieldError,
    one_line,
    to_config_error,
)
from fleetimage.config.limits import load_default_limits
from fleetimage.config.retention import RetentionOptions
from fleetimage.core import naming
from fleetimage.core.errors import ConfigError

__all__ = [
    "AccountSpec",
    "ConcurrencyOptions",
    "ErrorBudget",
    "FleetConfig",
    "ImageOptions",
    "LimitSpec",
    "Limits",
    "RegionLimits",
    "RetentionOptions",
    "RetryOptions",
    "TargetSpec",
    "WaitOptions",
]

_FROZEN = ConfigDict(frozen=True, extra="forbid")
# AssumeRole's DurationSeconds bounds (STS API reference).
MIN_SESSION_S = 900
MAX_SESSION_S = 43_200


# --- models -------------------------------------------------------------------------------


class AccountSpec(BaseModel):
    """An account reached by assuming ``role_arn``.

    ``duration_s`` is AssumeRole's DurationSeconds: how long each session lasts (STS allows
    900-43,200; at most the role's MaxSessionDuration, and at most 3,600 when your own
    credentials are themselves an assumed role). Sessions renew themselves before they expire:
    once less than ``renew_fraction`` of a session is left (measured against the session's
    real expiry, so a time-scaled endpoint scales the margin too), and at the latest at half
    of that.
    """

    model_config = _FROZEN
    role_arn: RoleArn
    external_id: str | None = None
    session_name: str = "fleetimage"
    duration_s: Annotated[int, Field(strict=True)] = 3600
    renew_fraction: Annotated[float, Field(strict=True, gt=0, le=0.5)] = 0.15

    @field_validator("external_id")
    @classmethod
    def _external_id(cls, value: str | None) -> str | None:
        if value is not None and not EXTERNAL_ID_RE.fullmatch(value):
            raise ValueError("external_id must be 2-1224 characters of letters, digits, +=,.@:/-")
        return value

    @field_validator("session_name")
    @classmethod
    def _session_name(cls, value: str) -> str:
        if not SESSION_NAME_RE.fullmatch(value):
            raise ValueError("session_name must be 2-64 characters of letters, digits, +=,.@_-")
        return value

    @field_validator("duration_s")
    @classmethod
    def _duration(cls, value: int) -> int:
        if not MIN_SESSION_S <= value <= MAX_SESSION_S:
            raise ValueError(
                f"must be {MIN_SESSION_S}-{MAX_SESSION_S} seconds (AssumeRole's "
                f"DurationSeconds; default 3600), got {value}"
            )
        return value


class TargetSpec(BaseModel):
    """Which instances to image: regions x (filters and/or instance ids) x accounts."""

    model_config = _FROZEN
    regions: Annotated[tuple[Region, ...], non_empty("region", "[us-east-1]")]
    filters: dict[str, tuple[FilterValue, ...]] = Field(default_factory=dict)
    instance_ids: tuple[InstanceId, ...] = ()
    all_instances: StrictBool = False
    accounts: tuple[AccountSpec, ...] = ()

    @field_validator("filters", mode="before")
    @classmethod
    def _filter_scalars(cls, value: object) -> object:
        # `instance-state-name: running` means [running], as in the AWS CLI.
        if isinstance(value, dict):
            return {k: [v] if isinstance(v, str | int | float) else v for k, v in value.items()}
        return value

    @field_validator("filters")
    @classmethod
    def _filtersnon_empty(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for name, values in value.items():
            if not name.strip():
                raise ValueError("filter names must not be empty (e.g. 'tag:Env')")
            if not values:
                raise FieldError("list at least one value for this filter", (name,))
        return value

    @model_validator(mode="after")
    def _selects_something(self) -> Self:
        if not (self.filters or self.instance_ids or self.all_instances):
            raise ValueError(
                "target has neither filters nor instance_ids; add one, or set "
                "all_instances: true to image every instance in these regions"
            )
        return self


class ImageOptions(BaseModel):
    """How each image is named, described and tagged."""

    model_config = _FROZEN
    name_template: str = "fleetimage-{instance_id}-{run_id}"
    description: str = "fleetimage image of {instance_id} (run {run_id})"
    no_reboot: StrictBool = True
    tags: dict[TagKey, TagValue] = Field(default_factory=dict)
    copy_instance_tags: StrictBool = False
    tag_snapshots: StrictBool = True
    exclude_devices: tuple[DeviceName, ...] = ()

    @field_validator("name_template")
    @classmethod
    def _name_template(cls, value: str) -> str:
        naming.validate_template(value)
        return value

    @field_validator("description")
    @classmethod
    def _description(cls, value: str) -> str:
        naming.validate_description_template(value)
        return value

    @field_validator("tags")
    @classmethod
    def _tag_count(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_USER_TAGS:
            raise ValueError(f"at most {MAX_USER_TAGS} tags (AWS allows 50; fleetimage uses 3)")
        return value


class WaitOptions(BaseModel):
    """Waiting for images to become available."""

    model_config = _FROZEN
    enabled: StrictBool = True
    timeout_s: PosFloat = 7200.0
    poll_interval_s: PosFloat = 15.0
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


class FleetConfig(BaseModel):
    """A whole, validated fleet config. ``source`` is the file it came from.

    ``name`` is the fleet's name, written on every image as tag ``fleetimage:fleet``; prune
    touches only images carrying it. ``load_config`` defaults it to the file's stem.
    """

    model_config = _FROZEN
    name: FleetName | None = None
    targets: Annotated[tuple[TargetSpec, ...], non_empty("target", "a regions + filters entry")]
    image: ImageOptions = Field(default_factory=ImageOptions)
    wait: WaitOptions = Field(default_factory=WaitOptions)
    limits: Limits = Field(default_factory=Limits)
    concurrency: ConcurrencyOptions = Field(default_factory=ConcurrencyOptions)
    retry: RetryOptions = Field(default_factory=RetryOptions)
    max_errors: ErrorBudget = Field(default_factory=lambda: ErrorBudget.model_validate("10%"))
    retention: RetentionOptions = Field(default_factory=RetentionOptions)
    source: str | None = None

    def limits_for(self, region: str) -> dict[str, tuple[int, float]]:
        """``{action: (burst, rate_per_s)}``: limits.yaml < action overrides < region's."""
        merged = load_default_limits()
        for action, spec in self.limits.actions.items():
            merged[action] = spec.apply(merged[action])
        region_limits = self.limits.regions.get(region)
        if region_limits is not None:
            for action, spec in region_limits.actions.items():
                merged[action] = spec.apply(merged[action])
        return merged

    @classmethod
    def from_snapshot(cls, data: Mapping[str, Any]) -> FleetConfig:
        """Rebuild from ``json.loads(config.model_dump_json())`` (the journal's snapshot)."""
        source = data.get("source") if isinstance(data, Mapping) else None
        return validate(dict(data), source=str(source) if source else "<snapshot>")


def validate(data: dict[Any, Any], *, source: str) -> FleetConfig:
    try:
        return FleetConfig.model_validate(data)
    except ValidationError as exc:
        raise to_config_error(exc, source, FleetConfig) from None
    except ConfigError:
        raise
    except Exception as exc:  # nothing but ConfigError leaves this module
        message = one_line(f"cannot validate: {type(exc).__name__}: {exc}")
        raise ConfigError(message, file=source) from exc
