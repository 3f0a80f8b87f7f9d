"""One report from the reports of a sharded run's shards (``fleetimage report merge``).

A shard's report records its shard (``"shard": "I/N"``). Merging refuses, naming the files,
what would make the merged report lie: a report that is not a shard's, shards of different
runs or of different shard counts, the same shard twice, a lane in two reports (two shards
imaged it), or a shard that is missing. The merged report holds every result and lane failure
once, the earliest start and the latest finish, and ``shards``: the shards it was merged from.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from fleetimage.core.errors import UsageError
from fleetimage.core.shards import parse_shard
from fleetimage.output.report import RunReport

__all__ = ["merge_reports", "read_report"]


def read_report(path: Path) -> RunReport:
    """A JSON report from ``path``; UsageError (one line naming the file) if it is not one."""
    if path.suffix.lower() == ".csv":
        raise UsageError(f"{path}: a CSV report does not record its shard; merge JSON reports")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return RunReport.from_dict(data)
    except FileNotFoundError:
        raise UsageError(f"{path}: file not found") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"{path}: not a fleetimage JSON report ({exc})") from None


def merge_reports(reports: Sequence[tuple[str, RunReport]]) -> RunReport:
    """Merge ``(name, report)`` pairs, one per shard; UsageError says why it cannot."""
    if not reports:
        raise UsageError("give the reports of every shard to merge")
    shards: dict[int, str] = {}
    count: int | None = None
    run_id = reports[0][1].run_id
    lanes: dict[tuple[str, str], str] = {}
    for name, report in reports:
        if report.shard is None:
            raise UsageError(
                f"{name}: not a shard's report (it records no shard); merge the reports of "
                "runs started with --shard"
            )
        try:
            index, n = parse_shard(report.shard, what=f"{name}: shard")
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if report.run_id != run_id:
            raise UsageError(
                f"{name}: run {report.run_id}, not {run_id} like {reports[0][0]}; merge the "
                "shards of one run (give every shard the same --run-id)"
            )
        if count is not None and n != count:
            raise UsageError(f"{name}: shard {report.shard}, but the others are of {count} shards")
        count = n
        if index in shards:
            raise UsageError(
                f"overlapping shards: {shards[index]} and {name} are both shard {report.shard}"
            )
        shards[index] = name
        mine = {(r.account, r.region) for r in report.results}
        mine |= {(f.account, f.region) for f in report.lane_failures}
        for lane in sorted(mine):
            other = lanes.setdefault(lane, name)
            if other != name:
                raise UsageError(
                    f"overlapping shards: lane {lane[0]}/{lane[1]} is in {other} and in {name}; "
                    "two shards imaged it"
                )
    assert count is not None
    missing = [f"{i}/{count}" for i in range(count) if i not in shards]
    if missing:
        raise UsageError(
            f"missing shards: {', '.join(missing)} of run {run_id}; give every shard's report"
        )
    ordered = [report for _, report in sorted(reports, key=lambda nr: _index(nr[1]))]
    errors = [f"shard {r.shard}: {r.journal_error}" for r in ordered if r.journal_error]
    return RunReport(
        run_id=run_id,
        started_at=min(r.started_at for r in ordered),
        finished_at=max(r.finished_at for r in ordered),
        results=tuple(x for r in ordered for x in r.results),
        lane_failures=tuple(f for r in ordered for f in r.lane_failures),
        copies=tuple(c for r in ordered for c in r.copies),
        dry_run=any(r.dry_run for r in ordered),
        interrupted=any(r.interrupted for r in ordered),
        journal_error="; ".join(errors) or None,
        shards=tuple(str(r.shard) for r in ordered),
    )


def _index(report: RunReport) -> int:
    assert report.shard is not None
    return parse_shard(report.shard)[0]
