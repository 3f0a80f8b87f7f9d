"""The fleet config: pydantic models, YAML loading, one-line errors, AWS's default limits.

Imports only :mod:`fleetimage.core`. Everything else reads a :class:`FleetConfig`.
"""

from fleetimage.config.limits import load_default_limits
from fleetimage.config.loading import load_config, parse_config
from fleetimage.config.models import (
    AccountItem,
    AccountSpec,
    ConcurrencyOptions,
    CopyOptions,
    ErrorBudget,
    FleetConfig,
    ImageOptions,
    Limits,
    LimitSpec,
    NotifyOptions,
    OrgUnitSpec,
    RegionLimits,
    RetentionOptions,
    RetryOptions,
    RoleSession,
    TargetSpec,
    WaitOptions,
)

__all__ = [
    "AccountItem",
    "AccountSpec",
    "ConcurrencyOptions",
    "CopyOptions",
    "ErrorBudget",
    "FleetConfig",
    "ImageOptions",
    "LimitSpec",
    "Limits",
    "NotifyOptions",
    "OrgUnitSpec",
    "RegionLimits",
    "RetentionOptions",
    "RetryOptions",
    "RoleSession",
    "TargetSpec",
    "WaitOptions",
    "load_config",
    "load_default_limits",
    "parse_config",
]
