"""The data that flows through a run: targets, image specs, results and events.

All of it is frozen: the engine produces new values rather than mutating shared ones, so that
subscribers (journal, progress, logs, report) can keep what they are handed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "Available",
    "BreakerChanged",
    "BreakerState",
    "Created",
    "Discovered",
    "DryRunChecked",
    "Event",
    "Failed",
    "ImageResult",
    "ImageSpec",
    "JournalState",
    "LaneFailed",
    "LaneFailure",
    "LaneKey",
    "LanePlanned",
    "Outcome",
    "Requested",
    "Retried",
    "RunStopping",
    "Skipped",
    "Target",
    "TargetRecord",
    "Throttled",
    "WorkerRestarted",
]


@dataclass(frozen=True, slots=True)
class LaneKey:
    """One (account, region) pair: the unit that owns a client, buckets and a waiter."""

    account: str
    region: str

    def __str__(self) -> str:
        return f"{self.account}/{self.region}"


@dataclass(frozen=True, slots=True)
class Target:
    """One instance to image, as discovery found it."""

    account: str
    region: str
    instance_id: str
    state: str = "running"
    tags: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    # Which assumed role (if any) reaches this account; None means the caller's own credentials.
    role_arn: str | None = None

    @property
    def lane(self) -> LaneKey:
        return LaneKey(self.account, self.region)


@dataclass(frozen=True, slots=True)
class ImageSpec:
    """Everything CreateImage needs for one target (rendered from the config's `image:`)."""

    target: Target
    name: str
    description: str
    no_reboot: bool
    tags: dict[str, str]
    tag_snapshots: bool
    exclude_devices: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the journal keeps it, so resume images exactly what was planned."""
        t = self.target
        return {
            "target": {
                "account": t.account,
                "region": t.region,
                "instance_id": t.instance_id,
                "state": t.state,
                "tags": dict(t.tags),
                "role_arn": t.role_arn,
            },
            "name": self.name,
            "description": self.description,
            "no_reboot": self.no_reboot,
            "tags": dict(self.tags),
            "tag_snapshots": self.tag_snapshots,
            "exclude_devices": list(self.exclude_devices),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageSpec:
        t = data["target"]
        return cls(
            target=Target(
                account=t["account"],
                region=t["region"],
                instance_id=t["instance_id"],
                state=t.get("state", "running"),
                tags=dict(t.get("tags") or {}),
                role_arn=t.get("role_arn"),
            ),
            name=data["name"],
            description=data.get("description", ""),
            no_reboot=bool(data["no_reboot"]),
            tags=dict(data.get("tags") or {}),
            tag_snapshots=bool(data.get("tag_snapshots", True)),
            exclude_devices=tuple(data.get("exclude_devices") or ()),
        )


class Outcome(enum.StrEnum):
    """The final state of one target in a run."""

    AVAILABLE = "available"
    FAILED = "failed"
    SKIPPED = "skipped"
    TIMED_OUT = "timed_out"
    NOT_STARTED = "not_started"
    DRY_RUN = "dry_run"
    PENDING = "pending"  # created but not waited for (wait disabled / --no-wait)
    # CreateImage may have been applied (sent, answer lost) or the image's state could not be
    # read: not failed, since EC2 never said so; resume looks again.
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class ImageResult:
    """One target's result in a :class:`~fleetimage.output.report.RunReport`."""

    account: str
    region: str
    instance_id: str
    outcome: Outcome
    image_id: str | None = None
    image_name: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    attempts: int = 0
    requested_at: datetime | None = None
    completed_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "region": self.region,
            "instance_id": self.instance_id,
            "outcome": self.outcome.value,
            "image_id": self.image_id,
            "image_name": self.image_name,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "attempts": self.attempts,
            "requested_at": self.requested_at.isoformat() if self.requested_at else None,
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
        }


@dataclass(frozen=True, slots=True)
class LaneFailure:
    """A whole lane could not run (AssumeRole denied, DescribeInstances refused, ...).

    ``affected``: the targets known to be in the lane (from the journal on resume), if any.
    """

    account: str
    region: str
    action: str
    error_code: str
    error_message: str
    affected: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "region": self.region,
            "action": self.action,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "affected": list(self.affected),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LaneFailure:
        return cls(
            account=str(data["account"]),
            region=str(data["region"]),
            action=str(data.get("action") or ""),
            error_code=str(data["error_code"]),
            error_message=str(data.get("error_message") or ""),
            affected=tuple(str(i) for i in data.get("affected") or ()),
        )


