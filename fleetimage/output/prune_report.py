"""Prune's report: one item per image considered (deleted, kept with why, failed), as JSON or
CSV (by the path's extension, as for ``run --report``).

Outcomes: ``deleted`` (the image and its snapshots are gone; a snapshot shared with another
AMI is ``kept-shared``), ``kept`` (``reason`` says why: a rule, a reference, protection, a
recent launch, a check right before deletion, or "not confirmed"), ``failed`` (an AWS answer
refused it; ``reason`` holds the code), ``planned`` (a dry run, or not settled yet: resume
finishes it).

CSV: one row per item, header :data:`ITEM_FIELDS`; ``snapshots`` is
``snap-1=deleted;snap-2=kept-shared``; RFC 4180 quoting and CRLF line ends.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from fleetimage.output.report import write_atomic

__all__ = ["ITEM_FIELDS", "OUTCOMES", "PruneItem", "PruneReport"]

OUTCOMES = ("deleted", "kept", "failed", "planned")


@dataclass(slots=True)
class PruneItem:
    account: str
    region: str
    image_id: str
    name: str
    instance_id: str
    run_id: str
    outcome: str  # one of OUTCOMES
    reason: str = ""  # why kept / why failed
    snapshots: dict[str, str] = field(default_factory=dict)  # id -> deleted|kept-shared|failed
    size_gib: int = 0


ITEM_FIELDS = tuple(f.name for f in fields(PruneItem))


@dataclass(slots=True)
class PruneReport:
    prune_id: str
    fleet: str
    started_at: datetime
    finished_at: datetime | None = None
    dry_run: bool = False
    run_id: str | None = None
    items: list[PruneItem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # lane errors, Recycle Bin rules

    def count(self, outcome: str) -> int:
        return sum(1 for i in self.items if i.outcome == outcome)

    @property
    def ok(self) -> bool:
        return self.count("failed") == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "prune_id": self.prune_id,
            "fleet": self.fleet,
            "run_id": self.run_id,
            "dry_run": self.dry_run,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "summary": {o: self.count(o) for o in OUTCOMES},
            "notes": list(self.notes),
            "items": [asdict(i) for i in self.items],
        }

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=ITEM_FIELDS)
        writer.writeheader()
        for item in self.items:
            row = asdict(item)
            row["snapshots"] = ";".join(f"{s}={o}" for s, o in item.snapshots.items())
            writer.writerow(row)
        return out.getvalue()

    def write(self, path: str | os.PathLike[str]) -> Path:
        """CSV if ``path`` ends in ``.csv``, else JSON; atomically (temp file + rename)."""
        target = Path(path)
        csv_out = target.suffix.lower() == ".csv"
        text = self.to_csv() if csv_out else json.dumps(self.to_dict(), indent=2) + "\n"
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, text)
        return target
