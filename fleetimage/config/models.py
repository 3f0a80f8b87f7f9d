"""The fleet config's frozen pydantic models: every key of ``config/fleet.example.yaml``.

Validation raises nothing but :class:`~fleetimage.core.errors.ConfigError`, whose message names
the file, the dotted field path (``targets[0].regions[1]``) and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from fleetimage.config.checks import (
    EXTERNAL_ID_RE,
    MAX_USER_TAGS,
    SESSION_NAME_RE,
    AccountId,
    DeviceName,
    FilterValue,
    FleetName,
    InstanceId,
    OrgUnitId,
    PosFloat,
    Region,
    RoleArn,
    RoleName,
    StrictBool,
    TagKey,
    TagValue,
    non_empty,
)
from fleetimage.config.copying import CopyOptions
from fleetimage.config.errors import (
    TAG_PREFIX,
    FieldError,
    one_line,
    to_config_error,
)
from fleetimage.config.limits import load_default_limits
from fleetimage.config.notify import NotifyOptions
from fleetimage.config.options import (
    ConcurrencyOptions,
    ErrorBudget,
    LimiterOptions,
    Limits,
    LimitSpec,
    RegionLimits,
    RetryOptions,
    WaitOptions,
)
from fleetimage.config.retention import RetentionOptions
from fleetimage.core import naming
from fleetimage.core.errors import ConfigError

__all__ = [
    "AccountItem",
    "AccountSpec",
    "ConcurrencyOptions",
    "CopyOptions",
    "ErrorBudget",
    "FleetConfig",
    "ImageOptions",
    "LimitSpec",
    "LimiterOptions",
    "Limits",
    "NotifyOptions",
    "OrgUnitSpec",
    "RegionLimits",
    "RetentionOptions",
    "RetryOptions",
    "RoleSession",
    "TargetSpec",
    "WaitOptions",
]

_FROZEN = ConfigDict(frozen=True, extra="forbid")
# AssumeRole's DurationSeconds bounds (STS API reference).
MIN_SESSION_S = 900
MAX_SESSION_S = 43_200


# --- models -------------------------------------------------------------------------------


class RoleSession(BaseModel):
    """How a role is assumed: AssumeRole's ExternalId, RoleSessionName and DurationSeconds.

    ``duration_s`` is AssumeRole's DurationSeconds: how long each session lasts (STS allows
    900-43,200; at most the role's MaxSessionDuration, and at most 3,600 when your own
    credentials are themselves an assumed role). Sessions renew themselves before they expire:
    once less than ``renew_fraction`` of a session is left (measured against the session's
    real expiry, so a time-scaled endpoint scales the margin too), and at the latest at half
    of that.
    """

    model_config = _FROZEN
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


class AccountSpec(RoleSession):
    """An account reached by assuming ``role_arn`` (see :class:`RoleSession`)."""

    role_arn: RoleArn


class OrgUnitSpec(RoleSession):
    """Every ACTIVE account under an AWS Organizations OU (child OUs included), reached by
    assuming ``role_name`` in each, except the ``exclude``d ones.

    Resolved when the run is planned (ListChildren / ListAccountsForParent, from the
    organization's management account or a delegated administrator); suspended accounts
    are skipped. ``organization_unit`` may also be the root (``r-...``): the whole
    organization.
    """

    organization_unit: OrgUnitId
    role_name: RoleName = "fleetimage"
    exclude: tuple[AccountId, ...] = ()

    def account(self, account_id: str, partition: str = "aws") -> AccountSpec:
        """The :class:`AccountSpec` of one account found under the OU."""
        return AccountSpec(
            role_arn=f"arn:{partition}:iam::{account_id}:role/{self.role_name}",
            external_id=self.external_id,
            session_name=self.session_name,
            duration_s=self.duration_s,
            renew_fraction=self.renew_fraction,
        )


def _account_kind(value: Any) -> str:
    ou = isinstance(value, OrgUnitSpec) or (
        isinstance(value, Mapping) and "organization_unit" in value
    )
    return f"{TAG_PREFIX}{'ou' if ou else 'role'}"


# An item of a target's accounts: a role ARN, or an OU (told apart by organization_unit).
AccountItem = Annotated[
    Annotated[AccountSpec, Tag(f"{TAG_PREFIX}role")]
    | Annotated[OrgUnitSpec, Tag(f"{TAG_PREFIX}ou")],
    Discriminator(_account_kind),
]


class TargetSpec(BaseModel):
    """Which instances to image: regions x (filters and/or instance ids) x accounts."""

    model_config = _FROZEN
    regions: Annotated[tuple[Region, ...], non_empty("region", "[us-east-1]")]
    filters: dict[str, tuple[FilterValue, ...]] = Field(default_factory=dict)
    instance_ids: tuple[InstanceId, ...] = ()
    all_instances: StrictBool = False
    accounts: tuple[AccountItem, ...] = ()

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
            raise ValueError(
                f"at most {MAX_USER_TAGS} tags (AWS allows 50; fleetimage uses {50 - MAX_USER_TAGS})"
            )
        return value


class FleetConfig(BaseModel):
    """A whole, validated fleet config. ``source`` is the file it came from.

    ``name`` is the fleet's name, written on every image as tag ``fleetimage:fleet``; prune
    touches only images carrying it. ``load_config`` defaults it to the file's stem.
    """

    # ``copy`` is the YAML key; the attribute is ``copy_`` (BaseModel.copy exists), and the
    # journal's snapshot (model_dump) names it so.
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
    name: FleetName | None = None
    targets: Annotated[tuple[TargetSpec, ...], non_empty("target", "a regions + filters entry")]
    image: ImageOptions = Field(default_factory=ImageOptions)
    wait: WaitOptions = Field(default_factory=WaitOptions)
    limits: Limits = Field(default_factory=Limits)
    concurrency: ConcurrencyOptions = Field(default_factory=ConcurrencyOptions)
    retry: RetryOptions = Field(default_factory=RetryOptions)
    limiter: LimiterOptions = Field(default_factory=LimiterOptions)
    max_errors: ErrorBudget = Field(default_factory=lambda: ErrorBudget.model_validate("10%"))
    retention: RetentionOptions = Field(default_factory=RetentionOptions)
    notify: NotifyOptions | None = None
    copy_: CopyOptions = Field(default_factory=CopyOptions, alias="copy")
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
                "min_poll_interval_s": w.min_poll_interval_s / ts,
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
                "max_outage_s": r.max_outage_s / ts,
                "breaker_cooldown_s": r.breaker_cooldown_s / ts,
                "breaker_max_cooldown_s": r.breaker_max_cooldown_s / ts,
            }
        )

    def bucket_options(self) -> dict[str, float]:
        """``AdaptiveTokenBucket`` keyword arguments for ``limiter``, in wall seconds."""
        ts, lim = self.time_scale, self.limiter
        return {
            "min_coalesce_s": lim.min_coalesce_s / ts,
            "max_credit_s": lim.max_credit_s / ts,
            "recovery_fraction_per_s": lim.recovery_fraction_per_s * ts,
            "probe_fraction": lim.probe_fraction,
            "probe_memory_s": lim.probe_memory_s / ts,
            "refill_period_s": lim.refill_period_s / ts,
        }

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
