"""The fleet config: frozen pydantic models, YAML loading, one-line errors naming field and fix.

``load_config(path)`` reads YAML (``yaml.safe_load`` only), ``parse_config(data)`` validates an
already-parsed mapping, and both raise nothing but :class:`~fleetimage.errors.ConfigError`,
whose message names the file, the dotted field path (``targets[0].regions[1]``) and the fix.
See ``config/fleet.example.yaml`` for every key, documented.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Self

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from fleetimage import naming
from fleetimage.config_errors import (
    FieldError,
    describe_value,
    one_line,
    to_config_error,
)
from fleetimage.errors import ConfigError

__all__ = [
    "AccountSpec",
    "ConcurrencyOptions",
    "ErrorBudget",
    "FleetConfig",
    "ImageOptions",
    "LimitSpec",
    "LimiterOptions",
    "Limits",
    "RegionLimits",
    "RetryOptions",
    "TargetSpec",
    "WaitOptions",
    "load_config",
    "load_default_limits",
    "parse_config",
]

_REGION_RE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")
_INSTANCE_ID_RE = re.compile(r"^i-[0-9a-f]{8}([0-9a-f]{9})?$")
_ROLE_ARN_RE = re.compile(r"^arn:(aws|aws-cn|aws-us-gov):iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_SESSION_NAME_RE = re.compile(r"^[\w+=,.@-]{2,64}$")
_EXTERNAL_ID_RE = re.compile(r"^[\w+=,.@:/-]{2,1224}$")
_DEVICE_RE = re.compile(r"^(/dev/)?[a-z][a-z0-9]{1,15}$")
# 50 tags per resource; fleetimage adds fleetimage:run-id and fleetimage:instance-id.
_MAX_USER_TAGS = 48


# --- scalar checks (Annotated so pydantic reports the exact list index / dict key) ----------


def _check_region(value: str) -> str:
    if not _REGION_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not an AWS region name (expected like us-east-1)")
    return value


def _check_instance_id(value: str) -> str:
    if not _INSTANCE_ID_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an EC2 instance id (expected i- and 8 or 17 lowercase hex digits, "
            "like i-0123456789abcdef0)"
        )
    return value


def _check_role_arn(value: str) -> str:
    if not _ROLE_ARN_RE.fullmatch(value):
        raise ValueError(
            f"role_arn {value!r} is malformed "
            "(expected arn:aws:iam::<12-digit account>:role/<name>)"
        )
    return value


def _check_tag_key(value: str) -> str:
    if not 1 <= len(value) <= 128:
        raise ValueError(f"tag key {value!r} must be 1-128 characters")
    if value.lower().startswith("aws:"):
        raise ValueError(f"tag key {value!r} starts with 'aws:', which AWS reserves; rename it")
    if value.lower().startswith("fleetimage:"):
        raise ValueError(
            f"tag key {value!r} starts with 'fleetimage:', which fleetimage sets itself; rename it"
        )
    return value


def _scalar_to_str(value: object) -> object:
    # YAML 1.1 turns yes/no/on/off into booleans: refuse rather than silently send "True".
    if isinstance(value, bool):
        raise ValueError(f"{value} is a YAML boolean; quote the value (e.g. 'yes' or 'true')")
    if isinstance(value, int | float):
        return str(value)
    return value


def _check_tag_value(value: str) -> str:
    if len(value) > 256:
        raise ValueError(f"tag value must be at most 256 characters (got {len(value)})")
    return value


def _check_device(value: str) -> str:
    if not _DEVICE_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a device name (expected like /dev/sdf or xvdf)")
    return value


def _non_empty(what: str, example: str) -> Any:
    def check(value: tuple[Any, ...]) -> tuple[Any, ...]:
        if not value:
            raise ValueError(f"must not be empty; list at least one {what} (e.g. {example})")
        return value

    return AfterValidator(check)


Region = Annotated[str, AfterValidator(_check_region)]
InstanceId = Annotated[str, AfterValidator(_check_instance_id)]
RoleArn = Annotated[str, AfterValidator(_check_role_arn)]
TagKey = Annotated[str, AfterValidator(_check_tag_key)]
TagValue = Annotated[str, BeforeValidator(_scalar_to_str), AfterValidator(_check_tag_value)]
FilterValue = Annotated[str, BeforeValidator(_scalar_to_str)]
DeviceName = Annotated[str, AfterValidator(_check_device)]
# strict: YAML gives real numbers and booleans; "5" or "yes" for one is a mistake worth naming.
PosInt = Annotated[int, Field(strict=True, ge=1)]
NonNegInt = Annotated[int, Field(strict=True, ge=0)]
PosFloat = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]
StrictBool = Annotated[bool, Field(strict=True)]

_FROZEN = ConfigDict(frozen=True, extra="forbid")


# --- models -------------------------------------------------------------------------------


class AccountSpec(BaseModel):
    """An account reached by assuming ``role_arn``."""

    model_config = _FROZEN
    role_arn: RoleArn
    external_id: str | None = None
    session_name: str = "fleetimage"

    @field_validator("external_id")
    @classmethod
    def _external_id(cls, value: str | None) -> str | None:
        if value is not None and not _EXTERNAL_ID_RE.fullmatch(value):
            raise ValueError("external_id must be 2-1224 characters of letters, digits, +=,.@:/-")
        return value

    @field_validator("session_name")
    @classmethod
    def _session_name(cls, value: str) -> str:
        if not _SESSION_NAME_RE.fullmatch(value):
            raise ValueError("session_name must be 2-64 characters of letters, digits, +=,.@_-")
        return value


class TargetSpec(BaseModel):
    """Which instances to image: regions x (filters and/or instance ids) x accounts."""

    model_config = _FROZEN
    regions: Annotated[tuple[Region, ...], _non_empty("region", "[us-east-1]")]
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
    def _filters_non_empty(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
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
        if len(value) > _MAX_USER_TAGS:
            raise ValueError(f"at most {_MAX_USER_TAGS} tags (AWS allows 50; fleetimage uses 2)")
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
    model_config = _FROZEN
    max_attempts: PosInt = 8
    base_delay_s: PosFloat = 0.5
    max_delay_s: PosFloat = 30.0
    quota_delay_s: PosFloat = 60.0
    quota_max_attempts: PosInt = 5
    request_timeout_s: PosFloat = 60.0

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.max_delay_s < self.base_delay_s:
            raise FieldError(
                f"max_delay_s ({self.max_delay_s}) must be >= base_delay_s ({self.base_delay_s})",
                ("max_delay_s",),
            )
        return self


class LimiterOptions(BaseModel):
    """The adaptive limiter's time constants, in AWS seconds (see ``ratelimit.py``)."""

    model_config = _FROZEN
    min_coalesce_s: PosFloat = 1.0  # throttles this soon after a cut are the same event
    max_credit_s: PosFloat = 1.0  # a success credits at most this much time to recovery
    recovery_fraction_per_s: PosFloat = 0.05  # of the ceiling, per second of successes


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
    """A whole, validated fleet config. ``source`` is the file it came from."""

    model_config = _FROZEN
    targets: Annotated[tuple[TargetSpec, ...], _non_empty("target", "a regions + filters entry")]
    image: ImageOptions = Field(default_factory=ImageOptions)
    wait: WaitOptions = Field(default_factory=WaitOptions)
    limits: Limits = Field(default_factory=Limits)
    concurrency: ConcurrencyOptions = Field(default_factory=ConcurrencyOptions)
    retry: RetryOptions = Field(default_factory=RetryOptions)
    limiter: LimiterOptions = Field(default_factory=LimiterOptions)
    max_errors: ErrorBudget = Field(default_factory=lambda: ErrorBudget.model_validate("10%"))
    # AWS seconds per wall second: 1 against AWS; a time-scaled mock's time_scale against it.
    # Every time and rate above is in AWS seconds; the engine reads them through limits_for,
    # wall_wait, wall_retry and bucket_options, which divide times and multiply rates by it
    # (request_timeout_s is a socket timeout and is not scaled).
    time_scale: PosFloat = 1.0
    source: str | None = None

    def limits_for(self, region: str) -> dict[str, tuple[int, float]]:
        """``{action: (burst, rate_per_s)}``: limits.yaml < action overrides < region's;
        rates per wall second (x ``time_scale``; bursts are not scaled)."""
        merged = load_default_limits()
        for action, spec in self.limits.actions.items():
            merged[action] = spec.apply(merged[action])
        region_limits = self.limits.regions.get(region)
        if region_limits is not None:
            for action, spec in region_limits.actions.items():
                merged[action] = spec.apply(merged[action])
        if self.time_scale != 1.0:
            merged = {a: (b, r * self.time_scale) for a, (b, r) in merged.items()}
        return merged

    @property
    def wall_wait(self) -> WaitOptions:
        """``wait`` with its times in wall seconds (/ ``time_scale``)."""
        ts, w = self.time_scale, self.wait
        if ts == 1.0:
            return w
        return w.model_copy(
            update={
                "timeout_s": w.timeout_s / ts,
                "poll_interval_s": w.poll_interval_s / ts,
                "not_found_grace_s": w.not_found_grace_s / ts,
            }
        )

    @property
    def wall_retry(self) -> RetryOptions:
        """``retry`` with its backoffs in wall seconds (/ ``time_scale``)."""
        ts, r = self.time_scale, self.retry
        if ts == 1.0:
            return r
        return r.model_copy(
            update={
                "base_delay_s": r.base_delay_s / ts,
                "max_delay_s": r.max_delay_s / ts,
                "quota_delay_s": r.quota_delay_s / ts,
            }
        )

    def bucket_options(self) -> dict[str, float]:
        """``AdaptiveTokenBucket`` keyword arguments for ``limiter``, in wall seconds."""
        ts, lim = self.time_scale, self.limiter
        return {
            "min_coalesce_s": lim.min_coalesce_s / ts,
            "max_credit_s": lim.max_credit_s / ts,
            "recovery_fraction_per_s": lim.recovery_fraction_per_s * ts,
        }

    @classmethod
    def from_snapshot(cls, data: Mapping[str, Any]) -> FleetConfig:
        """Rebuild from ``json.loads(config.model_dump_json())`` (the journal's snapshot)."""
        source = data.get("source") if isinstance(data, Mapping) else None
        return _validate(dict(data), source=str(source) if source else "<snapshot>")


