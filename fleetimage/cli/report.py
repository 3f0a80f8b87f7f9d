"""``fleetimage report show REPORT.json``: a saved run report as a table, Markdown or CSV;
``fleetimage report merge`` (cli/merge.py) combines the reports of a sharded run.

Exit 0 when the report's run was ok, 1 when it was not (so a script can test a saved
report), 2 when the file is missing, unreadable or not a fleetimage run report.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from fleetimage.cli.flags import FlagGroup
from fleetimage.cli.merge import merge_command
from fleetimage.cli.options import consoles, fail
from fleetimage.output.report import RunReport
from fleetimage.output.report_views import FORMATS, report_markdown, report_table

__all__ = ["report_app"]

EXIT_OK, EXIT_FAILED = 0, 1

report_app = typer.Typer(
    cls=FlagGroup,
    help="Work with saved run reports.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
report_app.command("merge")(merge_command)


def load_report(path: Path) -> RunReport:
    """Read a JSON run report; any problem is a one-line usage error (exit 2)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise fail(f"cannot read report {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        hint = (
            " (CSV reports hold no run header: show the JSON one)" if path.suffix == ".csv" else ""
        )
        raise fail(f"{path} is not a JSON run report: {exc}{hint}") from None
    if not isinstance(data, dict) or "run_id" not in data or "results" not in data:
        raise fail(f"{path} is not a fleetimage run report (no run_id/results)")
    try:
        return RunReport.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise fail(f"{path}: malformed run report: {type(exc).__name__}: {exc}") from None


@report_app.command("show")
def show(
    report: str = typer.Argument(
        ..., help="A JSON report written by run or resume.", metavar="REPORT.json"
    ),
    fmt: str = typer.Option(
        "table",
        "--format",
        "-f",
        help="table (terminal; ids never cut), md (Markdown, for a change ticket) or csv.",
        metavar="FORMAT",
    ),
) -> None:
    """Show a saved run report. Exit 0 if the run was ok, 1 if not, 2 on a bad file."""
    if fmt not in FORMATS:
        raise fail(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    loaded = load_report(Path(report))
    if fmt == "md":
        typer.echo(report_markdown(loaded), nl=False)
    elif fmt == "csv":
        typer.echo(loaded.to_csv(), nl=False)
    else:
        consoles().out.print(report_table(loaded))
    raise typer.Exit(EXIT_OK if loaded.ok else EXIT_FAILED)
