"""RunReport and ReportCollector: outcomes for every path, JSON/CSV round trips, rendering."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from fleetimage.core.models import (
    Available,
    Created,
    Discovered,
    DryRunChecked,
    Failed,
    ImageResult,
    JournalState,
    LaneFailed,
    LanePlanned,
    Outcome,
    Requested,
    Skipped,
    TargetRecord,
    Throttled,
)
from fleetimage.output.collector import ReportCollector
from fleetimage.output.report import RESULT_FIELDS, RunReport, read_results_csv, result_from_dict
from fleetimage.output.summary import render_summary

RUN = "run-1"
ACCT = "111122223333"
REGION = "eu-west-1"
T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=7)


def feed(c: ReportCollector, iid: str, *kinds: str, region: str = REGION) -> None:
    args = (RUN, ACCT, region, iid)
    name = f"img-{iid}"
    for kind in kinds:
        c(
            {
                "discovered": Discovered(*args, T0, image_name=name, state="running"),
                "requested": Requested(*args, T0, image_name=name, attempt=1),
                "created": Created(
                    *args, T0, image_id=f"ami-{iid}", image_name=name, adopted=False
                ),
                "available": Available(*args, T1, image_id=f"ami-{iid}"),
                "failed": Failed(*args, T1, Outcome.FAILED, "InvalidState", "image failed"),
                "timed_out": Failed(*args, T1, Outcome.TIMED_OUT, "Timeout", "waited 2h"),
                "not_started": Failed(*args, T1, Outcome.NOT_STARTED, "ErrorBudget", "budget"),
                "skipped": Skipped(*args, T1, reason="instance is terminated"),
                "dry_ok": DryRunChecked(*args, T1, True, "DryRunOperation", "would succeed"),
                "dry_bad": DryRunChecked(*args, T1, False, "UnauthorizedOperation", "denied"),
            }[kind]
        )


def by_id(report: RunReport) -> dict[str, ImageResult]:
    return {r.instance_id: r for r in report.results}


def test_collector_outcome_for_every_path() -> None:
    c = ReportCollector(RUN, T0)
    feed(c, "i-ok", "discovered", "requested", "created", "available")
    feed(c, "i-fail", "discovered", "requested", "created", "failed")
    feed(c, "i-time", "discovered", "requested", "created", "timed_out")
    feed(c, "i-ns", "discovered", "not_started")
    feed(c, "i-skip", "discovered", "skipped")
    feed(c, "i-pend", "discovered", "requested", "created")
    feed(c, "i-sent", "discovered", "requested")
    feed(c, "i-never", "discovered")
    c(Throttled(RUN, ACCT, REGION, None, T0, "CreateImage", 2.0))  # lane event: ignored
    report = c.report(finished_at=T1, interrupted=True)
    r = by_id(report)

    assert r["i-ok"].outcome is Outcome.AVAILABLE and r["i-ok"].image_id == "ami-i-ok"
    assert (r["i-ok"].attempts, r["i-ok"].requested_at, r["i-ok"].completed_at) == (1, T0, T1)
    assert (r["i-fail"].outcome, r["i-fail"].error_code) == (Outcome.FAILED, "InvalidState")
    assert r["i-fail"].image_id == "ami-i-fail"  # known from Created, kept
    assert r["i-time"].outcome is Outcome.TIMED_OUT
    assert (r["i-ns"].outcome, r["i-ns"].error_code) == (Outcome.NOT_STARTED, "ErrorBudget")
    assert r["i-skip"].outcome is Outcome.SKIPPED
    assert r["i-skip"].error_message == "instance is terminated"
    assert r["i-pend"].outcome is Outcome.PENDING and r["i-pend"].image_id == "ami-i-pend"
    # sent, never answered: the image may exist, so it is not "not started" but unknown
    assert (r["i-sent"].outcome, r["i-sent"].error_code) == (Outcome.UNKNOWN, "NoAnswer")
    assert "looks the image up by name" in (r["i-sent"].error_message or "")
    assert (r["i-never"].outcome, r["i-never"].error_code) == (Outcome.NOT_STARTED, "NotStarted")
    assert r["i-never"].image_name == "img-i-never"

    assert report.interrupted and not report.ok
    assert report.counts == {
        "available": 1,
        "failed": 1,
        "skipped": 1,
        "timed_out": 1,
        "not_started": 2,
        "dry_run": 0,
        "pending": 1,
        "unknown": 1,
        "total": 8,
    }
    assert {f.instance_id for f in report.failures()} == {
        "i-fail",
        "i-time",
        "i-ns",
        "i-sent",
        "i-never",
    }


def test_ok_accepts_available_skipped_pending_and_passing_dry_runs() -> None:
    c = ReportCollector(RUN, T0, dry_run=True)
    feed(c, "i-1", "requested", "created", "available")
    feed(c, "i-2", "skipped")
    feed(c, "i-3", "requested", "created")
    feed(c, "i-4", "dry_ok")
    report = c.report(finished_at=T1)
    assert report.ok and report.dry_run and report.failures() == []
    assert by_id(report)["i-4"].error_code is None

    feed(c, "i-5", "dry_bad")
    report = c.report(finished_at=T1)
    assert not report.ok
    assert [(f.instance_id, f.error_code) for f in report.failures()] == [
        ("i-5", "UnauthorizedOperation")
    ]


def test_seed_from_journal_then_resume_events() -> None:
    c = ReportCollector(RUN, T0)
    c.seed(
        [
            TargetRecord(ACCT, REGION, "i-done", JournalState.AVAILABLE, "n", "ami-1", 1),
            TargetRecord(ACCT, REGION, "i-req", JournalState.REQUESTING, "n", None, 2),
            TargetRecord(ACCT, REGION, "i-pend", JournalState.PENDING, "n", "ami-3", 1),
            TargetRecord(ACCT, REGION, "i-fail", JournalState.FAILED, "n", None, 1, "X", "y"),
            TargetRecord(
                ACCT, REGION, "i-ns", JournalState.NOT_STARTED, "n", None, 0, "NotStarted"
            ),
        ]
    )
    feed(c, "i-done", "discovered", "failed")  # available is final
    feed(c, "i-req", "created", "available")  # resume adopted it by name
    feed(c, "i-ns", "discovered")  # rediscovered, then the run stops again
    r = by_id(c.report(finished_at=T1))
    assert (r["i-done"].outcome, r["i-done"].image_id) == (Outcome.AVAILABLE, "ami-1")
    assert r["i-req"].outcome is Outcome.AVAILABLE and r["i-req"].attempts == 2
    assert r["i-pend"].outcome is Outcome.PENDING
    assert (r["i-fail"].outcome, r["i-fail"].error_code) == (Outcome.FAILED, "X")
    assert r["i-ns"].outcome is Outcome.NOT_STARTED
    assert "before CreateImage was sent" in (r["i-ns"].error_message or "")


def test_retry_after_failure_clears_the_old_outcome() -> None:
    c = ReportCollector(RUN, T0)
    feed(c, "i-1", "requested", "failed", "requested", "created", "available")
    r = by_id(c.report(finished_at=T1))["i-1"]
    assert (r.outcome, r.error_code, r.requested_at) == (Outcome.AVAILABLE, None, T0)


def test_events_of_other_runs_are_ignored() -> None:
    c = ReportCollector("other", T0)
    feed(c, "i-1", "discovered")
    assert c.report(finished_at=T1).results == ()


def sample_report() -> RunReport:
    c = ReportCollector(RUN, T0)
    feed(c, "i-b", "requested", "created", "available", region="us-east-1")
    feed(c, "i-a", "requested", "created", "failed", region="us-east-1")
    feed(c, "i-c", "skipped")
    return c.report(finished_at=T1)


def test_json_format_and_round_trip(tmp_path: Path) -> None:
    report = sample_report()
    data = json.loads(report.to_json())
    assert list(data) == [
        "run_id",
        "started_at",
        "finished_at",
        "dry_run",
        "interrupted",
        "counts",
        "results",
        "lane_failures",
        "journal_error",
        "shard",
        "shards",
    ]
    assert data["started_at"] == T0.isoformat() and data["counts"]["total"] == 3
    # Sorted by (account, region, instance_id).
    assert [(r["region"], r["instance_id"]) for r in data["results"]] == [
        ("eu-west-1", "i-c"),
        ("us-east-1", "i-a"),
        ("us-east-1", "i-b"),
    ]
    assert RunReport.from_dict(data) == report
    report.write(tmp_path / "out" / "report.json")
    assert RunReport.from_dict(json.loads((tmp_path / "out" / "report.json").read_text())) == report
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["report.json"]  # no temp left


def test_lane_failures_are_their_own_records_and_make_the_run_not_ok() -> None:
    c = ReportCollector(RUN, T0)
    feed(c, "i-b", "requested", "created", "available", region="us-east-1")
    c(LaneFailed(RUN, ACCT, "eu-west-1", None, T1, "AssumeRole", "AccessDenied", "denied"))
    c(LaneFailed(RUN, ACCT, "ap-south-1", None, T1, "DescribeInstances", "AuthFailure", "no"))
    # a lane that plans on resume is no longer failed
    c(LanePlanned(RUN, ACCT, "ap-south-1", None, T1, 3))
    report = c.report(finished_at=T1)
    assert [r.instance_id for r in report.results] == ["i-b"]  # no pseudo target
    assert report.counts["total"] == 1 and not report.ok
    (lane,) = report.lane_failures
    assert (lane.region, lane.action, lane.error_code) == (
        "eu-west-1",
        "AssumeRole",
        "AccessDenied",
    )
    assert RunReport.from_dict(json.loads(report.to_json())) == report
    console = Console(width=200, record=True)
    console.print(render_summary(report))
    text = console.export_text()
    assert "lane 111122223333/eu-west-1 failed: AccessDenied: denied" in text
    assert "1 targets (1 lanes failed)" in text and "not ok" in text


def test_csv_round_trip(tmp_path: Path) -> None:
    report = sample_report()
    path = tmp_path / "report.CSV"
    report.write(path)
    header = path.read_text().splitlines()[0]
    assert header.split(",") == list(RESULT_FIELDS)
    assert read_results_csv(path) == report.results


text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1)
results = st.builds(
    ImageResult,
    account=st.from_regex(r"\d{12}", fullmatch=True),
    region=st.sampled_from(["eu-west-1", "us-east-1"]),
    instance_id=st.from_regex(r"i-[0-9a-f]{8}", fullmatch=True),
    outcome=st.sampled_from(Outcome),
    image_id=st.none() | st.from_regex(r"ami-[0-9a-f]{8}", fullmatch=True),
    image_name=st.none() | text,
    error_code=st.none() | text,
    error_message=st.none() | text,
    attempts=st.integers(0, 20),
    requested_at=st.none() | st.datetimes(timezones=st.just(UTC)),
    completed_at=st.none() | st.datetimes(timezones=st.just(UTC)),
)


@settings(max_examples=50, deadline=None)
@given(st.lists(results, max_size=5, unique_by=lambda r: (r.account, r.region, r.instance_id)))
def test_round_trips_hold_for_any_results(rs: list[ImageResult]) -> None:
    report = RunReport(RUN, T0, T1, tuple(rs), dry_run=True)
    assert RunReport.from_dict(json.loads(report.to_json())) == report
    buf = io.StringIO(report.to_csv(), newline="")
    assert tuple(result_from_dict(row) for row in csv.DictReader(buf)) == report.results


def render(report: RunReport, **kw: int) -> str:
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(render_summary(report, **kw))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(out, str)
    return out


def test_render_empty_report() -> None:
    out = render(RunReport(RUN, T0, T1, ()))
    assert "0 targets" in out and ": ok" in out


def test_render_huge_report_is_truncated_and_markup_safe() -> None:
    results = tuple(
        ImageResult(
            ACCT,
            f"region-{i % 17}",
            f"i-{i:08x}",
            Outcome.FAILED,
            error_code="Boom",
            error_message="[bold]not markup[/bold] " + "x" * 500,
        )
        for i in range(10_000)
    )
    out = render(RunReport(RUN, T0, T1, results, interrupted=True), max_failures=5)
    assert "10000 failures" in out
    assert "… and 9995 more failures" in out
    assert "[bold]not markup" in out
    assert "region-16" in out and "interrupted" in out and "not ok" in out