class JournalState(enum.StrEnum):
    """A target's state (journal, report, progress, resume); :mod:`fleetimage.core.states` holds
    the one table of how events move it. ``requesting`` is committed before CreateImage is sent;
    ``unknown``: the image id is known but its state was not confirmed."""

    PLANNED = "planned"
    REQUESTING = "requesting"
    PENDING = "pending"
    AVAILABLE = "available"
    FAILED = "failed"
    SKIPPED = "skipped"
    TIMED_OUT = "timed_out"
    NOT_STARTED = "not_started"
    DRY_RUN = "dry_run"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class TargetRecord:
    """What the journal knows of one target: what resume starts from."""

    account: str
    region: str
    instance_id: str
    state: JournalState
    image_name: str | None = None
    image_id: str | None = None
    attempts: int = 0
    error_code: str | None = None
    error_message: str | None = None
    spec: ImageSpec | None = field(default=None, compare=False)  # the planned request


# --- events -------------------------------------------------------------------------------
# The engine emits these; journal, progress, logs and report subscribe. The engine knows none
# of its subscribers.


@dataclass(frozen=True, slots=True)
class Event:
    run_id: str
    account: str
    region: str
    instance_id: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class Discovered(Event):
    """A target was found; ``image_name`` is the name it will get, ``spec`` the request."""

    image_name: str
    state: str
    spec: ImageSpec | None = None


@dataclass(frozen=True, slots=True)
class Requested(Event):
    """CreateImage is about to be sent (journal writes `requesting` before the send)."""

    image_name: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Created(Event):
    """CreateImage answered (or the image was adopted by name); the image is pending."""

    image_id: str
    image_name: str
    adopted: bool


@dataclass(frozen=True, slots=True)
class Available(Event):
    image_id: str


@dataclass(frozen=True, slots=True)
class Failed(Event):
    """A target ended badly: outcome is failed, timed_out or not_started."""

    outcome: Outcome
    error_code: str
    error_message: str
    image_id: str | None = None


@dataclass(frozen=True, slots=True)
class Skipped(Event):
    reason: str


@dataclass(frozen=True, slots=True)
class DryRunChecked(Event):
    """CreateImage with DryRun=True answered: ``ok`` when DryRunOperation (would succeed)."""

    ok: bool
    error_code: str
    error_message: str


@dataclass(frozen=True, slots=True)
class LanePlanned(Event):
    """A lane's discovery is complete (``instance_id`` is None); resume need not repeat it."""

    targets: int


@dataclass(frozen=True, slots=True)
class LaneFailed(Event):
    """A whole lane could not run (``instance_id`` is None); its targets are unknown or listed."""

    action: str
    error_code: str
    error_message: str
    affected: tuple[str, ...] = ()

    def failure(self) -> LaneFailure:
        return LaneFailure(
            self.account,
            self.region,
            self.action,
            self.error_code,
            self.error_message,
            self.affected,
        )


@dataclass(frozen=True, slots=True)
class Retried(Event):
    action: str
    attempt: int
    error_code: str
    delay_s: float


@dataclass(frozen=True, slots=True)
class Throttled(Event):
    action: str
    new_rate_per_s: float


class BreakerState(enum.StrEnum):
    """A lane's circuit breaker (see ``fleetimage.engine.breaker``)."""

    CLOSED = "closed"  # sends flow at the limiter's rate
    OPEN = "open"  # transient failures: every send of the lane waits out a cool-down
    HALF_OPEN = "half_open"  # one probe request at a time
    STOPPED = "stopped"  # open longer than retry.max_outage_s: no new images in this lane


@dataclass(frozen=True, slots=True)
class BreakerChanged(Event):
    """A lane's breaker changed state (``instance_id`` is None). ``reason`` says why in one
    line; ``last_error`` is the last transient error (``Code: message``), or ""."""

    state: BreakerState
    reason: str
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class RunStopping(Event):
    """The run stopped starting new images (``account``/``region`` "", ``instance_id`` None):
    ``reason`` is why (``ErrorBudgetExceeded``, ``DeadlineReached``, ``Interrupted``, ...);
    ``errors`` the errors counted against ``max_errors`` so far, of ``total`` targets known."""

    reason: str
    errors: int
    total: int


@dataclass(frozen=True, slots=True)
class WorkerRestarted(Event):
    """A worker process of a ``--workers`` run exited before its lanes were done and was
    started again on them from the journal (``account``/``region`` "", ``instance_id`` None).
    ``exit_code``: how it ended (negative: the signal that killed it)."""

    worker: int
    exit_code: int
    lanes: int
    restart: int
    of: int