# --- loading ------------------------------------------------------------------------------


@functools.cache
def _default_limits() -> tuple[tuple[str, int, float], ...]:
    text = resources.files("fleetimage").joinpath("data/limits.yaml").read_text("utf-8")
    raw = yaml.safe_load(text)
    return tuple((a, int(v["burst"]), float(v["rate_per_s"])) for a, v in raw.items())


def load_default_limits() -> dict[str, tuple[int, float]]:
    """AWS's default ``{action: (burst, rate_per_s)}`` from the packaged limits.yaml (a copy)."""
    return {action: (burst, rate) for action, burst, rate in _default_limits()}


def load_config(path: str | os.PathLike[str]) -> FleetConfig:
    """Read and validate a YAML fleet config; every problem is a one-line ConfigError."""
    file = os.fspath(path)
    try:
        text = Path(file).read_text("utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=file) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", file=file) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", file=file) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(one_line(f"invalid YAML{where}: {problem}"), file=file) from None
    return parse_config(data, source=file)


def parse_config(data: object, *, source: str = "<config>") -> FleetConfig:
    """Validate already-parsed config data (a mapping); raise ConfigError naming ``source``."""
    if data is None:
        raise ConfigError("config is empty; expected a mapping with a 'targets' key", file=source)
    if not isinstance(data, dict):
        raise ConfigError(
            f"top level must be a mapping with a 'targets' key, got {describe_value(data)}",
            file=source,
        )
    if "source" in data:
        raise ConfigError("unknown key 'source'", file=source)
    return _validate({**data, "source": source}, source=source)


def _validate(data: dict[Any, Any], *, source: str) -> FleetConfig:
    try:
        return FleetConfig.model_validate(data)
    except ValidationError as exc:
        raise to_config_error(exc, source, FleetConfig) from None
    except ConfigError:
        raise
    except Exception as exc:  # nothing but ConfigError leaves this module
        message = one_line(f"cannot validate: {type(exc).__name__}: {exc}")
        raise ConfigError(message, file=source) from exc
