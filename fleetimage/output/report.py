"""The run report: what happened to every target, as JSON, CSV or a terminal summary.

:class:`~fleetimage.output.collector.ReportCollector` folds a run's events into a
:class:`RunReport`; :func:`~fleetimage.output.summary.render_summary` shows it in a terminal.

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
      ],
      "lane_failures": [                              # lanes that could not run at all
        {"account": "444455556666", "region": "us-east-1", "action": "AssumeRole",
         "error_code": "AccessDenied", "error_message": "AssumeRole failed for the whole lane: ...",
         "affected": []}                              # its targets, where the journal knew them
      ],
      "journal_error": null,
      "shard": "1/4",                                 # null unless the run imaged one shard
      "shards": null                                  # merged: the shards it holds, ["0/4", ...]
    }

Outcomes: ``available`` (done), ``pending`` (created, not waited for: --no-wait or the run
stopped while waiting), ``failed`` (EC2 said so: the image failed, or the request was refused;
with the AWS error code), ``timed_out`` (the wait ran out; the image may still become
available), ``unknown`` (CreateImage may have been applied, or the image's state could not be
read: resume looks again), ``not_started`` (never sent; error_code ``NotStarted`` when the run
ended first), ``skipped`` (error_message says why), ``dry_run`` (error_code is null when the dry
run passed, else why it would fail).

Copies (``copy:`` in the config): ``"copy_counts"`` and ``"copies"``, one per (target,
destination), see :mod:`fleetimage.output.copy_report`; a failed, timed-out, unknown or
unstarted copy makes the report not ``ok``.

CSV (``write("x.csv")``): one row per result, header = the result fields in the order above,
empty cell for null, RFC 4180 quoting and CRLF line ends. Lane failures are not rows of it (they
have no instance): the JSON report and the summary list them.

Reports never carry credentials: results hold ids, names and AWS errors only.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from fleetimage.core.copies import CopyResult
from fleetimage.core.models import ImageResult, LaneFailure, Outcome
from fleetimage.output.copy_report import copies_csv, copy_counts, copy_from_dict, copy_to_dict

__all__ = [
    "BAD_OUTCOMES",
    "RESULT_FIELDS",
    "RunReport",
    "read_results_csv",
    "result_from_dict",
    "write_atomic",
]

BAD_OUTCOMES = frozenset({Outcome.FAILED, Outcome.TIMED_OUT, Outcome.NOT_STARTED, Outcome.UNKNOWN})
RESULT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ImageResult))


def _is_failure(result: ImageResult) -> bool:
    # A dry run that would not succeed carries its reason; one that would, carries none.
    return result.outcome in BAD_OUTCOMES or (
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
    # Lanes that could not run at all (their targets, unknown, are not in ``results``).
    lane_failures: tuple[LaneFailure, ...] = ()
    dry_run: bool = False
    interrupted: bool = False
    # The journal failed mid-run: this report is the only full record of the run.
    journal_error: str | None = None
    # "I/N": this run imaged shard I of N (its lanes only). A merged report has none, and
    # ``shards`` lists the shards it was merged from ("0/4", "1/4", ...).
    shard: str | None = None
    shards: tuple[str, ...] | None = None
    # One per (target, destination) when the config copies (output/copy_report.py).
    copies: tuple[CopyResult, ...] = ()

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
        """True when no lane failed and no target failed, timed out, went unstarted or failed
        its dry run."""
        return (
            self.journal_error is None
            and not self.lane_failures
            and not any(_is_failure(r) for r in self.results)
            and not any(c.outcome in BAD_OUTCOMES for c in self.copies)
        )

    def failures(self) -> list[ImageResult]:
        return [r for r in self.results if _is_failure(r)]

    def copy_failures(self) -> list[CopyResult]:
        return [c for c in self.copies if c.outcome in BAD_OUTCOMES]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "dry_run": self.dry_run,
            "interrupted": self.interrupted,
            "counts": self.counts,
            "results": [r.to_dict() for r in self.results],
            "lane_failures": [f.to_dict() for f in self.lane_failures],
            "journal_error": self.journal_error,
            "shard": self.shard,
            "shards": None if self.shards is None else list(self.shards),
            **(
                {
                    "copy_counts": copy_counts(self.copies),
                    "copies": [copy_to_dict(c) for c in self.copies],
                }
                if self.copies
                else {}
            ),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunReport:
        """Inverse of :meth:`to_dict` (``counts`` is derived, so it is not read back)."""
        return cls(
            run_id=str(data["run_id"]),
            started_at=datetime.fromisoformat(data["started_at"]),
            finished_at=datetime.fromisoformat(data["finished_at"]),
            results=tuple(result_from_dict(r) for r in data.get("results", ())),
            lane_failures=tuple(LaneFailure.from_dict(f) for f in data.get("lane_failures", ())),
            dry_run=bool(data.get("dry_run", False)),
            interrupted=bool(data.get("interrupted", False)),
            journal_error=data.get("journal_error"),
            shard=data.get("shard"),
            shards=None if data.get("shards") is None else tuple(data["shards"]),
            copies=tuple(copy_from_dict(c) for c in data.get("copies", ())),
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
        is_csv = target.suffix.lower() == ".csv"
        text = self.to_csv() if is_csv else self.to_json() + "\n"
        target.parent.mkdir(parents=True, exist_ok=True)
        if is_csv and self.copies:
            write_atomic(target.with_suffix(".copies.csv"), copies_csv(self.copies))
        write_atomic(target, text)


def write_atomic(target: Path, text: str) -> None:
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
