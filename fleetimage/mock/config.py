"""The mock endpoint's knobs: :class:`MockConfig`, with its scheduled :class:`Outage` windows
and :class:`InstanceEvent` s (the faults drawn per request are mock/fault_config.py's
:class:`FaultConfig`, CopyImage's mock/copy_config.py's :class:`CopyConfig`).

All are frozen dataclasses that reject bad values at construction time with
:class:`~fleetimage.core.errors.MockError`, so a typo in a test or benchmark fails loudly before any
server starts.

Time knobs are in *AWS seconds*: ``time_scale`` divides every delay (pending time, visibility
lag, slow answers, latency, session lengths) and multiplies every bucket refill rate, so
``time_scale=60`` runs an hour of AWS behaviour in a minute with the same shape (bursts are not
scaled). Points in time (:class:`Outage` windows, :class:`InstanceEvent` times,
``own_credentials_expire_after_s``) are AWS seconds since the mock started: AWS time ``t``
happens at wall time ``start + t / time_scale`` (see :mod:`fleetimage.mock.clock`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from fleetimage.core.errors import MockError
from fleetimage.mock.checks import check_finite, check_non_negative, check_rate, check_region
from fleetimage.mock.copy_config import CopyConfig
from fleetimage.mock.fault_config import FaultConfig
from fleetimage.mock.organizations import OrgTree

__all__ = [
    "DEFAULT_STATE_MIX",
    "INSTANCE_STATES",
    "OUTAGE_MODES",
    "REFILL_MODES",
    "InstanceEvent",
    "MockConfig",
    "Outage",
]

REFILL_MODES = ("continuous", "per_second")
INSTANCE_STATES = ("pending", "running", "shutting-down", "terminated", "stopping", "stopped")

#: The default share of each instance state in the synthetic fleet (mostly running).
DEFAULT_STATE_MIX: Mapping[str, float] = MappingProxyType(
    {"running": 0.82, "stopped": 0.08, "stopping": 0.03, "terminated": 0.04, "pending": 0.03}
)

OUTAGE_MODES = ("error", "timeout")

_ACCOUNT_RE = re.compile(r"^\d{12}$")
_ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/(?:[\w+=,.@-]+/)*[\w+=,.@-]+$")
_INSTANCE_ID_RE = re.compile(r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
#: AWS's bounds of a role's MaxSessionDuration (IAM), and its default.
MAX_SESSION_RANGE_S = (3600, 43200)


@dataclass(frozen=True, slots=True)
class Outage:
    """From AWS time ``start_s`` to ``end_s`` (seconds since the mock started) requests of
    ``action`` (None: every action, STS included) in ``region`` (None: every region) fail.

    ``mode="error"``    answer HTTP 503 ``Unavailable`` at once, nothing applied.
    ``mode="timeout"``  hold the request unanswered until the window ends (or the client
                        hangs up), then close the connection: nothing applied, never forever.
    """

    start_s: float
    end_s: float
    region: str | None = None
    action: str | None = None
    mode: str = "error"

    def __post_init__(self) -> None:
        check_finite("Outage.start_s", self.start_s)
        check_non_negative("Outage.end_s", self.end_s)
        if self.end_s <= self.start_s:
            raise MockError(f"Outage.end_s must be > start_s, got {self.start_s}..{self.end_s}")
        if self.region is not None:
            check_region("Outage.region", self.region)
        if self.action is not None and (not isinstance(self.action, str) or not self.action):
            raise MockError(f"Outage.action must be an action name or None, got {self.action!r}")
        if self.mode not in OUTAGE_MODES:
            raise MockError(f"Outage.mode must be 'error' or 'timeout', got {self.mode!r}")

    def covers(self, region: str, action: str, aws_now: float) -> bool:
        return (
            self.start_s <= aws_now < self.end_s
            and (self.region is None or self.region == region)
            and (self.action is None or self.action == action)
        )


@dataclass(frozen=True, slots=True)
class InstanceEvent:
    """At AWS time ``at_s`` (seconds since the mock started), instance ``instance_id`` of
    (``account`` or the default account, ``region`` or the first configured region) changes:
    to ``state``, and/or gains ``set_tags``, and/or loses ``remove_tags``; or, with
    ``vanish=True``, disappears (``InvalidInstanceID.NotFound``, not listed) for good.
    An event whose instance does not exist by then is skipped (and reported as such)."""

    at_s: float
    instance_id: str
    region: str | None = None
    account: str | None = None
    state: str | None = None
    vanish: bool = False
    set_tags: Mapping[str, str] | None = field(default=None, hash=False)
    remove_tags: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        check_finite("InstanceEvent.at_s", self.at_s)
        if not isinstance(self.instance_id, str) or not _INSTANCE_ID_RE.match(self.instance_id):
            raise MockError(f"InstanceEvent.instance_id: {self.instance_id!r} is not an i-... id")
        if self.region is not None:
            check_region("InstanceEvent.region", self.region)
        if self.account is not None and (
            not isinstance(self.account, str) or not _ACCOUNT_RE.match(self.account)
        ):
            raise MockError(f"InstanceEvent.account: {self.account!r} is not a 12-digit id")
        if self.state is not None and self.state not in INSTANCE_STATES:
            raise MockError(f"InstanceEvent.state: unknown instance state {self.state!r}")
        remove: object = self.remove_tags
        if isinstance(remove, str):
            raise MockError("InstanceEvent.remove_tags must be a set of tag keys, not a string")
        object.__setattr__(self, "remove_tags", frozenset(self.remove_tags))
        if self.set_tags is not None:
            object.__setattr__(self, "set_tags", MappingProxyType(dict(self.set_tags)))
        if not (self.state or self.vanish or self.set_tags or self.remove_tags):
            raise MockError(
                "InstanceEvent must change something: state, vanish, set_tags or remove_tags"
            )


@dataclass(frozen=True, slots=True)
class MockConfig:
    """What the mock serves and how it behaves.

    ``regions`` × ``accounts`` each get ``instances_per_region`` synthetic instances,
    deterministic from ``seed``; ``accounts[0]`` is the default account (access keys that do
    not carry an account id land there). ``pending_s`` is the median time an image stays
    ``pending`` (log-normal with ``pending_sigma`` > 0, fixed otherwise); ``failure_rate`` of
    the images end ``failed``. ``visibility_lag_s`` hides a new image from DescribeImages for
    that long; ``deregistered_listed_s`` keeps a deregistered image listed (state
    ``deregistered``) for that long, as EC2 does "for a short interval" (DescribeImages API
    reference); 0: gone at once. ``limits`` overrides ``fleetimage/config/limits.yaml`` as
    ``{action: (burst, rate_per_s)}``; actions not listed are unlimited. ``neighbour_load``
    is the share of every bucket drained by other tools. ``state_mix`` maps instance states to
    weights. ``denied_roles`` holds role ARNs or 12-digit accounts whose AssumeRole is denied.

    Time made real (all AWS seconds, scaled by ``time_scale``):

    ``role_max_session_s``   role ARN -> MaxSessionDuration (3600..43200); roles not listed
                             have AWS's default, 3600. AssumeRole's DurationSeconds must fit.
    ``own_credentials_expire_after_s``  the caller's own (non-mock-issued) keys expire at this
                             AWS time; None: they never do (``MockEC2.expire_key`` still can).
    ``outages``              :class:`Outage` windows (503 Unavailable, or held then dropped).
    ``instance_events``      :class:`InstanceEvent` changes at given AWS times.
    ``latency_s``            extra time before every answer; ``latency_jitter_s`` adds a
                             uniform draw in ±jitter (seeded, clamped at 0);
                             ``region_latency_s`` adds a per-region extra.

    ``rejected_access_keys``: requests signed with these access keys are refused as AWS
    refuses unknown keys (403 ``InvalidClientTokenId`` from STS, 401 ``AuthFailure`` from
    EC2), before anything else.
    ``refill`` is how buckets refill: ``continuous`` or ``per_second`` (whole AWS seconds).
    ``organization``: the AWS Organizations tree the mock lists (:class:`OrgTree`), or None.

    An endpoint that is not quite EC2 (a proxy, another cloud's EC2 API), for what the engine
    must survive; all False by default, as EC2 behaves:

    ``ignore_dry_run``       every action ignores ``DryRun=true`` and is applied as if it were
                             absent (EC2 answers ``DryRunOperation`` and applies nothing).
    ``duplicate_message_without_id``  ``InvalidAMIName.Duplicate`` says only that the name is
                             in use, naming no AMI (EC2's message names it: "... is already in
                             use by AMI ami-...", which the engine reads).
    ``create_image_answer_without_id``  CreateImage is applied and answered 200 without
                             its ``imageId`` (a proxy that drops the member).
    """

    regions: tuple[str, ...] = ("us-east-1",)
    instances_per_region: int = 20
    accounts: tuple[str, ...] = ("123456789012",)
    seed: int = 0
    time_scale: float = 1.0
    pending_s: float = 2.0
    pending_sigma: float = 0.0
    failure_rate: float = 0.0
    visibility_lag_s: float = 0.0
    throttling: bool = True
    limits: Mapping[str, tuple[float, float]] | None = field(default=None, hash=False)
    neighbour_load: float = 0.0
    state_mix: Mapping[str, float] | None = field(default=None, hash=False)
    faults: FaultConfig = field(default_factory=FaultConfig)
    denied_roles: frozenset[str] = frozenset()
    max_volumes: int = 4
    role_max_session_s: Mapping[str, int] | None = field(default=None, hash=False)
    own_credentials_expire_after_s: float | None = None
    outages: tuple[Outage, ...] = ()
    instance_events: tuple[InstanceEvent, ...] = ()
    latency_s: float = 0.0
    latency_jitter_s: float = 0.0
    region_latency_s: Mapping[str, float] | None = field(default=None, hash=False)
    rejected_access_keys: frozenset[str] = frozenset()
    # --- bucket refill (benchmarks) ---
    # "continuous": tokens accrue smoothly (kind to clients, the tests' default).
    # "per_second": rate_per_s tokens are added once per AWS second (AWS's documented
    # behaviour, "refills every second"); the benchmarks' default.
    refill: str = "continuous"
    organization: OrgTree | None = field(default=None, hash=False)
    copies: CopyConfig = field(default_factory=CopyConfig)  # CopyImage (mock/copy_config.py)
    deregistered_listed_s: float = 0.0
    ignore_dry_run: bool = False
    duplicate_message_without_id: bool = False
    create_image_answer_without_id: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        regions: object = self.regions
        if isinstance(regions, str) or not self.regions:
            raise MockError("MockConfig.regions must be a non-empty tuple of region names")
        set_(self, "regions", tuple(self.regions))
        for region in self.regions:
            check_region("MockConfig.regions", region)
        accounts: object = self.accounts
        if isinstance(accounts, str) or not self.accounts:
            raise MockError("MockConfig.accounts must be a non-empty tuple of 12-digit ids")
        set_(self, "accounts", tuple(self.accounts))
        for account in self.accounts:
            if not isinstance(account, str) or not _ACCOUNT_RE.match(account):
                raise MockError(f"MockConfig.accounts: {account!r} is not a 12-digit account id")
        if not isinstance(self.instances_per_region, int) or self.instances_per_region < 0:
            raise MockError("MockConfig.instances_per_region must be an int >= 0")
        if not isinstance(self.max_volumes, int) or not 1 <= self.max_volumes <= 20:
            raise MockError("MockConfig.max_volumes must be an int in 1..20")
        if not isinstance(self.seed, int):
            raise MockError("MockConfig.seed must be an int")
        if (
            not isinstance(self.time_scale, int | float)
            or not math.isfinite(self.time_scale)
            or self.time_scale <= 0
        ):
            raise MockError(f"MockConfig.time_scale must be > 0, got {self.time_scale!r}")
        for name in ("pending_s", "pending_sigma", "visibility_lag_s", "deregistered_listed_s"):
            check_non_negative(f"MockConfig.{name}", getattr(self, name))
        check_rate("MockConfig.failure_rate", self.failure_rate)
        check_rate("MockConfig.neighbour_load", self.neighbour_load)
        if self.limits is not None:
            clean: dict[str, tuple[float, float]] = {}
            for action, pair in self.limits.items():
                try:
                    burst, rate = pair
                except (TypeError, ValueError):
                    raise MockError(
                        f"MockConfig.limits[{action!r}] must be (burst, rate_per_s)"
                    ) from None
                check_non_negative(f"MockConfig.limits[{action!r}] burst", burst)
                check_non_negative(f"MockConfig.limits[{action!r}] rate_per_s", rate)
                clean[action] = (float(burst), float(rate))
            set_(self, "limits", MappingProxyType(clean))
        if self.state_mix is not None:
            for state, weight in self.state_mix.items():
                if state not in INSTANCE_STATES:
                    raise MockError(f"MockConfig.state_mix: unknown instance state {state!r}")
                check_non_negative(f"MockConfig.state_mix[{state!r}]", weight)
            if sum(self.state_mix.values()) <= 0:
                raise MockError("MockConfig.state_mix weights must not all be 0")
            set_(self, "state_mix", MappingProxyType(dict(self.state_mix)))
        if not isinstance(self.copies, CopyConfig):
            raise MockError("MockConfig.copies must be a CopyConfig")
        if not isinstance(self.faults, FaultConfig):
            raise MockError("MockConfig.faults must be a FaultConfig")
        set_(self, "denied_roles", frozenset(self.denied_roles))
        for name in (
            "ignore_dry_run",
            "duplicate_message_without_id",
            "create_image_answer_without_id",
        ):
            if not isinstance(getattr(self, name), bool):
                raise MockError(f"MockConfig.{name} must be True or False")
        self._check_time_knobs()

    def _check_time_knobs(self) -> None:
        set_ = object.__setattr__
        if self.role_max_session_s is not None:
            set_(
                self,
                "role_max_session_s",
                MappingProxyType(check_role_max(self.role_max_session_s)),
            )
        if self.own_credentials_expire_after_s is not None:
            check_non_negative(
                "MockConfig.own_credentials_expire_after_s", self.own_credentials_expire_after_s
            )
        for name, kind in (("outages", Outage), ("instance_events", InstanceEvent)):
            value: object = getattr(self, name)
            if not isinstance(value, tuple | list) or not all(isinstance(v, kind) for v in value):
                raise MockError(f"MockConfig.{name} must be a tuple of {kind.__name__}")
            set_(self, name, tuple(value))
        check_finite("MockConfig.latency_s", self.latency_s)
        check_finite("MockConfig.latency_jitter_s", self.latency_jitter_s)
        if self.region_latency_s is not None:
            set_(
                self,
                "region_latency_s",
                MappingProxyType(check_region_latency(self.region_latency_s)),
            )
        set_(self, "rejected_access_keys", frozenset(self.rejected_access_keys))
        if self.organization is not None and not isinstance(self.organization, OrgTree):
            raise MockError("MockConfig.organization must be an OrgTree or None")
        if self.refill not in REFILL_MODES:
            raise MockError(f"MockConfig.refill must be one of {REFILL_MODES}, got {self.refill!r}")

    @property
    def default_account(self) -> str:
        return self.accounts[0]

    def scaled(self, aws_seconds: float) -> float:
        """Convert a delay in AWS seconds to wall seconds under ``time_scale``."""
        return aws_seconds / self.time_scale


def check_role_max(value: Mapping[str, int]) -> dict[str, int]:
    """Validate ``role_max_session_s`` (role ARN -> 3600..43200 seconds)."""
    clean: dict[str, int] = {}
    lo, hi = MAX_SESSION_RANGE_S
    for arn, seconds in value.items():
        if not isinstance(arn, str) or not _ROLE_ARN_RE.match(arn):
            raise MockError(f"MockConfig.role_max_session_s: {arn!r} is not a role ARN")
        if isinstance(seconds, bool) or not isinstance(seconds, int) or not lo <= seconds <= hi:
            raise MockError(
                f"MockConfig.role_max_session_s[{arn!r}] must be an int in {lo}..{hi}, "
                f"got {seconds!r}"
            )
        clean[arn] = seconds
    return clean


def check_region_latency(value: Mapping[str, float]) -> dict[str, float]:
    """Validate ``region_latency_s`` (region -> extra AWS seconds >= 0)."""
    clean: dict[str, float] = {}
    for region, seconds in value.items():
        check_region("MockConfig.region_latency_s", region)
        check_finite(f"MockConfig.region_latency_s[{region!r}]", seconds)
        clean[region] = float(seconds)
    return clean
