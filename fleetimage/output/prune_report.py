"""Prune's report: one item per image considered (deleted, kept with why, failed), as JSON."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["PruneItem", "PruneReport"]


@dataclass(slots=True)
class PruneItem:
    account: str
    region: str
    image_id: str
    name: str
    instance_id: str
    run_id: str
    outcome: str  # deleted | kept | failed | planned (dry run)
    reason: str = ""  # why kept / why failed
    snapshots: dict[str, str] = field(default_factory=dict)  # id -> deleted|kept-shared|failed
    size_gib: int = 0


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
            "summary": {o: self.count(o) for o in ("deleted", "kept", "failed", "planned")},
            "notes": list(self.notes),
            "items": [asdict(i) for i in self.items],
        }

    def write(self, path: str | os.PathLike[str]) -> Path:
        out = Path(path)
        out.write_text(json.dumps(self.to_dict(), indent=2) + "\n", "utf-8")
        return out
