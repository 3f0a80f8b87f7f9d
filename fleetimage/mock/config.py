"""The mock endpoint's knobs: :class:`MockConfig` and :class:`FaultConfig`.

Both are frozen dataclasses that reject bad values at construction time with
:class:`~fleetimage.errors.MockError`, so a typo in a test or benchmark fails loudly before any
server starts.

Time knobs are in *AWS seconds*: ``time_scale`` divides every delay (pending time, visibility
lag, slow answers) and multiplies every bucket refill rate, so ``time_scale=60`` runs an hour of
AWS behaviour in a minute with the same shape (bursts are not scaled).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from fleetimage.errors import MockError

__all__ = ["DEFAULT_STATE_MIX", "INSTANCE_STATES", "REFILL_MODES", "FaultConfig", "MockConfig"]

REFILL_MODES = ("continuous", "per_second")
INSTANCE_STATES = ("pending", "running", "shutting-down", "terminated", "stopping", "stopped")

#: The default share of each instance state in the synthetic fleet (mostly running).
DEFAULT_STATE_MIX: Mapping[str, float] = MappingProxyType(
    {"running": 0.82, "stopped": 0.08, "stopping": 0.03, "terminated": 0.04, "pending": 0.03}
)

_ACCOUNT_RE = re.compile(r"^\d{12}$")
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")


def _check_rate(name: str, value: float) -> None:
    if not isinstance(value, int | float) or math.isnan(value) or not 0.0 <= value <= 1.0:
        raise MockError(f"{name} must be a rate between 0 and 1, got {value!r}")


def _check_non_negative(name: str, value: float) -> None:
    if not isinstance(value, int | float) or math.isnan(value) or value < 0:
        raise MockError(f"{name} must be a number >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Injected faults. Each rate is a probability per request (0..1), drawn from a
    ``random.Random`` seeded by :attr:`MockConfig.seed`, so a run is reproducible.

    ``internal_error``   HTTP 500 ``InternalError``, nothing applied.
    ``unavailable``      HTTP 503 ``Unavailable``, nothing applied.
    ``throttle``         extra HTTP 503 ``RequestLimitExceeded``, nothing applied.
    ``reset``            the connection is closed without an answer, nothing applied.
    ``lost_answer``      the action IS applied, then the connection is closed without an
                         answer (what makes naive CreateImage retries duplicate AMIs).
    ``slow``/``slow_s``  the answer is delayed by ``slow_s`` AWS seconds (/ time_scale).
    ``actions``          restrict all faults to these actions (None: every action).

    The failing rates (all but ``slow``) are exclusive and must sum to <= 1.
    """

    internal_error: float = 0.0
    unavailable: float = 0.0
    throttle: float = 0.0
    reset: float = 0.0
    lost_answer: float = 0.0
    slow: float = 0.0
    slow_s: float = 1.0
    actions: frozenset[str] | None = None

    def __post_init__(self) -> None:
        for name in (
            "internal_error",
            "unavailable",
            "throttle",
            "reset",
            "lost_answer",
            "slow",
        ):
            _check_rate(f"FaultConfig.{name}", getattr(self, name))
        if self.failure_total > 1.0 + 1e-9:
            raise MockError("FaultConfig: the failing rates (all but slow) must sum to <= 1")
        _check_non_negative("FaultConfig.slow_s", self.slow_s)
        if self.actions is not None:
            acts: object = self.actions
            if isinstance(acts, str) or not all(isinstance(a, str) for a in self.actions):
                raise MockError("FaultConfig.actions must be a set of action names or None")
            object.__setattr__(self, "actions", frozenset(self.actions))

    @property
    def failure_total(self) -> float:
        """The probability that a request in scope fails (or loses its answer)."""
        return (
            self.internal_error + self.unavailable + self.throttle + self.reset + self.lost_answer
        )

    @property
    def enabled(self) -> bool:
        return self.failure_total > 0 or self.slow > 0


@dataclass(frozen=True, slots=True)
class MockConfig:
    """What the mock serves and how it behaves.

    ``regions`` × ``accounts`` each get ``instances_per_region`` synthetic instances,
    deterministic from ``seed``; ``accounts[0]`` is the default account (access keys that do
    not carry an account id land there). ``pending_s`` is the median time an image stays
    ``pending`` (log-normal with ``pending_sigma`` > 0, fixed otherwise); ``failure_rate`` of
    the images end ``failed``. ``visibility_lag_s`` hides a new image from DescribeImages for
    that long. ``limits`` overrides ``fleetimage/data/limits.yaml`` as
    ``{action: (burst, rate_per_s)}``; actions not listed are unlimited. ``neighbour_load``
    is the share of every bucket drained by other tools. ``state_mix`` maps instance states to
    weights. ``denied_roles`` holds role ARNs or 12-digit accounts whose AssumeRole is denied.
    ``refill`` is how buckets refill: ``continuous`` or ``per_second`` (whole AWS seconds).
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
    # --- bucket refill (benchmarks) ---
    # "continuous": tokens accrue smoothly (kind to clients, the tests' default).
    # "per_second": rate_per_s tokens are added once per AWS second (AWS's documented
    # behaviour, "refills every second"); the benchmarks' default.
    refill: str = "continuous"

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        regions: object = self.regions
        if isinstance(regions, str) or not self.regions:
            raise MockError("MockConfig.regions must be a non-empty tuple of region names")
        set_(self, "regions", tuple(self.regions))
        for region in self.regions:
            if not isinstance(region, str) or not _REGION_RE.match(region):
                raise MockError(f"MockConfig.regions: {region!r} is not a region name")
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
        for name in ("pending_s", "pending_sigma", "visibility_lag_s"):
            _check_non_negative(f"MockConfig.{name}", getattr(self, name))
        _check_rate("MockConfig.failure_rate", self.failure_rate)
        _check_rate("MockConfig.neighbour_load", self.neighbour_load)
        if self.limits is not None:
            clean: dict[str, tuple[float, float]] = {}
            for action, pair in self.limits.items():
                try:
                    burst, rate = pair
                except (TypeError, ValueError):
                    raise MockError(
                        f"MockConfig.limits[{action!r}] must be (burst, rate_per_s)"
                    ) from None
                _check_non_negative(f"MockConfig.limits[{action!r}] burst", burst)
                _check_non_negative(f"MockConfig.limits[{action!r}] rate_per_s", rate)
                clean[action] = (float(burst), float(rate))
            set_(self, "limits", MappingProxyType(clean))
        if self.state_mix is not None:
            for state, weight in self.state_mix.items():
                if state not in INSTANCE_STATES:
                    raise MockError(f"MockConfig.state_mix: unknown instance state {state!r}")
                _check_non_negative(f"MockConfig.state_mix[{state!r}]", weight)
            if sum(self.state_mix.values()) <= 0:
                raise MockError("MockConfig.state_mix weights must not all be 0")
            set_(self, "state_mix", MappingProxyType(dict(self.state_mix)))
        if not isinstance(self.faults, FaultConfig):
            raise MockError("MockConfig.faults must be a FaultConfig")
        set_(self, "denied_roles", frozenset(self.denied_roles))
        if self.refill not in REFILL_MODES:
            raise MockError(f"MockConfig.refill must be one of {REFILL_MODES}, got {self.refill!r}")

    @property
    def default_account(self) -> str:
        return self.accounts[0]

    def scaled(self, aws_seconds: float) -> float:
        """Convert a delay in AWS seconds to wall seconds under ``time_scale``."""
        return aws_seconds / self.time_scale
