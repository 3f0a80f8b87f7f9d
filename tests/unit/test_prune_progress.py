"""Prune's progress counts and ETA, and its CSV report (no I/O beyond a tmp file)."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

from fleetimage.core.models import Throttled
from fleetimage.output.prune_progress import PruneProgress
from fleetimage.output.prune_report import ITEM_FIELDS, PruneItem, PruneReport


def _item(region: str, image_id: str, outcome: str) -> PruneItem:
    return PruneItem("111122223333", region, image_id, "n", "i-1", "r-1", outcome)


def test_counts_rate_and_eta() -> None:
    now = [0.0]
    progress = PruneProgress(lambda region: {"DeregisterImage": (100.0, 5.0)}, clock=lambda: now[0])
    progress.seed(_item("us-east-1", f"ami-{n}", "planned") for n in range(300))
    [row] = progress.rows()
    assert row.planned == 300 and row.eta_s == (300 - 100) / 5  # the bucket, before any deletion
    for n in range(50):
        now[0] = n * 0.1
        progress.on_item(_item("us-east-1", f"ami-{n}", "deleted"))
    progress.on_item(_item("us-east-1", "ami-x", "kept"))
    progress(
        Throttled(
            run_id="prune",
            account="111122223333",
            region="us-east-1",
            instance_id=None,
            at=datetime(2026, 1, 1, tzinfo=UTC),
            action="DeregisterImage",
            new_rate_per_s=4.0,
        )
    )
    now[0] = 5.0
    [row] = progress.rows()
    assert (row.deleted, row.kept, row.throttled) == (50, 1, 1)
    assert row.rate_per_s == 10.0  # 50 in the last 5 s
    assert row.eta_s == (300 - 51) / 10.0
    assert progress.lines()[0].endswith("ETA 25s")
    assert "300 to delete, 50 deleted, 1 kept, 0 failed, 1 throttled" in progress.lines()[0]


def test_csv_report_one_row_per_image(tmp_path: Path) -> None:
    report = PruneReport("p-1", "blue", datetime(2026, 1, 1, tzinfo=UTC))
    done = _item("us-east-1", "ami-1", "deleted")
    done.snapshots = {"snap-1": "deleted", "snap-2": "kept-shared"}
    report.items = [done, _item("eu-west-1", "ami-2", "kept")]
    report.items[1].reason = 'referenced by ec2:Instance arn:aws:ec2:…, "quoted"'
    path = report.write(tmp_path / "r.csv")
    rows = list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))
    assert tuple(rows[0]) == ITEM_FIELDS
    assert rows[0]["snapshots"] == "snap-1=deleted;snap-2=kept-shared"
    assert rows[1]["outcome"] == "kept" and rows[1]["reason"].endswith('"quoted"')
