"""The one state machine of a target: (state, event) → state, for everyone who keeps states.

The journal (as SQL generated from :data:`TRANSITIONS`), the report, the progress display and
resume all move a target with this table and nothing else, so they cannot disagree::

    event          moves a target in                                  to
    discovered     (new) planned not_started skipped dry_run          planned
    requested      (new) planned not_started skipped dry_run
                   requesting failed                                  requesting
    created        (new) planned not_started skipped dry_run
                   requesting failed                                  pending
    available      anything but available                             available
    failed         anything but available                             failed
    timed_out      pending unknown timed_out                          timed_out
    unknown        requesting pending unknown timed_out               unknown
    not_started    (new) planned not_started skipped dry_run          not_started
    skipped        (new) planned not_started skipped dry_run
                   requesting (EC2 refused: the instance is gone)     skipped
    dry_run        (new) planned not_started skipped dry_run          dry_run

Any other pair leaves the target as it is (the event is stale or would forget something).
The rules this encodes: ``available`` is final; a target for which CreateImage may have been
sent (requesting, pending, unknown, timed_out) is never relabelled ``not_started`` or
``planned``, nor ``skipped`` unless EC2 refused its request because of the instance's state —
a created image is always waited for; ``failed`` means EC2
said so (an image state, or a refusal of the request) and only a retry (``requested``) leaves
it. A target is finished when its state is in :data:`SETTLED`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from fleetimage.core.models import (
    Available,
    Created,
    Discovered,
    DryRunChecked,
    Event,
    Failed,
    JournalState,
    Outcome,
    Requested,
    Skipped,
)

__all__ = [
    "OPEN",
    "OPEN_OUTCOMES",
    "SENT",
    "SETTLED",
    "TRANSITIONS",
    "UNSENT",
    "event_kind",
    "outcome_of",
    "transition",
]

S = JournalState

#: Nothing was ever sent for these (None: a target not seen before).
UNSENT: frozenset[JournalState | None] = frozenset(
    {None, S.PLANNED, S.NOT_STARTED, S.SKIPPED, S.DRY_RUN}
)
#: CreateImage was (or may have been) sent and the outcome is not final.
SENT = frozenset({S.REQUESTING, S.PENDING, S.UNKNOWN, S.TIMED_OUT})
#: Done: resume leaves these alone (``failed`` only with ``--retry-failed``).
SETTLED = frozenset({S.AVAILABLE, S.FAILED, S.SKIPPED, S.DRY_RUN})
#: What resume still has to finish.
OPEN = frozenset({S.PLANNED, S.NOT_STARTED, *SENT})

_IMAGE_KNOWN = frozenset({S.PENDING, S.UNKNOWN, S.TIMED_OUT})
_ALL: frozenset[JournalState | None] = frozenset({None, *S})

#: event kind → (the states it moves a target from, the state it moves it to).
TRANSITIONS: Mapping[str, tuple[frozenset[JournalState | None], JournalState]] = MappingProxyType(
    {
        "discovered": (UNSENT, S.PLANNED),
        "requested": (UNSENT | {S.REQUESTING, S.FAILED}, S.REQUESTING),
        "created": (UNSENT | {S.REQUESTING, S.FAILED}, S.PENDING),
        "available": (_ALL - {S.AVAILABLE}, S.AVAILABLE),
        "failed": (_ALL - {S.AVAILABLE}, S.FAILED),
        "timed_out": (_IMAGE_KNOWN, S.TIMED_OUT),
        "unknown": (_IMAGE_KNOWN | {S.REQUESTING}, S.UNKNOWN),
        "not_started": (UNSENT, S.NOT_STARTED),
        # requesting: EC2 answered that the instance cannot be imaged any more (terminated,
        # gone) — no image was made; discovery alone never skips a sent target.
        "skipped": (UNSENT | {S.REQUESTING}, S.SKIPPED),
        "dry_run": (UNSENT, S.DRY_RUN),
    }
)

_FAILED_KINDS = {
    Outcome.FAILED: "failed",
    Outcome.TIMED_OUT: "timed_out",
    Outcome.NOT_STARTED: "not_started",
    Outcome.UNKNOWN: "unknown",
}


def event_kind(event: Event) -> str | None:
    """The row of :data:`TRANSITIONS` an event is, or None if it moves no target."""
    if event.instance_id is None:
        return None
    match event:
        case Discovered():
            return "discovered"
        case Requested():
            return "requested"
        case Created():
            return "created"
        case Available():
            return "available"
        case Failed():
            return _FAILED_KINDS.get(event.outcome, "failed")
        case Skipped():
            return "skipped"
        case DryRunChecked():
            return "dry_run"
    return None


def transition(state: JournalState | None, kind: str) -> JournalState | None:
    """The state ``kind`` moves a target in ``state`` to, or None if it leaves it alone."""
    sources, target = TRANSITIONS[kind]
    return target if state in sources else None


_OUTCOMES = {
    S.PLANNED: Outcome.NOT_STARTED,
    S.NOT_STARTED: Outcome.NOT_STARTED,
    S.REQUESTING: Outcome.UNKNOWN,  # sent, no answer recorded: resume looks it up by name
    S.PENDING: Outcome.PENDING,
    S.UNKNOWN: Outcome.UNKNOWN,
    S.TIMED_OUT: Outcome.TIMED_OUT,
    S.AVAILABLE: Outcome.AVAILABLE,
    S.FAILED: Outcome.FAILED,
    S.SKIPPED: Outcome.SKIPPED,
    S.DRY_RUN: Outcome.DRY_RUN,
}


def outcome_of(state: JournalState) -> Outcome:
    """What the report says of a target left in ``state``."""
    return _OUTCOMES[state]


#: The report's outcomes for targets a resume still has work for.
OPEN_OUTCOMES = frozenset(outcome_of(s) for s in OPEN)
