"""Cross-region copies: their identity, their one state machine, their events and results.

A copy is one (target, destination region): the target's image (the *source*, in the
target's region) copied by CopyImage into the destination. Its idempotency key is its
``ClientToken``, :func:`client_token` — a hash of (run id, instance id, destination, source
image id): stable across retries and resumes, new for a source re-created by
``--retry-failed``. How events move a copy (the journal, the report and resume all use it)::

    event          moves a copy in                                       to
    planned        (new) planned not_started                             planned
    requested      (new) planned not_started requesting failed           requesting
    created        (new) planned not_started requesting unknown failed   pending
    available      anything but available                                available
    failed         anything but available                                failed
    timed_out      pending unknown timed_out                             timed_out
    unknown        requesting pending unknown timed_out                  unknown
    not_started    (new) planned not_started                             not_started
    refused        (new) planned not_started requesting                  not_started

As for targets: ``available`` is final, a copy that may exist (requesting, pending, unknown,
timed_out) is never relabelled unsent, and ``failed`` means EC2 said so. ``refused`` is EC2's
``ResourceLimitExceeded`` for a copy whose destination then stopped: CopyImage was answered
and applied nothing (its token made no copy), so a ``requesting`` copy is unsent again.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType

from fleetimage.core.models import Event, Outcome

__all__ = [
    "COPY_OPEN",
    "COPY_SENT",
    "COPY_SETTLED",
    "COPY_TRANSITIONS",
    "CopyAvailable",
    "CopyCreated",
    "CopyEvent",
    "CopyFailed",
    "CopyKey",
    "CopyPlanned",
    "CopyRecord",
    "CopyRequested",
    "CopyResult",
    "CopyState",
    "client_token",
    "copy_kind",
    "copy_outcome",
    "copy_transition",
]


def client_token(run_id: str, instance_id: str, destination: str, source_image_id: str) -> str:
    """CopyImage's ClientToken for one copy: 64 hex characters (AWS allows <= 64 ASCII)."""
    text = f"fleetimage-copy\0{run_id}\0{instance_id}\0{destination}\0{source_image_id}"
    return hashlib.sha256(text.encode()).hexdigest()


class CopyState(enum.StrEnum):
    PLANNED = "planned"
    REQUESTING = "requesting"  # committed before CopyImage is sent
    PENDING = "pending"
    AVAILABLE = "available"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    NOT_STARTED = "not_started"
    UNKNOWN = "unknown"


C = CopyState
COPY_SENT = frozenset({C.REQUESTING, C.PENDING, C.UNKNOWN, C.TIMED_OUT})
COPY_SETTLED = frozenset({C.AVAILABLE, C.FAILED})
COPY_OPEN = frozenset({C.PLANNED, C.NOT_STARTED, *COPY_SENT})
_UNSENT: frozenset[CopyState | None] = frozenset({None, C.PLANNED, C.NOT_STARTED})
_ALL: frozenset[CopyState | None] = frozenset({None, *C})

COPY_TRANSITIONS: Mapping[str, tuple[frozenset[CopyState | None], CopyState]] = MappingProxyType(
    {
        "planned": (_UNSENT, C.PLANNED),
        "requested": (_UNSENT | {C.REQUESTING, C.FAILED}, C.REQUESTING),
        "created": (_UNSENT | {C.REQUESTING, C.UNKNOWN, C.FAILED}, C.PENDING),
        "available": (_ALL - {C.AVAILABLE}, C.AVAILABLE),
        "failed": (_ALL - {C.AVAILABLE}, C.FAILED),
        "timed_out": (frozenset({C.PENDING, C.UNKNOWN, C.TIMED_OUT}), C.TIMED_OUT),
        "unknown": (frozenset({C.REQUESTING, C.PENDING, C.UNKNOWN, C.TIMED_OUT}), C.UNKNOWN),
        "not_started": (_UNSENT, C.NOT_STARTED),
        "refused": (_UNSENT | {C.REQUESTING}, C.NOT_STARTED),
    }
)


def copy_transition(state: CopyState | None, kind: str) -> CopyState | None:
    """The state ``kind`` moves a copy in ``state`` to, or None if it leaves it alone."""
    sources, target = COPY_TRANSITIONS[kind]
    return target if state in sources else None


_OUTCOMES = {
    C.PLANNED: Outcome.NOT_STARTED,
    C.NOT_STARTED: Outcome.NOT_STARTED,
    C.REQUESTING: Outcome.UNKNOWN,
    C.PENDING: Outcome.PENDING,
    C.UNKNOWN: Outcome.UNKNOWN,
    C.TIMED_OUT: Outcome.TIMED_OUT,
    C.AVAILABLE: Outcome.AVAILABLE,
    C.FAILED: Outcome.FAILED,
}


def copy_outcome(state: CopyState) -> Outcome:
    return _OUTCOMES[state]


@dataclass(frozen=True, slots=True)
class CopyKey:
    """One copy: a target (account, its region, instance) and a destination region."""

    account: str
    source_region: str
    instance_id: str
    destination: str


# --- events: ``region`` is the source's; the destination is a field of its own -------------


@dataclass(frozen=True, slots=True)
class CopyEvent(Event):
    destination: str

    @property
    def key(self) -> CopyKey:
        return CopyKey(self.account, self.region, self.instance_id or "", self.destination)


@dataclass(frozen=True, slots=True)
class CopyPlanned(CopyEvent):
    source_image_id: str
    name: str
    client_token: str


@dataclass(frozen=True, slots=True)
class CopyRequested(CopyEvent):
    """Committed before CopyImage leaves (write-ahead), with the token it carries."""

    source_image_id: str
    name: str
    client_token: str
    attempt: int


@dataclass(frozen=True, slots=True)
class CopyCreated(CopyEvent):
    image_id: str
    adopted: bool  # found by token or by name and tags rather than answered


@dataclass(frozen=True, slots=True)
class CopyAvailable(CopyEvent):
    image_id: str


@dataclass(frozen=True, slots=True)
class CopyFailed(CopyEvent):
    """Failed, timed out, unknown or not started (``outcome`` says which)."""

    outcome: Outcome
    error_code: str
    error_message: str
    image_id: str | None = None
    # NOT_STARTED because EC2 refused the request (ResourceLimitExceeded): nothing applied.
    refused: bool = False


def copy_kind(event: Event) -> str | None:
    """The row of :data:`COPY_TRANSITIONS` an event is, or None if it moves no copy."""
    match event:
        case CopyPlanned():
            return "planned"
        case CopyRequested():
            return "requested"
        case CopyCreated():
            return "created"
        case CopyAvailable():
            return "available"
        case CopyFailed():
            if event.refused and event.outcome is Outcome.NOT_STARTED:
                return "refused"
            return _FAILED_KINDS.get(event.outcome, "failed")
    return None


_FAILED_KINDS = {
    Outcome.TIMED_OUT: "timed_out",
    Outcome.UNKNOWN: "unknown",
    Outcome.NOT_STARTED: "not_started",
}


@dataclass(frozen=True, slots=True)
class CopyRecord:
    """What the journal knows of one copy: what resume starts from."""

    key: CopyKey
    state: CopyState
    source_image_id: str
    name: str
    client_token: str
    image_id: str | None = None
    attempts: int = 0
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class CopyResult:
    """One copy's line in the report."""

    account: str
    source_region: str
    instance_id: str
    destination: str
    outcome: Outcome
    source_image_id: str
    image_name: str
    image_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    attempts: int = 0
    completed_at: datetime | None = None
