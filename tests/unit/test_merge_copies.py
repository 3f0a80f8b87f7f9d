"""``report merge`` of shards that copied: the merged report must keep every shard's copies
(and their failures, which decide ``ok`` and the exit code)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fleetimage.core.copies import CopyResult
from fleetimage.core.models import ImageResult, Outcome
from fleetimage.output.merge import merge_reports
from fleetimage.output.report import RunReport

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _shard(index: int, region: str, copy_outcome: Outcome) -> RunReport:
    instance = f"i-{index:017x}"
    return RunReport(
        run_id="dr-1",
        started_at=T0,
        finished_at=T0 + timedelta(minutes=index + 1),
        results=(ImageResult("123456789012", region, instance, Outcome.AVAILABLE, f"ami-{index}"),),
        shard=f"{index}/2",
        copies=(
            CopyResult(
                "123456789012", region, instance, "eu-north-1", copy_outcome, f"ami-{index}",
                f"copy-{index}",
            ),
        ),
    )  # fmt: skip


def test_merge_keeps_every_shards_copies() -> None:
    a = _shard(0, "us-east-1", Outcome.AVAILABLE)
    b = _shard(1, "us-west-2", Outcome.FAILED)
    merged = merge_reports([("a.json", a), ("b.json", b)])
    assert merged.copies == a.copies + b.copies
    assert not merged.ok  # shard 1's failed copy makes the merged run not ok, as it did b
