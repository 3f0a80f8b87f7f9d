"""``--run-id``, ``--shard`` and ``--plan``: the flags that take a run past one machine.

Each parser prints one ``error: ...`` line naming the flag (or the environment variable) and
exits 2 on bad input, before anything is sent.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import typer

from fleetimage.cli.options import fail, guard
from fleetimage.config import FleetConfig
from fleetimage.core.naming import validate_run_id
from fleetimage.core.shards import Shard, parse_shard, shard_from_env
from fleetimage.engine.plan import Plan
from fleetimage.engine.planfile import load_plan, plan_shard

__all__ = [
    "PlanFileOpt",
    "PlanOutOpt",
    "RunIdOpt",
    "ShardOpt",
    "Sharding",
    "parse_run_id",
    "parse_sharding",
]

RunIdOpt = typer.Option(
    None,
    "--run-id",
    help="Name the run (letters, digits and -, at most 40). A run started again under its id "
    "without its journal adopts the images it already made. Default: generated.",
    metavar="ID",
)
ShardOpt = typer.Option(
    None,
    "--shard",
    help="Image only shard I of N (I from 0): the lanes whose (account, region) hash to I, or "
    "with --plan the lanes dealt to I by target count. Default: $JOB_COMPLETION_INDEX/"
    "$FLEETIMAGE_SHARD_COUNT or $AWS_BATCH_JOB_ARRAY_INDEX/$AWS_BATCH_JOB_ARRAY_SIZE.",
    metavar="I/N",
)
PlanFileOpt = typer.Option(
    None,
    "--plan",
    help="Image exactly this saved plan (fleetimage plan --out FILE), under its run id.",
    metavar="FILE",
)
PlanOutOpt = typer.Option(
    None, "--out", help="Also save the plan here (JSON) for run --plan.", metavar="FILE"
)


@dataclass(frozen=True, slots=True)
class Sharding:
    """What the flags resolve to: the run id given (None: generated), the shard, the plan."""

    run_id: str | None = None
    shard: Shard | None = None
    plan: Plan | None = None


def parse_run_id(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        validate_run_id(value)
    except ValueError as exc:
        raise fail(f"--run-id: {exc}") from None
    return value


def _shard_numbers(value: str | None, env: Mapping[str, str]) -> tuple[int, int] | None:
    try:
        if value is not None:
            return parse_shard(value)
        return shard_from_env(env)
    except ValueError as exc:
        raise fail(str(exc)) from None


def parse_sharding(
    cfg: FleetConfig,
    *,
    run_id: str | None,
    shard: str | None,
    plan: str | None,
    env: Mapping[str, str] | None = None,
) -> Sharding:
    """Resolve ``--run-id``, ``--shard`` (or the job's environment) and ``--plan``."""
    given = parse_run_id(run_id)
    numbers = _shard_numbers(shard, os.environ if env is None else env)
    if plan is None:
        return Sharding(given, None if numbers is None else Shard(*numbers))
    saved = guard(lambda: load_plan(Path(plan).expanduser(), cfg))
    if given is not None and given != saved.run_id:
        raise fail(
            f"--run-id {given} differs from the run id of --plan {plan} ({saved.run_id}); a "
            "saved plan is imaged under its own run id (give it to fleetimage plan --run-id)"
        )
    owned = None if numbers is None else plan_shard(saved, *numbers)
    return Sharding(saved.run_id, owned, saved)
