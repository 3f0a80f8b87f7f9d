"""Copies in the report: folding copy events into one :class:`CopyResult` per (target,
destination), by the copies' state machine (:mod:`fleetimage.core.copies`), the journal's rules.

JSON: the report's ``"copies"`` list (one object per copy, the :class:`CopyResult` fields) and
``"copy_counts"`` (per outcome, plus ``total``). CSV: ``write("x.csv")`` also writes
``x.copies.csv`` when the run has copies, one row per copy, same conventions as the targets'.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from fleetimage.core.copies import (
    CopyAvailable,
    CopyCreated,
    CopyEvent,
    CopyFailed,
    CopyKey,
    CopyPlanned,
    CopyRecord,
    CopyRequested,
    CopyResult,
    CopyState,
    copy_kind,
    copy_outcome,
    copy_transition,
)
from fleetimage.core.models import Event, Outcome

__all__ = [
    "COPY_FIELDS",
    "CopyCollector",
    "copies_csv",
    "copy_counts",
    "copy_from_dict",
    "copy_to_dict",
]

COPY_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(CopyResult))


@dataclass
class _Copy:
    state: CopyState | None = None
    source_image_id: str = ""
    name: str = ""
    image_id: str | None = None
    attempts: int = 0
    error_code: str | None = None
    error_message: str | None = None
    completed_at: datetime | None = None

    def apply(self, event: CopyEvent) -> None:
        match event:
            case CopyPlanned():
                self.source_image_id, self.name = event.source_image_id, event.name
                self.error_code = self.error_message = None
            case CopyRequested():
                if event.source_image_id != self.source_image_id:
                    self.image_id = None
                self.source_image_id, self.name = event.source_image_id, event.name
                self.attempts = max(self.attempts, event.attempt)
                self.error_code = self.error_message = self.completed_at = None
            case CopyCreated():
                self.image_id = event.image_id
                self.error_code = self.error_message = None
            case CopyAvailable():
                self.image_id, self.completed_at = event.image_id, event.at
                self.error_code = self.error_message = None
            case CopyFailed():
                self.image_id = event.image_id or self.image_id
                self.error_code, self.error_message = event.error_code, event.error_message
                self.completed_at = event.at


class CopyCollector:
    """Event subscriber (sync) keeping every copy's state for the report."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._copies: dict[CopyKey, _Copy] = {}

    def seed(self, records: Iterable[CopyRecord]) -> None:
        for rec in records:
            self._copies[rec.key] = _Copy(
                rec.state,
                rec.source_image_id,
                rec.name,
                rec.image_id,
                rec.attempts,
                rec.error_code,
                rec.error_message,
            )

    def __call__(self, event: Event) -> None:
        kind = copy_kind(event)
        if kind is None or event.run_id != self.run_id:
            return
        assert isinstance(event, CopyEvent)
        copy = self._copies.setdefault(event.key, _Copy())
        new = copy_transition(copy.state, kind)
        if new is None:
            return
        copy.state = new
        copy.apply(event)

    def results(self) -> tuple[CopyResult, ...]:
        out = []
        for key in sorted(
            self._copies, key=lambda k: (k.account, k.source_region, k.instance_id, k.destination)
        ):
            c = self._copies[key]
            if c.state is None:
                continue
            code, message = c.error_code, c.error_message
            if code is None and c.state in (CopyState.PLANNED, CopyState.NOT_STARTED):
                code, message = "NotStarted", "the run ended before CopyImage was sent"
            elif code is None and c.state is CopyState.REQUESTING:
                code = "NoAnswer"
                message = "CopyImage was sent but no answer was recorded; resume looks it up"
            out.append(
                CopyResult(
                    key.account,
                    key.source_region,
                    key.instance_id,
                    key.destination,
                    copy_outcome(c.state),
                    c.source_image_id,
                    c.name,
                    c.image_id,
                    code,
                    message,
                    c.attempts,
                    c.completed_at,
                )
            )
        return tuple(out)


def copy_counts(copies: Iterable[CopyResult]) -> dict[str, int]:
    seen = Counter(c.outcome.value for c in copies)
    counts = {o.value: seen.get(o.value, 0) for o in Outcome if o not in _NEVER}
    counts["total"] = sum(seen.values())
    return counts


_NEVER = frozenset({Outcome.SKIPPED, Outcome.DRY_RUN})


def copy_to_dict(copy: CopyResult) -> dict[str, Any]:
    data = asdict(copy)
    data["outcome"] = copy.outcome.value
    data["completed_at"] = copy.completed_at.isoformat() if copy.completed_at else None
    return data


def copy_from_dict(data: Mapping[str, Any]) -> CopyResult:
    def opt(key: str) -> str | None:
        value = data.get(key)
        return str(value) if value not in (None, "") else None

    done = data.get("completed_at")
    return CopyResult(
        account=str(data["account"]),
        source_region=str(data["source_region"]),
        instance_id=str(data["instance_id"]),
        destination=str(data["destination"]),
        outcome=Outcome(data["outcome"]),
        source_image_id=str(data.get("source_image_id") or ""),
        image_name=str(data.get("image_name") or ""),
        image_id=opt("image_id"),
        error_code=opt("error_code"),
        error_message=opt("error_message"),
        attempts=int(data.get("attempts") or 0),
        completed_at=datetime.fromisoformat(done) if done else None,
    )


def copies_csv(copies: Iterable[CopyResult]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COPY_FIELDS)
    writer.writeheader()
    for copy in copies:
        writer.writerow({k: ("" if v is None else v) for k, v in copy_to_dict(copy).items()})
    return out.getvalue()
