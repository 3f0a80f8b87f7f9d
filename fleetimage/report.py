"""The run report: what happened to every target, as JSON, CSV or a terminal summary.

:class:`ReportCollector` is an event subscriber that folds a run's events into a
:class:`RunReport`; on resume it is seeded from the journal's records first.

JSON format (``RunReport.to_json()``, and ``RunReport.write(path)`` for any non-``.csv`` path)::

    {
      "run_id": "2024-06-01T12-00-00Z-3f9c",
      "started_at": "2024-06-01T12:00:00+00:00",      # ISO 8601
      "finished_at": "2024-06-01T12:07:41+00:00",
      "dry_run": false,
      "interrupted": false,                           # Ctrl-C / deadline stopped new work
      "counts": {"available": 998, "failed": 1, "skipped": 1, "timed_out": 0,
                 "not_started": 0, "dry_run": 0, "pending": 0, "total": 1000},
      "results": [                                    # sorted by account, region, instance_id
        {"account": "111122223333", "region": "eu-west-1", "instance_id": "i-0abc...",
         "outcome": "available",                      # an Outcome value
         "image_id": "ami-0123...", "image_name": "nightly-i-0abc...-2024-06-01",
         "error_code": null, "error_message": null, "attempts": 1,
         "requested_at": "2024-06-01T12:00:03+00:00", "completed_at": "2024-06-01T12:05:10+00:00"}
      ]
    }

Outcomes: ``available`` (done), ``pending`` (created, not waited for: --no-wait or the run
stopped while waiting), ``failed`` / ``timed_out`` (with the AWS error code), ``not_started``
(never sent; error_code ``NotStarted`` when the run ended first), ``skipped`` (error_message says
why), ``dry_run`` (error_code is null when the dry run passed, else why it would fail).

CSV (``write("x.csv")``): one row per result, header = the result fields in the order above,
empty cell for null, RFC 4180 quoting and CRLF line ends.

Reports never carry credentials: results hold ids, names and AWS errors only.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from fleetimage.models import (
    Available,
    Created,
    Discovered,
    DryRunChecked,
    Event,
    Failed,
    ImageResult,
    JournalState,
    Outcome,
    Requested,
    Skipped,
    TargetRecord,
)

__all__ = [
    "RESULT_FIELDS",
    "ReportCollector",
    "RunReport",
    "read_results_csv",
    "render_summary",
    "result_from_dict",
]

_BAD = frozenset({Outcome.FAILED, Outcome.TIMED_OUT, Outcome.NOT_STARTED})
RESULT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ImageResult))


def _is_failure(result: ImageResult) -> bool:
    # A dry run that would not succeed carries its reason; one that would, carries none.
    return result.outcome in _BAD or (
        result.outcome is Outcome.DRY_RUN and result.error_code is not None
    )


def _sort_key(result: ImageResult) -> tuple[str, str, str]:
    return (result.account, result.region, result.instance_id)


def _dt(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def result_from_dict(data: Mapping[str, Any]) -> ImageResult:
    """Inverse of ``ImageResult.to_dict()``; accepts CSV rows too (empty cell = null)."""

    def opt(key: str) -> str | None:
        value = data.get(key)
        return str(value) if value not in (None, "") else None

    return ImageResult(
        account=str(data["account"]),
        region=str(data["region"]),
        instance_id=str(data["instance_id"]),
        outcome=Outcome(data["outcome"]),
        image_id=opt("image_id"),
        image_name=opt("image_name"),
        error_code=opt("error_code"),
        error_message=opt("error_message"),
        attempts=int(data.get("attempts") or 0),
        requested_at=_dt(data.get("requested_at")),
        completed_at=_dt(data.get("completed_at")),
    )


@dataclass(frozen=True)
class RunReport:
    """Every target's result in one run; ``results`` is sorted by (account, region, instance)."""

    run_id: str
    started_at: datetime
    finished_at: datetime
    results: tuple[ImageResult, ...]
    dry_run: bool = False
    interrupted: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "results", tuple(sorted(self.results, key=_sort_key)))

    @property
    def counts(self) -> dict[str, int]:
        """Results per Outcome value (every outcome present, 0 if none), plus ``total``."""
        seen = Counter(r.outcome.value for r in self.results)
        counts = {o.value: seen.get(o.value, 0) for o in Outcome}
        counts["total"] = len(self.results)
        return counts

    @property
    def ok(self) -> bool:
        """True when nothing failed, timed out, went unstarted or failed its dry run."""
        return not any(_is_failure(r) for r in self.results)

    def failures(self) -> list[ImageResult]:
        return [r for r in self.results if _is_failure(r)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "dry_run": self.dry_run,
            "interrupted": self.interrupted,
            "counts": self.counts,
            "results": [r.to_dict() for r in self.results],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunReport:
        """Inverse of :meth:`to_dict` (``counts`` is derived, so it is not read back)."""
        return cls(
            run_id=str(data["run_id"]),
            started_at=datetime.fromisoformat(data["started_at"]),
            finished_at=datetime.fromisoformat(data["finished_at"]),
            results=tuple(result_from_dict(r) for r in data.get("results", ())),
            dry_run=bool(data.get("dry_run", False)),
            interrupted=bool(data.get("interrupted", False)),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_csv(self) -> str:
        out = io.StringIO()
        # The default "\r\n" terminator (RFC 4180) also makes the writer quote any field with a
        # bare "\r" or "\n" in it, so multi-line AWS messages read back intact.
        writer = csv.DictWriter(out, fieldnames=RESULT_FIELDS)
        writer.writeheader()
        for result in self.results:
            writer.writerow({k: ("" if v is None else v) for k, v in result.to_dict().items()})
        return out.getvalue()

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write CSV if ``path`` ends in ``.csv``, else JSON; atomically (temp file + rename)."""
        target = Path(path)
        text = self.to_csv() if target.suffix.lower() == ".csv" else self.to_json() + "\n"
        target.parent.mkdir(parents=True, exist_ok=True)
        # A reader (or a crash) never sees half a report.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                f.write(text)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def read_results_csv(path: str | os.PathLike[str]) -> tuple[ImageResult, ...]:
    """Read back the results of a report written as CSV."""
    with open(path, encoding="utf-8", newline="") as f:
        return tuple(result_from_dict(row) for row in csv.DictReader(f))


# --- collecting ----------------------------------------------------------------------------


@dataclass
class _Progress:
    """One target's state while the run goes on; ``outcome`` is None until it is terminal."""

    image_name: str | None = None
    image_id: str | None = None
    requested: bool = False
    attempts: int = 0
    outcome: Outcome | None = None
    error_code: str | None = None
    error_message: str | None = None
    requested_at: datetime | None = None
    completed_at: datetime | None = None

    def end(
        self, outcome: Outcome, at: datetime, code: str | None = None, msg: str | None = None
    ) -> None:
        self.outcome, self.completed_at = outcome, at
        self.error_code, self.error_message = code, msg


# Journal states that resume seeds as already decided; the rest are still in flight.
_SEEDED_OUTCOMES = {
    JournalState.AVAILABLE: Outcome.AVAILABLE,
    JournalState.FAILED: Outcome.FAILED,
    JournalState.TIMED_OUT: Outcome.TIMED_OUT,
    JournalState.NOT_STARTED: Outcome.NOT_STARTED,
    JournalState.SKIPPED: Outcome.SKIPPED,
    JournalState.DRY_RUN: Outcome.DRY_RUN,
}
# Journal states in which CreateImage may have been sent (a failure may come from AWS).
_MAYBE_SENT = frozenset(
    {
        JournalState.REQUESTING,
        JournalState.PENDING,
        JournalState.AVAILABLE,
        JournalState.FAILED,
        JournalState.TIMED_OUT,
    }
)
# Outcomes a rediscovered target may leave: nothing was ever sent for it.
_UNSENT = frozenset({Outcome.NOT_STARTED, Outcome.SKIPPED, Outcome.DRY_RUN})


class ReportCollector:
    """Event subscriber (sync) that builds the :class:`RunReport`. Mirrors the journal's rules."""

    def __init__(self, run_id: str, started_at: datetime, *, dry_run: bool = False) -> None:
        self.run_id = run_id
        self.started_at = started_at
        self.dry_run = dry_run
        self._targets: dict[tuple[str, str, str], _Progress] = {}

    def seed(self, records: Iterable[TargetRecord]) -> None:
        """Resume: start from what the journal knows."""
        for rec in records:
            p = self._targets.setdefault((rec.account, rec.region, rec.instance_id), _Progress())
            p.image_name, p.image_id, p.attempts = rec.image_name, rec.image_id, rec.attempts
            p.requested = rec.state in _MAYBE_SENT
            p.outcome = _SEEDED_OUTCOMES.get(rec.state)
            p.error_code, p.error_message = rec.error_code, rec.error_message

    def __call__(self, event: Event) -> None:
        if event.instance_id is None or event.run_id != self.run_id:
            return
        key = (event.account, event.region, event.instance_id)
        p = self._targets.get(key)
        if p is None:
            p = self._targets[key] = _Progress()
        if p.outcome is Outcome.AVAILABLE:  # final, like in the journal
            return
        match event:
            case Discovered():
                if p.outcome in _UNSENT:
                    p.outcome = p.error_code = p.error_message = p.completed_at = None
                p.image_name = p.image_name or event.image_name or None  # "": no name
            case Requested():
                p.outcome = p.error_code = p.error_message = p.completed_at = None
                p.requested, p.image_name = True, event.image_name
                p.attempts = max(p.attempts, event.attempt)
                p.requested_at = p.requested_at or event.at
            case Created():
                p.outcome = p.error_code = p.error_message = None
                p.requested, p.image_id, p.image_name = True, event.image_id, event.image_name
            case Available():
                p.image_id = event.image_id
                p.end(Outcome.AVAILABLE, event.at)
            case Failed():
                p.image_id = event.image_id or p.image_id
                outcome = event.outcome if event.outcome in _BAD else Outcome.FAILED
                p.end(outcome, event.at, event.error_code, event.error_message)
            case Skipped():
                p.end(Outcome.SKIPPED, event.at, None, event.reason)
            case DryRunChecked():
                if event.ok:
                    p.end(Outcome.DRY_RUN, event.at)
                else:
                    p.end(Outcome.DRY_RUN, event.at, event.error_code, event.error_message)

    def report(self, *, finished_at: datetime, interrupted: bool = False) -> RunReport:
        """The report so far; targets without a terminal event are pending or not_started."""
        results = [self._result(key, p) for key, p in self._targets.items()]
        return RunReport(
            run_id=self.run_id,
            started_at=self.started_at,
            finished_at=finished_at,
            results=tuple(results),
            dry_run=self.dry_run,
            interrupted=interrupted,
        )

    @staticmethod
    def _result(key: tuple[str, str, str], p: _Progress) -> ImageResult:
        outcome, code, msg = p.outcome, p.error_code, p.error_message
        if outcome is None:
            if p.image_id is not None:
                outcome, code, msg = Outcome.PENDING, None, None
            elif p.requested:
                # The image may exist; resume looks it up by name before sending again.
                outcome, code = Outcome.NOT_STARTED, "NotStarted"
                msg = "CreateImage was sent but no answer was recorded; resume checks by name"
            else:
                outcome, code = Outcome.NOT_STARTED, "NotStarted"
                msg = "the run ended before CreateImage was sent"
        return ImageResult(
            account=key[0],
            region=key[1],
            instance_id=key[2],
            outcome=outcome,
            image_id=p.image_id,
            image_name=p.image_name,
            error_code=code,
            error_message=msg,
            attempts=p.attempts,
            requested_at=p.requested_at,
            completed_at=p.completed_at,
        )


# --- rendering -----------------------------------------------------------------------------


def _clip(text: str | None, width: int) -> Text:
    # Text(), not str: AWS messages may contain "[...]", which rich would read as markup.
    value = " ".join((text or "").split())
    return Text(value if len(value) <= width else value[: width - 1] + "…")


def render_summary(
    report: RunReport, *, max_failures: int = 20, message_width: int = 80
) -> RenderableType:
    """Counts per region, then the first ``max_failures`` failures and how many more there are."""
    outcomes = [o for o in Outcome if report.counts[o.value]] or [Outcome.AVAILABLE]
    title = f"run {report.run_id}" + (" (dry run)" if report.dry_run else "")
    if report.interrupted:
        title += " — interrupted"
    per_region = Table(title=title, title_justify="left")
    per_region.add_column("region")
    for o in outcomes:
        per_region.add_column(o.value, justify="right")
    per_region.add_column("total", justify="right")
    by_region: dict[str, Counter[Outcome]] = {}
    for r in report.results:
        by_region.setdefault(r.region, Counter())[r.outcome] += 1
    for region in sorted(by_region):
        c = by_region[region]
        per_region.add_row(region, *(str(c[o]) for o in outcomes), str(c.total()))
    counts = report.counts
    per_region.add_row(
        Text("all", style="bold"),
        *(Text(str(counts[o.value]), style="bold") for o in outcomes),
        Text(str(counts["total"]), style="bold"),
        end_section=True,
    )
    parts: list[RenderableType] = [per_region]

    failures = report.failures()
    if failures:
        table = Table(title=f"{len(failures)} failures", title_justify="left")
        for name in ("instance", "account", "region", "outcome", "code", "message"):
            table.add_column(name, overflow="fold" if name == "message" else "ellipsis")
        for r in failures[:max_failures]:
            table.add_row(
                Text(r.instance_id),
                Text(r.account),
                Text(r.region),
                r.outcome.value,
                Text(r.error_code or ""),
                _clip(r.error_message, message_width),
            )
        parts.append(table)
        hidden = len(failures) - max_failures
        if hidden > 0:
            parts.append(Text(f"… and {hidden} more failures (see the JSON/CSV report)"))
    elapsed = timedelta(seconds=round((report.finished_at - report.started_at).total_seconds()))
    # An interrupted run is not done, even when nothing in it has failed yet.
    verdict = "ok" if report.ok else "not ok"
    if report.interrupted:
        verdict = "interrupted" if report.ok else "interrupted, not ok"
    parts.append(Text(f"{counts['total']} targets in {elapsed}: {verdict}"))
    return Group(*parts)
