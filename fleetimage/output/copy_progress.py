"""Live progress of the copies: per destination, counted by the copies' state machine."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from fleetimage.core.copies import (
    CopyEvent,
    CopyKey,
    CopyRecord,
    CopyState,
    copy_kind,
    copy_transition,
)
from fleetimage.core.models import Event

__all__ = ["CopyProgress"]

C = CopyState
_NOT_OK = frozenset({C.FAILED, C.TIMED_OUT, C.NOT_STARTED, C.UNKNOWN})


@dataclass(slots=True)
class _Destination:
    states: dict[CopyKey, CopyState] = field(default_factory=dict)
    sent: set[CopyKey] = field(default_factory=set)


class CopyProgress:
    """Counts copy events per destination (a sync subscriber; never blocks)."""

    def __init__(self) -> None:
        self._dests: dict[str, _Destination] = {}

    def __bool__(self) -> bool:
        return bool(self._dests)

    def seed(self, records: Iterable[CopyRecord]) -> None:
        for rec in records:
            dest = self._dests.setdefault(rec.key.destination, _Destination())
            dest.states[rec.key] = rec.state
            if rec.state is not C.PLANNED and rec.state is not C.NOT_STARTED:
                dest.sent.add(rec.key)

    def __call__(self, event: Event) -> None:
        kind = copy_kind(event)
        if kind is None:
            return
        assert isinstance(event, CopyEvent)
        dest = self._dests.setdefault(event.destination, _Destination())
        new = copy_transition(dest.states.get(event.key), kind)
        if new is None:
            return
        dest.states[event.key] = new
        if kind in ("requested", "created"):
            dest.sent.add(event.key)

    def lines(self) -> list[str]:
        """``copies → eu-west-1: 40 copies, 12 requested, 10 pending, 28 available, 0 failed``"""
        out = []
        for name in sorted(self._dests):
            dest = self._dests[name]
            counts = Counter(dest.states.values())
            failed = sum(counts[s] for s in _NOT_OK)
            out.append(
                f"copies → {name}: {len(dest.states)} copies, {len(dest.sent)} requested, "
                f"{counts[C.PENDING]} pending, {counts[C.AVAILABLE]} available, {failed} failed"
            )
        return out
