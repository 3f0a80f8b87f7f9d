"""``fleetimage runs`` and ``fleetimage status RUN_ID``: what the journal knows, read-only."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, NoReturn

import typer

from fleetimage.cli.execution import EXIT_FAILED, EXIT_OK
from fleetimage.cli.options import JournalOpt, JsonOpt, arun, consoles, parse_journal_path
from fleetimage.cli.views import (
    failed_count,
    run_data,
    runs_data,
    runs_view,
    status_view,
    target_data,
    unfinished,
)
from fleetimage.core.copies import COPY_OPEN, CopyRecord, CopyState
from fleetimage.journal import Journal, default_journal_path
from fleetimage.journal import prune as prune_ledger

__all__ = ["runs_command", "status_command"]


async def _read_journal(path: Path, run_id: str | None) -> Any:
    async with await Journal.open(path, read_only=True) as journal:
        if run_id is None:
            return await journal.runs()
        if not await journal.has_run(run_id) and (
            found := await prune_ledger.prune_run(journal, run_id)
        ):
            return found, await prune_ledger.read_items(journal, run_id)
        return (
            await journal.run(run_id),
            await journal.targets(run_id),
            await journal.lane_failures(run_id),
            await journal.copies(run_id),
        )


def runs_command(journal: str | None = JournalOpt, as_json: bool = JsonOpt) -> None:
    """List the runs in the journal, newest first."""
    path = parse_journal_path(journal) or default_journal_path()
    found = arun(_read_journal, path, None)
    if as_json:
        typer.echo(json.dumps(runs_data(found), indent=2))
    else:
        out = consoles().out
        out.print(runs_view(found, str(path)))
        for prune, items in arun(_read_prunes, path):  # prunes: fleetimage status PRUNE_ID
            out.print(_prune_line(prune, items), markup=False, highlight=False)


async def _read_prunes(
    path: Path,
) -> list[tuple[prune_ledger.PruneRunRecord, list[prune_ledger.PruneItemRecord]]]:
    async with await Journal.open(path, read_only=True) as journal:
        return [
            (p, await prune_ledger.read_items(journal, p.prune_id))
            for p in await prune_ledger.prune_runs(journal)
        ]


def _prune_line(
    prune: prune_ledger.PruneRunRecord, items: list[prune_ledger.PruneItemRecord]
) -> str:
    states = Counter(i.state for i in items)
    left = states["planned"] + states["deleting"]
    of = f" of run {prune.run_id}" if prune.run_id else ""
    return (
        f"prune {prune.prune_id}: fleet {prune.fleet}{of}, status {prune.status}, started (UTC) "
        f"{prune.started_at:%Y-%m-%d %H:%M:%S}, {states['deleted']} deleted, {states['kept']} "
        f"kept, {states['failed']} failed, {left} left"
    )


def status_command(
    run_id: str = typer.Argument(..., help="The run to show."),
    journal: str | None = JournalOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Show one run from the journal. Exit 0 if every target (and copy) is done, else 1."""
    path = parse_journal_path(journal) or default_journal_path()
    found = arun(_read_journal, path, run_id)
    if isinstance(found[0], prune_ledger.PruneRunRecord):
        _prune_status(found[0], found[1], as_json)
    summary, targets, lanes, copies = found
    copy_states = Counter(c.state.value for c in copies)
    if as_json:
        data = {
            **run_data(summary),
            "targets": [target_data(t) for t in targets],
            "lane_failures": [lane.to_dict() for lane in lanes],
            "copies": [_copy_data(c) for c in copies],
        }
        typer.echo(json.dumps(data, indent=2))
    else:
        out = consoles().out
        out.print(status_view(summary, targets, str(path)))
        for lane in lanes:  # whole lanes that could not run: their targets are unknown
            out.print(
                f"lane {lane.account}/{lane.region} failed: {lane.action}: {lane.error_code}: "
                f"{lane.error_message}",
                markup=False,
                highlight=False,
            )
        if copies:  # cross-region copies (copy:), per state
            states = ", ".join(f"{n} {state}" for state, n in sorted(copy_states.items()))
            out.print(f"copies: {len(copies)}: {states}", markup=False, highlight=False)
    bad = failed_count(summary.counts) + summary.lane_failures
    bad += sum(1 for c in copies if c.state is CopyState.FAILED)
    open_copies = any(c.state in COPY_OPEN for c in copies)
    done = summary.status == "finished" and not bad and not unfinished(summary) and not open_copies
    raise typer.Exit(EXIT_OK if done else EXIT_FAILED)


def _copy_data(copy: CopyRecord) -> dict[str, Any]:
    k = copy.key
    return {
        "account": k.account,
        "source_region": k.source_region,
        "instance_id": k.instance_id,
        "destination": k.destination,
        "state": copy.state.value,
        "source_image_id": copy.source_image_id,
        "image_name": copy.name,
        "image_id": copy.image_id,
        "attempts": copy.attempts,
        "error_code": copy.error_code,
        "error_message": copy.error_message,
    }


def _prune_status(
    prune: prune_ledger.PruneRunRecord, items: list[prune_ledger.PruneItemRecord], as_json: bool
) -> NoReturn:
    """``status PRUNE_ID``: exit 0 once it finished with nothing left and nothing failed."""
    if as_json:
        data = {
            "prune_id": prune.prune_id,
            "fleet": prune.fleet,
            "run_id": prune.run_id,
            "status": prune.status,
            "started_at": prune.started_at.isoformat(),
            "finished_at": prune.finished_at.isoformat() if prune.finished_at else None,
            "items": [
                {
                    "account": i.account,
                    "region": i.region,
                    "image_id": i.image_id,
                    "state": i.state,
                    "detail": i.detail,
                }
                for i in items
            ],
        }
        typer.echo(json.dumps(data, indent=2))
    else:
        consoles().out.print(_prune_line(prune, items), markup=False, highlight=False)
    open_or_failed = any(i.state in ("planned", "deleting", "failed") for i in items)
    raise typer.Exit(EXIT_OK if prune.status == "finished" and not open_or_failed else EXIT_FAILED)
