"""The CLI's pure parts: deadline parsing, the progress tracker, the IAM policy, plan views."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cli_helpers import fleet_config

from fleetimage.aws.permissions import iam_policy
from fleetimage.config import parse_config
from fleetimage.core.durations import format_duration, parse_deadline, parse_duration
from fleetimage.core.models import (
    Available,
    Created,
    Discovered,
    Event,
    Failed,
    JournalState,
    Outcome,
    Requested,
    Skipped,
    TargetRecord,
    Throttled,
)
from fleetimage.output.progress import ProgressTracker

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("45m", 2700),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("2d", 172800),
        ("1h 30m", None),
        ("h", None),
        ("30x", None),
        ("", None),
        ("m30", None),
    ],
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


def test_parse_deadline_forms() -> None:
    assert parse_deadline("45m", now=NOW) == NOW + timedelta(minutes=45)
    assert parse_deadline("2026-03-01T13:00:00Z", now=NOW) == NOW + timedelta(hours=1)
    at = parse_deadline("2026-03-01T14:00:00+01:00", now=NOW)
    assert at == NOW + timedelta(hours=1) and at.tzinfo is UTC
    clock = parse_deadline("05:30", now=NOW)  # local time, next occurrence
    assert NOW < clock <= NOW + timedelta(days=1)
    assert clock.astimezone().strftime("%H:%M") == "05:30"
    for bad, message in [
        ("2026-03-01T11:00:00Z", "is in the past"),
        ("0", "positive"),
        ("25:00", "not a clock time"),
        ("tomorrow", "is not a duration"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_deadline(bad, now=NOW)


def test_format_duration() -> None:
    assert format_duration(0) == "0s"
    assert format_duration(12.5) == "12.5s"
    assert format_duration(190) == "3m 10s"
    assert format_duration(3 * 3600 + 125) == "3h 02m 05s"


def test_progress_tracker_counts_per_region() -> None:
    clock = [100.0]
    t = ProgressTracker(clock=lambda: clock[0])
    a, r = "111122223333", "eu-west-1"

    def ev(cls: type[Event], instance: str | None, *args: object) -> Event:
        return cls("run", a, r, instance, NOW, *args)

    for i in ("i-1", "i-2", "i-3", "i-4"):
        t(ev(Discovered, i, f"name-{i}", "running"))
    t(ev(Skipped, "i-4", "instance is terminated"))
    for i in ("i-1", "i-2", "i-3"):
        t(ev(Requested, i, f"name-{i}", 1))
    t(ev(Throttled, None, "CreateImage", 2.5))
    t(ev(Created, "i-1", "ami-1", "name-i-1", False))
    t(ev(Created, "i-2", "ami-2", "name-i-2", False))
    t(ev(Available, "i-1", "ami-1"))
    t(ev(Failed, "i-3", Outcome.FAILED, "InvalidParameterValue", "nope"))
    t(ev(Discovered, "i-1", "name-i-1", "running"))  # available is final
    clock[0] = 102.0
    [row] = t.rows()
    assert (row.targets, row.requested, row.pending, row.available) == (4, 3, 1, 1)
    assert (row.failed, row.skipped, row.throttled, row.done) == (1, 1, 1, 3)
    assert row.rate_per_s == pytest.approx(3 / 2)
    clock[0] = 200.0
    assert t.rows()[0].rate_per_s == 0
    assert "eu-west-1: 4 targets, 3 requested, 1 pending" in t.lines()[0]


def test_progress_tracker_seeded_from_journal() -> None:
    t = ProgressTracker()
    t.seed(
        [
            TargetRecord("a", "r", "i-1", JournalState.AVAILABLE, "n1", "ami-1"),
            TargetRecord("a", "r", "i-2", JournalState.REQUESTING, "n2"),
            TargetRecord("a", "r", "i-3", JournalState.PENDING, "n3", "ami-3"),
        ]
    )
    t(Discovered("run", "a", "r", "i-1", NOW, "n1", "running"))
    t(Discovered("run", "a", "r", "i-2", NOW, "n2", "running"))
    [row] = t.rows()
    assert (row.available, row.pending, row.requested, row.targets) == (1, 1, 3, 3)


def test_policy_lists_each_role_once_and_no_assume_role_without_roles() -> None:
    plain = iam_policy(parse_config(fleet_config()))
    assert all(s["Sid"] != "AssumeFleetRoles" for s in plain["Statement"])
    role = {"role_arn": "arn:aws:iam::111111111111:role/fleetimage"}
    cfg = parse_config(
        fleet_config(
            targets=[
                {"regions": ["us-east-1"], "all_instances": True, "accounts": [role]},
                {"regions": ["cn-north-1"], "all_instances": True, "accounts": [role]},
            ]
        )
    )
    policy = iam_policy(cfg)
    assume = next(s for s in policy["Statement"] if s["Sid"] == "AssumeFleetRoles")
    assert assume["Resource"] == [role["role_arn"]]
    create = next(s for s in policy["Statement"] if s["Sid"] == "CreateImage")
    assert {r.split(":")[1] for r in create["Resource"]} == {"aws", "aws-cn"}
