"""``fleetimage report merge REPORT... [--report OUT]``: one report from a sharded run's shards."""

from __future__ import annotations

from pathlib import Path

import typer

from fleetimage.cli.execution import EXIT_FAILED, EXIT_OK
from fleetimage.cli.options import fail, guard, parse_report_path
from fleetimage.output.merge import merge_reports, read_report
from fleetimage.output.report import RunReport

__all__ = ["merge_command"]

_ReportsArg = typer.Argument(
    ..., help="The JSON reports of every shard of one run.", metavar="REPORT"
)
_OutOpt = typer.Option(
    None,
    "--report",
    help="Write the merged report here (.csv: CSV, else JSON). Default: JSON on stdout.",
    metavar="OUT",
)


def merge_command(reports: list[str] = _ReportsArg, report: str | None = _OutOpt) -> None:
    """Merge the reports of a sharded run's shards into one.

    Refused (exit 2) when a shard is missing, a shard or a lane is in two reports, or the
    reports are of different runs. Exit 0 when every target of the merged report is done
    (available or skipped), else 1.
    """
    out = parse_report_path(report)
    seen: set[Path] = set()
    pairs: list[tuple[str, RunReport]] = []
    for name in reports:
        path = Path(name).expanduser()
        if path.resolve() in seen:
            raise fail(f"{name} is given twice: overlapping shards")
        seen.add(path.resolve())
        pairs.append((name, _read(path)))
    merged = guard(lambda: merge_reports(pairs))
    counts = merged.counts
    if out is None:
        typer.echo(merged.to_json())
    else:
        try:
            merged.write(out)
        except OSError as exc:
            raise fail(f"--report {report!r}: cannot write it: {exc.strerror or exc}") from None
    typer.echo(
        f"merged {len(pairs)} shards of run {merged.run_id}: {counts['total']} targets, "
        f"{counts['available']} available, {len(merged.failures())} not done"
        + (f"; report: {out}" if out is not None else ""),
        err=True,
    )
    raise typer.Exit(EXIT_OK if merged.ok else EXIT_FAILED)


def _read(path: Path) -> RunReport:
    return guard(lambda: read_report(path))
