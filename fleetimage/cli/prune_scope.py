"""Which fleet, accounts and regions ``fleetimage prune`` works on.

With ``-c`` the config says. ``--run RUN_ID`` needs no config: the run's config (its fleet
name, accounts, regions, retention) comes from the journal that ran it; when that journal is
elsewhere (a shard's), ``--regions`` and ``--accounts`` say where to look, and the fleet is
the one the run's images carry. An id that is neither in the journal nor findable is refused
before anything is sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

from fleetimage.cli.options import fail, read_config
from fleetimage.config import FleetConfig
from fleetimage.core.errors import ConfigError
from fleetimage.journal import Journal

__all__ = ["parse_list", "prune_config", "run_snapshot"]


def parse_list(flag: str, value: str | None) -> list[str]:
    """``a,b , c`` → ["a", "b", "c"]; an empty entry is refused."""
    if value is None:
        return []
    parts = [p.strip() for p in value.split(",")]
    if not all(parts):
        raise fail(f"{flag} {value!r}: empty entry; give a comma-separated list")
    return parts


async def run_snapshot(journal_path: Path, run_id: str) -> dict[str, Any] | None:
    """The config ``run_id`` ran with, from the journal (read-only), or None if unknown."""
    if not await anyio.Path(journal_path).exists():
        return None
    async with await Journal.open(journal_path, read_only=True) as journal:
        if not await journal.has_run(run_id):
            return None
        return await journal.config_snapshot(run_id)


def prune_config(
    config: str | None,
    run_id: str | None,
    regions: list[str],
    accounts: list[str],
    snapshot: dict[str, Any] | None,
    journal_path: Path,
) -> FleetConfig:
    """The config prune works with (see the module docstring); one-line errors, exit 2."""
    if config is not None:
        if regions or accounts:
            raise fail("--regions/--accounts replace a run's journal; with -c the config says")
        return read_config(config)
    if run_id is None:
        raise fail("prune needs -c FILE (the fleet's config), or --run RUN_ID")
    if accounts and not regions:
        raise fail("--accounts needs --regions (where to look for the run's images)")
    if snapshot is None and not regions:
        raise fail(
            f"--run {run_id}: not in journal {journal_path}; pass --journal (the one that ran "
            "it), --regions (and --accounts), or -c FILE"
        )
    data: dict[str, Any] = dict(snapshot or {})
    data.pop("source", None)
    if regions:  # where the run's images are, instead of what the journal says
        target: dict[str, Any] = {"regions": regions, "all_instances": True}
        if accounts:
            target["accounts"] = [{"role_arn": a} for a in accounts]
        data["targets"] = [target]
    try:
        return FleetConfig.from_snapshot(data)
    except ConfigError as exc:
        raise fail(f"--run {run_id}: {exc}") from None
